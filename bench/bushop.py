"""The bus's cost per hop for a raw 640x480 BGR frame: the project's Sender -> Receiver.

A receiving process (PULL, binds) and this process (PUSH, connects) on TCP loopback (as
compose's stages are) or an ipc:// socket (as the launcher's stages are on one host).
Each frame carries its send time in t_capture; the receiver takes `time.time()` once
`Receiver.read` has returned the validated message, so a hop includes msgpack encode, the
ZeroMQ copy and transfer, and decode with validation. Frames are paced (no queueing) so
the figure is the hop, not a backlog.

`frame=False` sends header-only messages the same way: the floor of a hop on this machine
(waking two processes and ZeroMQ's I/O threads), which the frame's bytes add to.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import threading
import time

import numpy as np

from bench.stats import percentiles_ms
from shared.bus.bus import Receiver, Sender
from shared.bus.messages import make_header
from shared.ops.ports import free_ports

WIDTH, HEIGHT = 640, 480


def _receive(endpoint: str, count: int, results: mp.Queue) -> None:
    import zmq

    receiver = Receiver("bench-rx", f"pull+bind:{endpoint}", hwm=4)
    results.put("ready")
    hops = []
    while len(hops) < count:
        if not receiver.socket.poll(5000, zmq.POLLIN):
            break
        msg = receiver.read()
        if msg is not None:
            hops.append(time.time() - msg.header.t_capture)
    receiver.close()
    results.put(hops)


def measure_hop(count: int = 2000, pace_seconds: float = 0.002, frame: bool = True, transport: str = "tcp") -> dict:
    tmp = tempfile.TemporaryDirectory(prefix="engagement-hop-")
    endpoint = f"tcp://127.0.0.1:{free_ports(1)[0]}" if transport == "tcp" else f"ipc://{tmp.name}/hop"
    ctx = mp.get_context("spawn")  # a fresh process, like a real stage (no forked zmq context)
    results: mp.Queue = ctx.Queue()
    child = ctx.Process(target=_receive, args=(endpoint, count, results), daemon=True)
    child.start()
    results.get(timeout=60)
    sender = Sender("bench-tx", f"push+connect:{endpoint}", threading.Event(), hwm=4)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    try:
        time.sleep(0.2)  # let the connection come up
        for seq in range(count):
            if frame:
                payload = image.tobytes()  # what capture does for every frame
                header = make_header("frame", "bench", "bench", seq, time.time(), width=WIDTH, height=HEIGHT,
                                     encoding="bgr")
            else:
                payload, header = b"", make_header("eos", "bench", "bench", seq, time.time(), reason="bench")
            sender.send(header, payload)
            time.sleep(pace_seconds)
        hops = results.get(timeout=60)
    finally:
        sender.close()
        child.join(10)
        tmp.cleanup()
    where = "tcp loopback" if transport == "tcp" else "ipc (Unix socket)"
    return {"transport": f"{where}, PUSH/PULL, shared.bus.bus Sender/Receiver",
            "payload_bytes": WIDTH * HEIGHT * 3 if frame else 0, "sent": count, "received": len(hops),
            "hop_ms": percentiles_ms(hops)}


if __name__ == "__main__":
    import json

    for transport in ("tcp", "ipc"):
        print(json.dumps(measure_hop(500, transport=transport), indent=2))
