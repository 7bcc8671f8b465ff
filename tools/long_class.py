"""A long class's figures without playing it: what the aggregator writes for an hour of a 7x7 gallery.

Each frame's 49 predictions carry what the attention baseline gives (probabilities, box, detection
confidence and its signals: yaw, pitch, roll, eye openness, mesh confidence, score, reason), written to
the aggregator's journal and, with --redis-url, to Redis as the aggregator counts them (shared/data/
totals.py Store.record_frame), then the stream's end. The reporter's and the web's memory on such a class
is measured on what this leaves, e.g. (the reporter from Redis with its journal beside it):

    python -m tools.long_class --journal-dir /tmp/long --session hour --redis-url redis://127.0.0.1:6379/0 \\
        --redis-prefix long
    /usr/bin/time -v env REDIS_URL=redis://127.0.0.1:6379/0 REDIS_PREFIX=long SESSION_ID=hour \\
        JOURNAL_DIR=/tmp/long REPORT_RECOVER=1 REPORT_DIR=/tmp/long-reports engagement reporter
"""

from __future__ import annotations

import random
import sys

from shared.data.journal import Journal
from shared.data.totals import FrameRecord, Store
from shared.ops.command_parser import CommandParser

MODEL = {"name": "baseline-attention", "kind": "frame", "baseline": True, "affect": False,
         "labels": ["engaged", "slightly bored", "bored", "checked out"], "engine": "litert-facemesh",
         "device": "cpu"}
STARTED = 1_796_558_328.5454276
FPS = 2.0


def prediction(rng: random.Random, student: int) -> dict:
    weights = [rng.random() for _ in range(4)]
    total = sum(weights)
    return {"student": student, "level": rng.randrange(4), "probs": [w / total for w in weights],
            "box": [rng.randrange(1900), rng.randrange(1000), 95, 93], "conf": round(rng.random(), 4),
            "signals": {"yaw": round(rng.uniform(-40, 40), 4), "pitch": round(rng.uniform(-20, 20), 4),
                        "roll": round(rng.uniform(-5, 5), 4), "eye_openness": round(rng.random(), 4),
                        "mesh_confidence": 1.0, "frames": 1, "score": round(rng.random(), 4),
                        "reason": rng.choice(["yaw", "pitch", "eyes", None])}}


def write_class(journal: Journal, store: Store | None, session: str, frames: int, faces: int,
                stream: str = "s1") -> None:
    rng = random.Random(1)
    for seq in range(frames):
        preds = [prediction(rng, s) for s in range(faces)]
        record = FrameRecord(session, "math-7", stream, seq, STARTED + seq / FPS + rng.random() * 0.01, seq / FPS,
                             faces, preds, MODEL)
        journal.append_frame(record)
        if store is not None:
            store.record_frame(record)
    ended = STARTED + frames / FPS
    journal.append_eos(stream, frames, ended, ended, "end_of_file", "gallery.mp4", "math-7")
    if store is not None:
        store.end_stream(session, stream, ended, "end_of_file", [stream], "math-7", "gallery.mp4")
    journal.close()


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m tools.long_class", description=__doc__.splitlines()[0])
    parser.add_argument("--journal-dir", required=True, help="the journal goes to DIR/<session>/journal.jsonl")
    parser.add_argument("--session", default="long-class")
    parser.add_argument("--frames", type=int, default=7200, help="frames at 2 FPS (7200: an hour)")
    parser.add_argument("--faces", type=int, default=49, help="faces in every frame (49: a 7x7 gallery)")
    parser.add_argument("--redis-url", default="", help="also count the class in this Redis")
    parser.add_argument("--redis-prefix", default="engagement")
    args = parser.parse_args(argv)
    store = Store.from_url(args.redis_url, prefix=args.redis_prefix) if args.redis_url else None
    journal = Journal(args.journal_dir, args.session)
    write_class(journal, store, args.session, args.frames, args.faces)
    print(f"{args.frames} frames of {args.faces} faces: {journal.path}"
          + (f", and in Redis (prefix {args.redis_prefix})" if store else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
