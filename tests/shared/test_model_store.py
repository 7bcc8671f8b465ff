"""`engagement models pull | list | rollback` against a real HTTP server on loopback: the digest and
the card are checked, the switch is one rename, the bundle it replaces stays for a rollback."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest

from shared.data.model_card import ModelCard
from shared.ops.config import REPO_ROOT
from shared.ops.model_store import main, pack


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/site over HTTP on a free loopback port."""
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def publish(site, name: str, model_file: str = "model.tflite", digest: str | None = None,
            affect: bool = False, run: dict | None = None) -> str:
    """A bundle as `export` writes it, published as `export --publish` does (shared.ops.model_store.pack);
    `digest`: a wrong one in its .sha256. Returns the archive's file name."""
    folder = site / "build" / name
    ModelCard(name=name, kind="frame", input={"size": [64, 64]}, preprocessing="unit", heads=["engagement"],
              trained_on="synth", affect=affect, run=run or {}).save(folder)
    (folder / model_file).write_bytes(os.urandom(256))
    archive = pack(folder, site)
    assert (site / f"{name}.tar.gz.sha256").read_text() == \
        f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {name}.tar.gz\n"  # sha256sum's format
    if digest:
        (site / f"{name}.tar.gz.sha256").write_text(f"{digest}  {name}.tar.gz\n")
    return archive.name


def test_pull_switch_list_and_roll_back(server, tmp_path, monkeypatch, capsys):
    site, url = server
    store = tmp_path / "store"
    monkeypatch.setenv("MODELS_DIR", str(store))
    first = publish(site, "cnn-a")
    second = publish(site, "cnn-b", run={"tracking_uri": "sqlite:///runs/mlflow.db", "run_id": "4f2a9c"})
    assert main(["pull", f"{url}/{first}"]) == 0
    assert (store / "current").resolve().name.startswith("cnn-a-")
    assert main(["pull", f"{url}/{second}"]) == 0
    assert (store / "current").resolve().name.startswith("cnn-b-")
    assert (store / "previous").resolve().name.startswith("cnn-a-")  # kept to roll back to
    assert ModelCard.load(store / "current").name == "cnn-b"
    capsys.readouterr()
    assert main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["previous", "current"] and "runs on model.tflite" in listed[1]
    assert "made by run 4f2a9c at sqlite:///runs/mlflow.db" in listed[1] and "made by run" not in listed[0]
    assert main(["rollback"]) == 0
    assert (store / "current").resolve().name.startswith("cnn-a-")
    assert (store / "previous").resolve().name.startswith("cnn-b-")


def test_a_wrong_digest_or_a_bundle_this_box_cannot_run_is_refused_and_nothing_switches(server, tmp_path,
                                                                                         monkeypatch, capsys):
    site, url = server
    store = tmp_path / "store"
    monkeypatch.setenv("MODELS_DIR", str(store))
    assert main(["pull", f"{url}/{publish(site, 'good')}"]) == 0
    before = (store / "current").resolve()
    capsys.readouterr()
    assert main(["pull", f"{url}/{publish(site, 'tampered', digest='0' * 64)}"]) == 1
    assert "SHA-256" in capsys.readouterr().err
    assert main(["pull", f"{url}/{publish(site, 'odd', model_file='model.bin')}"]) == 1
    assert "no model file an engine of this box can run" in capsys.readouterr().err
    assert main(["pull", f"{url}/absent.tar.gz"]) == 2
    monkeypatch.setenv("EU_AI_ACT_MODE", "1")  # inference would refuse an affect model: so does the pull
    assert main(["pull", f"{url}/{publish(site, 'feelings', affect=True)}"]) == 1
    assert "EU_AI_ACT_MODE" in capsys.readouterr().err
    assert (store / "current").resolve() == before
    assert not [p for p in (store / "bundles").iterdir() if not p.name.startswith("good-")]  # nothing left over


def test_the_real_command_pulls_from_a_file_url(tmp_path):
    name = publish(tmp_path, "local")
    done = subprocess.run([sys.executable, "-m", "engagement.cli", "models", "pull", (tmp_path / name).as_uri()],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MODELS_DIR": str(tmp_path / "store")})
    assert done.returncode == 0, done.stderr
    assert "MODEL=current" in done.stdout and (tmp_path / "store" / "current" / "model_card.json").is_file()
