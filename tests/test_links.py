"""The link table (shared/bus/links.py) is the topology, and ARCHITECTURE.md cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path

from engagement.cli import SERVICE_CLASSES
from services.launcher.launch_settings import resolve_run
from services.launcher.plan import RUN_SERVICES, plan_environment
from shared.bus.bus import SocketSpec
from shared.bus.links import BY_NAME, LINKS
from shared.bus.messages import HEADER_TYPES, KINDS, Header
from shared.ops import config

PAGE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped of backticks) of the first markdown table after `heading`."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without the header and the --- line


def test_the_page_lists_every_link_as_the_table_has_it():
    text = PAGE.read_text(encoding="utf-8")
    rows = _table(text, "## The links")
    assert rows == [[link.name, link.producer, link.consumer, link.pattern.upper(), str(link.port),
                     ", ".join(link.carries)] for link in LINKS]
    picture = text.split("```", 2)[1]
    for link in LINKS:
        assert re.search(rf"\b{link.name}\b", picture), f"the picture has no {link.name} link"


def test_the_page_lists_every_header_field_of_every_kind():
    common = set(Header.__struct_fields__)
    rows = {row[0]: row[1] for row in _table(PAGE.read_text(encoding="utf-8"), "## What each message carries")}
    assert list(rows) == list(KINDS)
    for kind, cls in HEADER_TYPES.items():
        # "model {name, ...}, predictions [student, ...], encoding (bgr or jpeg)": the top-level names
        listed = re.sub(r"\[[^\]]*\]|\{[^}]*\}|\([^)]*\)", "", rows[kind])
        names = {n.strip() for n in listed.split(",")}
        assert names == set(cls.__struct_fields__) - common, kind


def test_links_join_real_services_and_carry_real_kinds():
    for link in LINKS:
        assert {link.producer, link.consumer} <= set(SERVICE_CLASSES), link.name
        assert set(link.carries) <= set(KINDS), link.name
    assert len({link.port for link in LINKS}) == len(LINKS)


def test_settings_and_launcher_are_derived_from_the_table(monkeypatch):
    monkeypatch.setenv("SEQUENCE_LENGTH", "20")  # a model of sequences: every service of the table runs
    for link in LINKS:
        out, inn = getattr(config, link.out_setting), getattr(config, link.in_setting)
        assert (out.default, inn.default) == ((link.out_spec(), link.in_spec()) if link.wired_by_default
                                              else ("", ""))

    class Args:
        model, session_id, source, report_dir, fixed_ports, web_port = "baseline", "s", "x.avi", "/tmp/r", False, 8080

    envs = plan_environment(resolve_run(Args()), "redis://127.0.0.1:6379/1")
    assert set(envs) == set(RUN_SERVICES)
    for link in LINKS:
        out = envs[link.producer][link.out_setting]
        inn = envs[link.consumer][link.in_setting]
        binder, connector = ("consumer", "producer") if link.pattern == "pub/sub" else ("producer", "consumer")
        specs = {"producer": out, "consumer": inn}
        assert specs[binder].split(":", 1)[0].endswith("+bind"), link.name
        assert specs[connector].split(":", 1)[0].endswith("+connect"), link.name
        assert out.startswith(link.socket_types[0] + "+") and inn.startswith(link.socket_types[1] + "+")
        assert out.rsplit(":", 1)[1] == inn.rsplit(":", 1)[1], link.name  # the same (free) port
        others = set(RUN_SERVICES) - {link.producer, link.consumer}
        assert not any(link.out_setting in envs[o] and envs[o][link.out_setting] == out for o in others)


def test_the_launcher_can_wire_every_link_over_ipc(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQUENCE_LENGTH", "20")
    class Args:
        model, session_id, source, report_dir, fixed_ports = "baseline", "s", "x.avi", "/tmp/r", False

    envs = plan_environment(resolve_run(Args()), "redis://127.0.0.1:6379/1", bus_dir=str(tmp_path))
    for link in LINKS:
        out = envs[link.producer][link.out_setting]
        inn = envs[link.consumer][link.in_setting]
        assert out.split(":", 1)[1] == inn.split(":", 1)[1] == f"ipc://{tmp_path}/{link.name}", link.name
        assert out.startswith(link.socket_types[0] + "+") and inn.startswith(link.socket_types[1] + "+")


def test_several_producers_each_bind_and_the_consumer_connects_to_all():
    frames, preview = BY_NAME["frames"], BY_NAME["preview"]
    outs, inn = frames.local_specs_many(["ipc:///tmp/a", "ipc:///tmp/b"])
    assert outs == ["push+bind:ipc:///tmp/a", "push+bind:ipc:///tmp/b"]
    assert inn == "pull+connect:ipc:///tmp/a,ipc:///tmp/b"
    assert SocketSpec.parse(inn).endpoints == ["ipc:///tmp/a", "ipc:///tmp/b"]
    # The launcher's PUB/SUB: the subscriber binds once, every publisher connects to it.
    outs, inn = preview.local_specs_many(["tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"])
    assert outs == ["pub+connect:tcp://127.0.0.1:7001"] * 2 and inn == "sub+bind:tcp://127.0.0.1:7001"
    assert frames.in_spec_from(["capture", "capture-back"]) == \
        "pull+connect:tcp://capture:5551,tcp://capture-back:5551"


def test_every_service_reads_and_sends_on_the_table_links_only():
    """The services' links come from the table (shared/ops/service.py), each with a setting."""
    served = set()
    for name, load in SERVICE_CLASSES.items():
        cls = load()
        settings = cls.__orig_bases__[0].__args__[0]  # Service[XSettings]
        reads = [link for link in LINKS if link.consumer == name]
        sends = [link for link in LINKS if link.producer == name]
        assert cls.inputs == {link.name: link.in_setting.lower() for link in reads}, name
        assert cls.outputs == {link.name: link.out_setting.lower() for link in sends}, name
        # A receiver takes what its link carries, no more (the reporter once took eos on preview).
        assert cls.expect == {link.name: link.carries for link in reads}, name
        for attr in [*cls.inputs.values(), *cls.outputs.values()]:
            assert attr in settings.__struct_fields__, f"{name}: {settings.__name__} has no {attr}"
        served |= {link.name for link in reads + sends}
    assert served == set(BY_NAME)


def test_no_service_restates_its_links():
    """Declared once: a service class that assigns inputs/outputs/expect would drift from the table."""
    restated = re.compile(r"^    (inputs|outputs|expect)\b[^=\n]*=", re.MULTILINE)
    services = PAGE.parent / "services"
    found = [f"{path.relative_to(services)}: {m.group(0).strip()}"
             for path in sorted(services.rglob("*.py")) for m in restated.finditer(path.read_text(encoding="utf-8"))]
    assert found == []
