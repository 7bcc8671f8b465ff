"""Bad input 6: every service's bus input fuzzed (hypothesis) over real sockets, in a real process.

Each service runs as its own process (`python -m engagement.cli <name>`), its input link
connected to a socket of the test. Hypothesis generates messages that break the contract
in every way the issue lists: random bytes, truncated msgpack, wrong schema versions,
wrong types, huge dimensions, headers lying about the payload size, oversized payloads,
wrong kinds, missing fields. The test checks, against the running process:
- each was rejected with a counter (engagement_messages_rejected_total, read off /metrics)
  and a log line, and the process is alive;
- the next good message is handled (its output arrives on the service's output link);
- no memory growth: RSS before and after a few thousand bad messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.bus.messages import MAX_DIMENSION, SCHEMA_VERSION, BadMessage, as_dict, decode, encode, make_header
from shared.data.running_totals import no_totals
from shared.ops.ports import free_ports
from tests.reliability.harness import report_figures, rss, wait_healthy
from tests.support.env import REDIS_URL
from tests.support.metrics import metric_sum, scrape

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))  # per input; the slow variant runs more
BLAST = 3000  # bad messages sent to measure memory
RSS_GROWTH_LIMIT = 8 * 2**20
MODEL = {"name": "fuzz", "kind": "frame", "baseline": True, "affect": False, "labels": ["a", "b", "c", "d"]}


# --- good messages, one per input -------------------------------------------------------------

def _good(kind: str, seq: int = 1, session: str = "fuzz") -> tuple[dict, bytes]:
    """A valid header of `kind` as the plain map the fuzzing edits, and its payload."""
    header, payload = _good_typed(kind, seq, session)
    return as_dict(header), payload


def _good_typed(kind: str, seq: int, session: str):
    t = time.time()
    if kind == "frame":
        return make_header("frame", session, "cam0", seq, t, width=64, height=48, encoding="bgr",
                           t_media=None, source="fuzz"), bytes(64 * 48 * 3)
    if kind == "faces":
        return make_header("faces", session, "cam0", seq, t, width=64, height=48, crop=8, faces=[],
                           t_media=None), b""
    if kind == "batch":
        return make_header("batch", session, "cam0", seq, t, crop=8, length=1, students=[], faces=[],
                           t_media=None), b""
    if kind == "predictions":
        pred = {"student": 1, "box": [1, 2, 3, 4], "conf": 0.9, "probs": [0.7, 0.1, 0.1, 0.1], "level": 0}
        return make_header("predictions", session, "cam0", seq, t, model=MODEL, predictions=[pred],
                           faces=[{"student": 1, "box": [1, 2, 3, 4], "conf": 0.9}], t_media=None), b""
    if kind == "update":
        return make_header("update", session, "cam0", seq, t, totals=no_totals(), predictions=[], faces=[],
                           model=MODEL, t_media=None), b""
    return make_header("eos", session, "cam0", seq, t, reason="end_of_file"), b""


# --- bad messages ----------------------------------------------------------------------------

_INT64 = st.integers(-2**63, 2**63 - 1)  # what msgpack can carry
_ANY = st.one_of(st.none(), st.booleans(), _INT64, st.floats(allow_nan=True),
                 st.text(max_size=20), st.binary(max_size=20), st.lists(_INT64, max_size=3),
                 st.dictionaries(st.text(max_size=5), _INT64, max_size=3))


def bad_messages(kind: str) -> st.SearchStrategy[list[bytes]]:
    """Messages that break the contract, built around a good message of `kind`."""
    header, payload = _good(kind)
    topic, raw = kind.encode(), msgpack.packb(header, use_bin_type=True)

    def with_field(key: str, value: object) -> list[bytes]:
        return [topic, msgpack.packb({**header, key: value}, use_bin_type=True), payload]

    fields = sorted(header)
    dims = [k for k in ("width", "height", "crop", "length") if k in header]
    return st.one_of(
        # random bytes, any number of parts
        st.lists(st.binary(max_size=300), min_size=1, max_size=5),
        # truncated msgpack
        st.integers(0, len(raw) - 1).map(lambda cut: [topic, raw[:cut], payload]),
        # wrong schema version
        _ANY.filter(lambda v: v != SCHEMA_VERSION or isinstance(v, bool)).map(lambda v: with_field("v", v)),
        # wrong types (or a value of the right type that is out of range)
        st.tuples(st.sampled_from(fields), _ANY).map(lambda kv: with_field(*kv)),
        # missing fields
        st.sampled_from(fields).map(lambda k: [topic, msgpack.packb({f: v for f, v in header.items() if f != k}),
                                               payload]),
        # huge (or non-positive) dimensions
        *([st.tuples(st.sampled_from(dims), st.one_of(st.integers(MAX_DIMENSION + 1, 2**63 - 1),
                                                      st.integers(-2**63, 0)))
           .map(lambda kv: with_field(*kv))] if dims else []),
        # the header lies about the payload's size
        # (kinds that carry no payload must carry none)
        st.binary(max_size=4096).filter(lambda b: len(b) != len(payload)).map(lambda b: [topic, raw, b]),
        # a header that is not a map, or a topic that does not match
        _ANY.map(lambda v: [topic, msgpack.packb(v, use_bin_type=True), payload]),
        st.sampled_from([b"frame", b"faces", b"batch", b"predictions", b"update", b"eos", b"x"])
        .filter(lambda t: t != topic).map(lambda t: [t, raw, payload]),
    )


def oversized(kind: str) -> list[list[bytes]]:
    """A 32 MB payload, and a header of 2 MB: both far beyond any valid message."""
    header, _ = _good(kind)
    big_header = {**header, "padding": "x" * (2 << 20)}
    return [[kind.encode(), msgpack.packb(header), b"\0" * (32 << 20)],
            [kind.encode(), msgpack.packb(big_header), b""]]


def is_rejected(parts: list[bytes], expect: tuple[str, ...]) -> bool:
    try:
        decode(parts, expect)
    except BadMessage:
        return True
    return False


# --- the service under test ---------------------------------------------------------------------

class ServiceUnderTest:
    """One service as a real process; the test binds its input and output links."""

    def __init__(self, name: str, in_setting: str, in_type: int, out_setting: str | None, tmp: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        in_port, out_port, self.metrics_port = free_ports(3)
        ctx = zmq.Context.instance()
        self.input = ctx.socket(in_type)
        self.input.setsockopt(zmq.LINGER, 0)
        self.input.setsockopt(zmq.SNDHWM, 100)
        if in_type == zmq.XPUB:
            self.input.setsockopt(zmq.XPUB_NODROP, 1)  # wait for room, as PUSH does: count every one
        self.input.bind(f"tcp://127.0.0.1:{in_port}")
        consumer = "sub" if in_type == zmq.XPUB else "pull"
        full_env = {**os.environ, "METRICS_PORT": str(self.metrics_port), "LOG_LEVEL": "INFO",
                    in_setting: f"{consumer}+connect:tcp://127.0.0.1:{in_port}", **(env or {})}
        self.output = None
        if out_setting:
            self.output = ctx.socket(zmq.PULL)
            self.output.setsockopt(zmq.LINGER, 0)
            self.output.connect(f"tcp://127.0.0.1:{out_port}")
            full_env[out_setting] = f"push+bind:tcp://127.0.0.1:{out_port}"
        self.log_path = tmp / f"{name}.log"
        self.log_file = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", name], env=full_env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_healthy(self.metrics_port, timeout=120)
        if in_type == zmq.XPUB:  # wait for the subscription: a PUB sends to no one before it
            assert self.input.poll(10000), "the service never subscribed"
            self.input.recv()

    def send(self, parts: list[bytes]) -> None:
        self.input.send_multipart(parts)

    def rejected(self) -> Counter[str]:
        samples = scrape(self.metrics_port)
        return Counter({dict(labels)["reason"]: v for (n, labels), v in samples.items()
                        if n == "engagement_messages_rejected_total" and dict(labels).get("service") == self.name})

    def wait_rejected(self, total: float, timeout: float = 60.0) -> Counter[str]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.rejected()
            if sum(got.values()) >= total or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def close(self) -> int | None:
        self.proc.terminate()
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = None
        self.input.close(0)
        if self.output is not None:
            self.output.close(0)
        self.log_file.close()
        return code


def _handles_good(svc: ServiceUnderTest, kind: str, seq: int, check) -> None:
    header, payload = _good(kind, seq, session=f"fuzz-{seq}")
    svc.send([bytes(p) for p in encode(header, payload)])
    check(svc, seq)


def _output_arrives(svc: ServiceUnderTest, seq: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert svc.output.poll(int((deadline - time.monotonic()) * 1000)), "no output for the good message"
        msg = decode(svc.output.recv_multipart())
        if msg.header.seq == seq:
            return
    raise AssertionError("no output for the good message")


def _report_written(report_dir: Path):
    def check(svc: ServiceUnderTest, seq: int) -> None:
        deadline = time.monotonic() + 30
        while not (report_dir / f"fuzz-{seq}.json").exists():
            assert time.monotonic() < deadline, "no report for the good eos"
            time.sleep(0.1)
    return check


def _fuzz(svc: ServiceUnderTest, kind: str, expect: tuple[str, ...], good_kind: str, check,
          examples: int) -> dict:
    assert svc.wait_rejected(0) is not None
    sent: list[list[bytes]] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(bad_messages(kind))
    def one(parts: list[bytes]) -> None:
        assume(is_rejected(parts, expect))  # decode itself must never raise anything else
        svc.send(parts)
        sent.append(parts)

    one()
    for parts in oversized(kind):
        assert is_rejected(parts, expect)
        svc.send(parts)
    expected = len(sent) + 2
    reasons = svc.wait_rejected(expected)
    assert sum(reasons.values()) == expected, f"rejected {sum(reasons.values())} of {expected}"
    assert svc.proc.poll() is None, f"{svc.name} died"
    _handles_good(svc, good_kind, 10**6, check)

    # Memory: a few thousand more bad messages, RSS before and after.
    before = rss(svc.proc.pid)
    small = [p for p in sent if sum(len(x) for x in p) < 100_000] or sent
    for i in range(BLAST):
        svc.send(small[i % len(small)])
    reasons = svc.wait_rejected(expected + BLAST)
    assert sum(reasons.values()) == expected + BLAST
    after = rss(svc.proc.pid)
    _handles_good(svc, good_kind, 10**6 + 1, check)
    assert svc.proc.poll() is None, f"{svc.name} died"
    log = svc.log_path.read_text()
    assert "rejected a message" in log and "Traceback" not in log
    figures = {"examples": len(sent), "oversized": 2, "blast": BLAST, "rejected": int(sum(reasons.values())),
               "rss_growth_kb": (after - before) // 1024, "reasons": dict(reasons)}
    assert after - before < RSS_GROWTH_LIMIT, figures
    return figures


CASES = {
    # name: (input setting, socket type, output setting, fuzzed kind, accepted kinds, good kind, env)
    "facedetect": ("FRAMES_IN", zmq.PUSH, "FACES_OUT", "frame", ("frame", "eos"), "frame", {"DETECTOR": "haar"}),
    "sequencer": ("FACES_IN", zmq.PUSH, "BATCHES_OUT", "faces", ("faces", "eos"), "faces", {}),
    "inference": ("BATCHES_IN", zmq.PUSH, "PREDICTIONS_OUT", "batch", ("batch", "eos"), "batch", {}),
    "aggregator": ("PREDICTIONS_IN", zmq.PUSH, "UPDATES_OUT", "predictions", ("predictions", "eos"),
                   "predictions", {}),
    "reporter/updates": ("UPDATES_IN", zmq.PUSH, None, "update", ("update", "eos"), "eos", {}),
    # links.py: frames only. Recording: the reporter takes the preview only while something would show it.
    "reporter/preview": ("PREVIEW_IN", zmq.XPUB, None, "frame", ("frame",), "frame", {"RECORD": "1"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_bad_input_is_rejected_counted_and_the_service_lives_on(case, tmp_path):
    _run_case(case, tmp_path, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_bad_input_deep(case, tmp_path):
    _run_case(case, tmp_path, 2000)


def _run_case(case: str, tmp_path: Path, examples: int) -> None:
    in_setting, in_type, out_setting, kind, expect, good_kind, env = CASES[case]
    name = case.split("/")[0]
    prefix = f"fuzz-{uuid.uuid4().hex[:10]}"
    env = {**env, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix, "REPORT_DIR": str(tmp_path / "reports"),
           "SESSION_ID": prefix}
    svc = ServiceUnderTest(name, in_setting, in_type, out_setting, tmp_path, env)
    try:
        if case == "reporter/preview":
            # The preview link carries frames only (an eos there is refused as a wrong kind):
            # liveness is a good frame counted as received.
            check = _preview_then_report(tmp_path, svc)
        else:
            check = _report_written(tmp_path / "reports") if name == "reporter" else _output_arrives
        figures = _fuzz(svc, kind, expect, good_kind, check, examples)
    finally:
        code = svc.close()
        _cleanup(prefix)
    report_figures(f"fuzz {case}", **figures)
    assert code == 0, f"{name} did not stop cleanly after the fuzzing (exit {code})"


def _preview_then_report(tmp_path: Path, svc: ServiceUnderTest):
    # A good preview frame is matched with nothing (no update), so liveness is shown by a
    # good frame being received (counted) rather than an output.
    def check(_svc: ServiceUnderTest, seq: int) -> None:
        header, payload = _good("frame", seq)
        before = metric_sum(scrape(svc.metrics_port), "engagement_messages_received_total", kind="frame")
        svc.send([bytes(p) for p in encode(header, payload)])
        deadline = time.monotonic() + 30
        while metric_sum(scrape(svc.metrics_port), "engagement_messages_received_total", kind="frame") <= before:
            assert time.monotonic() < deadline, "the good preview frame was not received"
            time.sleep(0.1)
    return check


def _cleanup(prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{prefix}:*"))
    if keys:
        r.delete(*keys)
