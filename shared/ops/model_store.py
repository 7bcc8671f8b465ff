"""`engagement models pull <url>` / `models list` / `models rollback`: model bundles reach the box.

    engagement models pull https://host/cnn-small.tar.gz     (also http, s3://bucket/key, file:// or a path)
    engagement models list
    engagement models rollback

A bundle travels as a .tar.gz of its folder (model_card.json and the model files, as the training
chain's `export` writes it) with its SHA-256 beside it (`<url>.sha256`, or `--sha256`). `pull`
checks the digest and the card (valid, and a model file an engine of this box can run), unpacks it
under MODELS_DIR/bundles/, and switches MODELS_DIR/current to it in one rename, keeping the one it
replaces as MODELS_DIR/previous for `rollback`. Inference loads MODEL=current when it starts: a
running inference keeps the model it loaded until it is restarted.
Exit codes: 0 done, 1 the bundle was refused (digest, card, runtime), 2 bad option or unreachable URL.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from shared.data.model_card import CARD_FILE, CardError, ModelCard
from shared.ops.assets import sha256_of
from shared.ops.command_parser import CommandParser

# model file -> the module an engine needs to run it (LiteRT, ONNX Runtime, Keras/TensorFlow)
ENGINE_FILES = {"model.tflite": "ai_edge_litert", "model.onnx": "onnxruntime", "model.keras": "tensorflow"}
CURRENT, PREVIOUS = "current", "previous"


class StoreError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fetch(url: str, dest: Path) -> None:
    """The bytes at `url` into `dest`: http(s), s3://bucket/key (boto3, the `cloud` extra), file:// or a path."""
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme in ("http", "https"):
            with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
                shutil.copyfileobj(response, out)
        elif parts.scheme == "s3":
            if importlib.util.find_spec("boto3") is None:
                raise StoreError("s3:// needs boto3 (pip install '.[cloud]')", 2)
            import boto3

            boto3.client("s3").download_file(parts.netloc, parts.path.lstrip("/"), str(dest))
        elif parts.scheme in ("", "file"):
            shutil.copyfile(urllib.request.url2pathname(parts.path) if parts.scheme else url, dest)
        else:
            raise StoreError(f"cannot fetch {parts.scheme}:// URLs (https, http, s3, file)", 2)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - every transport's failure is one line for the user
        raise StoreError(f"cannot fetch {url}: {exc}", 2) from None


def runnable_files(bundle: Path) -> list[str]:
    """The bundle's model files that an engine installed here can run."""
    return [f for f, module in ENGINE_FILES.items()
            if (bundle / f).is_file() and importlib.util.find_spec(module) is not None]


def unpack(archive: Path, into: Path) -> Path:
    """The bundle folder (the one holding model_card.json) of a .tar.gz, unpacked safely into `into`."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                target = (into / member.name).resolve()
                if not (member.isfile() or member.isdir()) or not target.is_relative_to(into.resolve()):
                    raise StoreError(f"refusing the archive: {member.name!r} is not a plain file inside it")
            # Every member checked above: plain files and folders inside `into` (and the data filter
            # where this Python has it).
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:
                tar.extractall(into)
    except tarfile.TarError as exc:
        raise StoreError(f"not a bundle archive (.tar.gz): {exc}") from None
    cards = sorted(into.rglob(CARD_FILE))
    if len(cards) != 1:
        raise StoreError(f"the archive holds {len(cards)} model cards, a bundle has one")
    return cards[0].parent


def pack(bundle: Path, out_dir: Path) -> Path:
    """The bundle as `pull` takes it (`engagement-train export --publish`): <out>/<name>.tar.gz and
    <name>.tar.gz.sha256 in sha256sum's format, the archive renamed into place whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{bundle.name}.tar.gz"
    partial = out_dir / f".{archive.name}.partial"
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
    os.replace(partial, archive)
    (out_dir / f"{archive.name}.sha256").write_text(f"{sha256_of(archive)}  {archive.name}\n")
    return archive


