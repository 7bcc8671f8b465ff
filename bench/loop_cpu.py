"""A service loop's own CPU a message: a pass-through service (read, handle, send) on header-only messages.

    python -m bench.loop_cpu [--count 20000] [--bursts 1 8]

A service of the shared loop (shared/ops/service.py) on its own thread, between a PUSH this
process feeds and a PULL it empties (ipc sockets), forwards each message it reads; this
process sends them in bursts of n (1: one waits at a time, as on a quiet box; 8: a backlog, as
under load) and waits for each burst to come through. The loop thread's CPU over the count is
what every hop of the pipeline pays a message on top of its work (its poll, receive, decode,
validation, counters, encode and send). Run in two trees in turn (PYTHONPATH) to compare them.

A benchmark, not a test: it prints figures, with the load average beside them.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import msgspec
import zmq

from shared.bus.messages import Message, encode, follow_up, make_header
from shared.ops.command_parser import CommandParser
from shared.ops.config import load_settings
from shared.ops.service import Service
from shared.ops.settings import SequencerSettings


class _PassThrough(Service[SequencerSettings]):
    name = "sequencer"  # its links: faces in, batches out

    def handle(self, link: str, msg: Message) -> None:
        self.senders["batches"].send(follow_up(msg, "eos", self.name, reason="end_of_file"))


def measure(count: int, burst: int) -> dict:
    base = f"ipc://{tempfile.mkdtemp(prefix='loop-cpu-')}/{uuid.uuid4().hex[:6]}"
    settings = msgspec.structs.replace(load_settings("sequencer", argv=[], env={}), metrics_port=0,
                                       faces_in=f"pull+bind:{base}-in", batches_out=f"push+bind:{base}-out")
    service = _PassThrough(settings)
    service.start()
    ctx = zmq.Context.instance()
    feed, sink = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    feed.connect(f"{base}-in")
    sink.connect(f"{base}-out")
    cpu: dict[str, float] = {}

    def loop() -> None:
        started = time.thread_time()
        service.loop()
        cpu["loop"] = time.thread_time() - started

    thread = threading.Thread(target=loop, name="loop")
    thread.start()
    try:
        sent = 0
        while sent < count:
            n = min(burst, count - sent)
            for seq in range(sent, sent + n):
                feed.send_multipart(encode(make_header("eos", "s", "cam0", seq, time.time(), reason="end_of_file")))
            for _ in range(n):
                sink.recv_multipart()
            sent += n
    finally:
        service.stop.set()
        thread.join()
        service.finish()
        feed.close(0)
        sink.close(0)
    return {"burst": burst, "messages": count, "loop_cpu_us_a_message": round(cpu["loop"] / count * 1e6, 1)}


def main() -> None:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--bursts", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    for burst in args.bursts:
        out = measure(args.count, burst)
        out["load"] = Path("/proc/loadavg").read_text().split()[:3]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
