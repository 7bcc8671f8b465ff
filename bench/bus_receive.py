"""The receiving side's CPU per message on the bus: `Receiver.read` of a large payload.

    python -m bench.bus_receive [--count 300] [--transport ipc|tcp]

A receiving process (PULL, binds; spawned fresh, like a stage) reads `count` messages sent by
this process through the project's Sender/Receiver: a 640x480 BGR frame (0.9 MB, capture ->
facedetect and the preview) and a 49-face batch of 224 px crops (7.4 MB, facedetect ->
sequencer -> inference). The receiver measures its main thread's CPU inside `read` (receive,
decode, validation: what a service's loop pays a message) and its whole process's CPU (with
ZeroMQ's I/O thread, which reads the socket) per message, after a warm-up; a header-only
message (eos) gives the floor the payload adds to. The receiver
touches one byte of each payload, as a consumer would. Messages are paced so the sender's
own work does not compete for the cores. Run in two trees in turn to compare them.

A benchmark, not a test: it prints figures, with the load average beside them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from shared.bus.bus import Receiver, Sender
from shared.bus.messages import make_header
from shared.ops.command_parser import CommandParser
from shared.ops.ports import free_ports

WARMUP = 20
SHAPES = {"frame 640x480 BGR": ("frame", (480, 640, 3)), "batch 49 x 224px crops": ("batch", (49, 224, 224, 3)),
          "header only (eos)": ("eos", (0,))}


def _receive(endpoint: str, count: int, results: mp.Queue) -> None:
    import zmq

    receiver = Receiver("bench-rx", f"pull+bind:{endpoint}", hwm=4)
    results.put("ready")
    read_cpu, got, touched = 0.0, 0, 0
    process_start = 0.0
    while got < count + WARMUP:
        if not receiver.socket.poll(10000, zmq.POLLIN):
            break
        if got == WARMUP:
            read_cpu, process_start = 0.0, time.process_time()
        started = time.thread_time()
        msg = receiver.read()
        read_cpu += time.thread_time() - started
        if msg is not None:
            got += 1
            touched += msg.payload[len(msg.payload) // 2] if msg.payload else 0
    measured = max(0, got - WARMUP)
    process_cpu = time.process_time() - process_start
    receiver.close()
    results.put({"received": measured, "read_cpu_ms": round(1000 * read_cpu / max(1, measured), 3),
                 "process_cpu_ms": round(1000 * process_cpu / max(1, measured), 3), "touched": touched})


def _message(kind: str, shape: tuple[int, ...], seq: int) -> tuple[object, memoryview]:
    pixels = np.random.default_rng(seq).integers(0, 256, shape, dtype=np.uint8)
    if kind == "eos":
        return make_header("eos", "bench", "bench", seq, time.time(), reason="bench"), memoryview(b"")
    if kind == "frame":
        header = make_header("frame", "bench", "bench", seq, time.time(), width=shape[1], height=shape[0],
                             encoding="bgr")
    else:
        students = [{"student": i, "box": [0, 0, 10, 10]} for i in range(shape[0])]
        header = make_header("batch", "bench", "bench", seq, time.time(), crop=shape[1], length=1,
                             students=students)
    return header, memoryview(pixels).cast("B")


def measure(kind: str, shape: tuple[int, ...], count: int, transport: str, pace: float) -> dict[str, object]:
    tmp = tempfile.TemporaryDirectory(prefix="engagement-rx-")
    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}" if transport == "tcp" else f"ipc://{tmp.name}/rx"
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    child = ctx.Process(target=_receive, args=(endpoint, count, results), daemon=True)
    child.start()
    results.get(timeout=60)
    sender = Sender("bench-tx", f"push+connect:{endpoint}", threading.Event(), hwm=4)
    try:
        time.sleep(0.2)  # let the connection come up
        messages = [_message(kind, shape, seq) for seq in range(4)]
        for seq in range(count + WARMUP):
            header, payload = messages[seq % len(messages)]
            sender.send(header, payload)  # type: ignore[arg-type]  # a Header, built above
            time.sleep(pace)
        figures = results.get(timeout=120)
    finally:
        sender.close()
        child.join(10)
        tmp.cleanup()
    return {"payload_bytes": int(np.prod(shape)), "transport": transport, **figures}


def main() -> None:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--transport", choices=("ipc", "tcp"), default="ipc")
    args = parser.parse_args()
    for name, (kind, shape) in SHAPES.items():
        pace = 0.04 if kind == "batch" else 0.01
        out = measure(kind, shape, args.count, args.transport, pace)
        out["load"] = Path("/proc/loadavg").read_text().split()[:3]
        print(json.dumps({name: out}))


if __name__ == "__main__":
    main()