def pull(url: str, models_dir: Path, sha256: str = "", refuse_affect: bool = False) -> Path:
    """Fetch, check and switch to the bundle at `url`; returns its folder under MODELS_DIR/bundles.
    `refuse_affect`: EU_AI_ACT_MODE, where inference would refuse an affect model, so does the pull."""
    bundles = models_dir / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bundles, prefix=".incoming-") as tmp:
        work = Path(tmp)
        archive = work / "bundle.tar.gz"
        fetch(url, archive)
        if not sha256:
            fetch(url + ".sha256", work / "bundle.sha256")
            words = (work / "bundle.sha256").read_text().split()  # `sha256sum` output: digest, then name
            sha256 = words[0] if words else ""
        got = sha256_of(archive)
        if got != sha256.strip().lower():
            raise StoreError(f"SHA-256 of {url} is {got}, expected {sha256}: refused")
        folder = unpack(archive, work / "unpacked")
        try:
            card = ModelCard.load(folder)
        except CardError as exc:
            raise StoreError(f"refused: {exc}") from None
        if refuse_affect and card.affect:
            raise StoreError(f"refused: {card.name} is an affect model and EU_AI_ACT_MODE is on")
        if not runnable_files(folder):
            have = sorted(p.name for p in folder.iterdir() if p.name != CARD_FILE)
            raise StoreError(f"refused: no model file an engine of this box can run (the bundle has {have})")
        final = bundles / f"{card.name}-{got[:12]}"
        if not final.exists():
            os.replace(folder, final)
    switch(models_dir, final)
    return final


def _point(link: Path, target: Path) -> None:
    """`link` -> `target` in one rename: a reader sees the old bundle or the new one, never neither."""
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def switch(models_dir: Path, bundle: Path) -> None:
    current = models_dir / CURRENT
    if current.is_symlink() and current.resolve() != bundle.resolve():
        _point(models_dir / PREVIOUS, current.resolve())
    _point(current, bundle)


def rollback(models_dir: Path) -> Path:
    previous = models_dir / PREVIOUS
    if not previous.is_symlink() or not previous.resolve().is_dir():
        raise StoreError(f"nothing to roll back to: no {previous}")
    back = previous.resolve()
    switch(models_dir, back)
    return back


def listing(models_dir: Path) -> list[str]:
    marks = {(models_dir / n).resolve(): n for n in (CURRENT, PREVIOUS) if (models_dir / n).is_symlink()}
    lines = []
    for folder in sorted((models_dir / "bundles").glob("*")):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            card = ModelCard.load(folder)
            engines = ", ".join(runnable_files(folder)) or "nothing here"
            what = f"{card.kind}, trained on {card.trained_on or '?'}, runs on {engines}"
            if card.run.get("run_id"):  # where it came from: its MLflow run (training/tracking.py)
                what += f", made by run {card.run['run_id']} at {card.run.get('tracking_uri') or '?'}"
        except CardError as exc:
            what = f"unreadable card: {exc}"
        lines.append(f"{marks.get(folder.resolve(), ''):8} {folder.name}  ({what})")
    return lines


def main(argv: list[str]) -> int:
    from shared.ops.config import SettingError, load_settings

    parser = CommandParser(prog="engagement models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pull_parser = sub.add_parser("pull", help="fetch a bundle, check it, switch to it")
    pull_parser.add_argument("url")
    pull_parser.add_argument("--sha256", default="", help="the archive's digest (default: <url>.sha256)")
    sub.add_parser("list", help="the bundles here; current and previous marked")
    sub.add_parser("rollback", help="switch back to the previous bundle")
    args = parser.parse_args(argv)
    try:
        settings = load_settings("inference", [])
        models_dir = Path(settings.models_dir)
        if args.command == "pull":
            bundle = pull(args.url, models_dir, args.sha256, refuse_affect=bool(settings.eu_ai_act_mode))
            print(f"current: {bundle} (MODEL=current)")
        elif args.command == "rollback":
            print(f"current: {rollback(models_dir)}")
        else:
            print("\n".join(listing(models_dir)) or f"no bundle in {models_dir / 'bundles'}")
    except SettingError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    return 0
