"""`engagement-train <step>`: the training chain, one step per call (each also runs as a batch container).

    engagement-train synth    --data /data/synth
    engagement-train labels   --data /data/DAiSEE
    engagement-train extract  --data /data/DAiSEE --out /data/frames --fps 1
    engagement-train faces    --out /data/frames --fps 1     the edge's crop: DETECTOR, CROP_MARGIN, CROP_SIZE
    engagement-train augment  --out /data/frames --fps 1
    engagement-train train    --out /data/frames --fps 1 --family cnn --base mobilenet_v2 --data-type augmented
    engagement-train evaluate --run runs/<run>
    engagement-train export   --run runs/<run> --bundle bundles/<name>
    engagement-train feedback --out marks.csv [--session S]       the teacher's marks as labelled data
    engagement-train fit-baseline --out card.json [--session S]   the baseline's thresholds fitted to them

Paths default to DAISEE_ROOT, FRAMES_ROOT and RUNS_DIR so a container needs only environment variables.
Exit codes: 0 done, 1 the data is unusable (persons in two splits), 2 bad input or option.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shared.data.model_card import ModelCard
from shared.ops.command_parser import CommandParser
from shared.ops.config import (
    CROP_MARGIN,
    CROP_SIZE,
    DETECTOR,
    DETECTOR_NAMES,
    log_level_of_environment,
    process_environment,
    resolve,
    setting_from_environment,
)
from shared.ops.logs import setup_logging
from training.labels import LabelError

if TYPE_CHECKING:
    from shared.data.marks import MarkStore

log = logging.getLogger("train")


def _env_path(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=_env_path("DAISEE_ROOT", "DAiSEE"),
                   help="DAiSEE-layout folder with DataSet/ and Labels/ (env DAISEE_ROOT)")


def _add_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=_env_path("FRAMES_ROOT", "frames"),
                   help="extraction root holding <N>FPS/ (env FRAMES_ROOT)")
    p.add_argument("--fps", type=int, default=1, help="frames per second extracted (the reference used 1 and 2)")


def _add_marks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", default=_env_path("REDIS_URL", "redis://127.0.0.1:6379/0"),
                   help="Redis holding the teacher's marks (env REDIS_URL)")
    p.add_argument("--redis-prefix", default=_env_path("REDIS_PREFIX", "engagement"),
                   help="key prefix (env REDIS_PREFIX)")
    p.add_argument("--session", default="", help="one session's marks (default: every mark)")
    p.add_argument("--reports", action="append", default=None, metavar="DIR",
                   help="a folder of session reports whose marks to include as well (repeatable; default "
                        "REPORT_DIR or ./reports when it exists): a class run with a private Redis keeps its "
                        "marks only in its report")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="engagement-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=log_level_of_environment())
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (batch logs)")
    steps = parser.add_subparsers(dest="step", required=True)

    _add_data_steps(steps)
    _add_train_step(steps)
    _add_model_steps(steps)
    return parser


def _add_data_steps(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """synth, labels, extract, faces, augment: the data set, from videos to balanced face crops."""
    p = steps.add_parser("synth", help="write a small DAiSEE-layout data set with visible boredom levels")
    _add_data(p)
    p.add_argument("--persons", type=int, nargs=3, default=[6, 1, 2], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--clips", type=int, default=7, help="clips per person")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--video-fps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)

    p = steps.add_parser("labels", help="check the label files and print the level distribution")
    _add_data(p)

    p = steps.add_parser("extract", help="FFmpeg frames into <out>/<N>FPS (parallel, resumable)")
    _add_data(p)
    _add_out(p)
    p.add_argument("--workers", type=int, default=0, help="parallel FFmpeg processes (0: one per core)")

    p = steps.add_parser("faces", help="crop faces as the edge does (its detector, margin and crop size)")
    _add_out(p)
    # Defaults: the edge's settings (environment DETECTOR, CROP_MARGIN, CROP_SIZE, else theirs), so a model
    # is trained on the crops facedetect will give it; the card records them (shared/data/crop_record.py).
    p.add_argument("--detector", nargs="+", default=None, choices=DETECTOR_NAMES,
                   help=f"default: DETECTOR ({DETECTOR.default}: the detector that loads first, as facedetect's)")
    p.add_argument("--size", type=int, default=None, help=f"side of the saved square crops (default: CROP_SIZE, "
                                                          f"{CROP_SIZE.default})")
    p.add_argument("--margin", type=float, default=None, help=f"margin around each face box as a fraction of its "
                                                              f"size (default: CROP_MARGIN, {CROP_MARGIN.default})")
    p.add_argument("--confidence", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=0, help="detector threads (0: one per core)")

    p = steps.add_parser("augment", help="balance the training levels")
    _add_out(p)
    p.add_argument("--detector", default="auto", help="which faces tree (auto: the one `faces` cut by default)")
    p.add_argument("--source", default="faces", choices=["faces", "whole"])
    p.add_argument("--target", type=int, default=0, help="images per level (0: the median level count)")
    p.add_argument("--seed", type=int, default=0)


def _add_train_step(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = steps.add_parser("train", help="train one model; writes a run directory and evaluates it")
    _add_out(p)
    p.add_argument("--runs", default=_env_path("RUNS_DIR", "runs"), help="runs root (env RUNS_DIR)")
    p.add_argument("--family", default="cnn", choices=["cnn", "cnn_lstm", "convlstm", "multitask"])
    p.add_argument("--base", default="mobilenet_v2",
                   choices=["mobilenet_v2", "xception", "efficientnet_b0", "inception_v3", "fer", "small"])
    p.add_argument("--data-type", default="faces", choices=["whole", "faces", "augmented"])
    p.add_argument("--detector", default="auto", help="which faces tree (faces, augmented; auto: the one `faces` "
                                                      "cut by default)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--sequence-length", type=int, default=20, help="frames per sample of cnn_lstm, convlstm")
    p.add_argument("--weights", default="imagenet", help="imagenet | none | path to a weights file of the base")
    p.add_argument("--freeze", type=int, default=0, help="freeze base layers [:N] (-1: all)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--decay", type=float, default=1e-6, help="legacy Keras decay: lr / (1 + decay * step)")
    p.add_argument("--patience", type=int, default=10, help="early stopping on val_loss")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--lstm-units", type=int, default=2048)
    p.add_argument("--reference-head", action="store_true",
                   help="the reference's head exactly: dropout 0.2, no L2, no class weights")
    p.add_argument("--no-class-weights", action="store_true")
    p.add_argument("--no-online-augment", action="store_true")
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_float16"],
                   help="mixed_float16: float16 compute on a GPU with tensor cores (V100, T4, A10), float32 heads")
    p.add_argument("--trained-on", default="DAiSEE")
    p.add_argument("--name", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-evaluate", action="store_true")


def _add_model_steps(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """evaluate, export, feedback, fit-baseline: what follows a trained model, and the teacher's marks."""
    p = steps.add_parser("evaluate", help="test metrics, baseline, plots; appends to the results table")
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="Test", choices=["Train", "Validation", "Test"])

    p = steps.add_parser("export", help="write the edge bundle (model.keras, model_card.json, model.tflite, "
                                        "model.onnx), each format checked against Keras on real crops")
    p.add_argument("--run", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--no-tflite", action="store_true")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--publish", default="",
                   help="also write <name>.tar.gz and its .sha256 here, as `engagement models pull` takes them")

    p = steps.add_parser("feedback", help="export the teacher's marks (web page) as labelled data, CSV")
    _add_marks(p)
    p.add_argument("--out", required=True, help="CSV file to write")

    p = steps.add_parser("fit-baseline", help="fit the attention baseline's thresholds to the teacher's marks; "
                                              "writes a card for BASELINE_THRESHOLDS")
    _add_marks(p)
    p.add_argument("--out", required=True, help="baseline card (JSON) to write")
    p.add_argument("--start", default="", help="a baseline card whose thresholds the fit starts from "
                                              "(default: the documented ones)")


def run_step(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    if args.step == "synth":
        from training.synth import SynthSpec, make_synth
        make_synth(Path(args.data), SynthSpec(tuple(args.persons), args.clips, args.seconds, args.video_fps, args.seed))
        print(f"synth data set written to {args.data}")
        return 0
    if args.step == "labels":
        from training.labels import report
        text, usable = report(Path(args.data))
        print(text)
        return 0 if usable else 1
    if args.step == "extract":
        from training.extract import extract
        r = extract(Path(args.data), Path(args.out), args.fps, args.workers or None, progress)
        print(f"extracted {len(r.extracted)} clips, {len(r.resumed)} already done, {len(r.skipped)} skipped, "
              f"{r.frames} frames")
        return 0
    if args.step == "faces":
        return _faces(args, progress)
    if args.step == "augment":
        from training.augment import augment, augment_table
        from training.manifest import fps_root
        before, after = augment(fps_root(args.out, args.fps), args.detector, args.source, args.target or None,
                                args.seed, progress)
        print(augment_table(before, after))
        return 0
    if args.step == "train":
        return _train(args)
    if args.step == "evaluate":
        from training.evaluate import evaluate
        evaluate(Path(args.run), args.split)
        return 0
    if args.step == "export":
        return _export(args)
    if args.step == "feedback":
        return _feedback(args)
    if args.step == "fit-baseline":
        return _fit_baseline(args)
    raise AssertionError(args.step)


def _faces(args: argparse.Namespace, progress: bool) -> int:
    """Crop the extracted frames' faces with each detector asked for (default: the edge's)."""
    from shared.ops.assets import MissingAsset
    from shared.vision.detectors import DetectorUnavailable
    from training.faces import crop_faces, faces_table
    from training.manifest import fps_root
    crop = resolve([DETECTOR, CROP_MARGIN, CROP_SIZE], {"crop_margin": args.margin, "crop_size": args.size},
                   process_environment(), None)  # SettingError (a ValueError): one line, exit 2
    counts = {}
    for detector in args.detector or [crop["detector"]]:
        try:
            _, images, faces = crop_faces(fps_root(args.out, args.fps), detector, crop["crop_size"],
                                          args.confidence, progress, args.workers or os.cpu_count() or 1,
                                          crop["crop_margin"])
        except (DetectorUnavailable, MissingAsset) as exc:
            raise ValueError(str(exc)) from None
        counts[detector] = (images, faces)
    print(faces_table(counts))
    return 0


def _export(args: argparse.Namespace) -> int:
    """Write the bundle (and publish it when asked); say which formats are usable."""
    from training.export import export
    bundle = export(Path(args.run), Path(args.bundle), not args.no_tflite, not args.no_onnx)
    print(f"bundle written to {bundle}")
    if args.publish:
        from shared.ops.model_store import pack
        print(f"published: {pack(bundle, Path(args.publish))} (engagement models pull <its URL>)")
    for fmt, done in ModelCard.load(bundle).exports.items():
        checked = "max_abs_diff" in done
        print(f"  {fmt}: " + (f"{done['file']}, max difference from Keras {done['max_abs_diff']:.1e} on "
                              f"{done['checked_on']}" if checked else f"NOT usable: {done['error']}"))
    return 0


def _mark_store(args: argparse.Namespace) -> MarkStore:
    from shared.data.marks import MarkStore
    return MarkStore.from_url(args.redis_url, prefix=args.redis_prefix)


def _report_dirs(args: argparse.Namespace) -> list[Path]:
    """The report folders to read marks from: those given (each must exist), else the default one if it exists."""
    if args.reports is None:
        default = Path(setting_from_environment("REPORT_DIR") or "reports")
        return [default] if default.is_dir() else []
    missing = [d for d in args.reports if not Path(d).is_dir()]
    if missing:
        raise FileNotFoundError(f"no report folder {missing[0]}")
    return [Path(d) for d in args.reports]


def _load_marks(args: argparse.Namespace) -> list:  # list[Mark]
    from training.feedback import load_marks
    # Report folders named by the user: Redis down still exports theirs (with a warning); the
    # default folder alone never turns an unreachable Redis into a quiet, partial export.
    return load_marks(_mark_store(args), args.session or None, _report_dirs(args),
                      warn=log.warning if args.reports else None)


def _feedback(args: argparse.Namespace) -> int:
    from training.feedback import write_csv
    store = _mark_store(args)
    marks = _load_marks(args)
    columns = write_csv(marks, Path(args.out))
    where = f"session {args.session}" if args.session else f"{len({m.session for m in marks})} sessions"
    print(f"{len(marks)} marks of {where} written to {args.out} (columns: {', '.join(columns)})")
    if not marks and args.session:
        print(f"sessions with marks: {', '.join(store.sessions()) or 'none'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.models import ModelOptions
    from training.train import TrainConfig, train
    reference = args.reference_head
    opts = ModelOptions(family=args.family, base=args.base, image_size=args.image_size,
                        sequence_length=args.sequence_length, weights=args.weights, freeze=args.freeze,
                        dropout=0.2 if reference else args.dropout, l2=0.0 if reference else args.l2,
                        lstm_units=args.lstm_units, seed=args.seed)
    cfg = TrainConfig(out_root=args.out, runs_root=args.runs, data_type=args.data_type, detector=args.detector,
                      fps=args.fps, model=opts, epochs=args.epochs, batch_size=args.batch_size,
                      learning_rate=args.lr, decay=args.decay, patience=args.patience,
                      class_weights=not (reference or args.no_class_weights),
                      online_augment=not args.no_online_augment, trained_on=args.trained_on, name=args.name,
                      precision=args.precision)
    run = train(cfg)
    print(f"run directory: {run}")
    if not args.no_evaluate:
        from training.evaluate import evaluate
        evaluate(run)
    return 0


def _fit_baseline(args: argparse.Namespace) -> int:
    from training.feedback import write_atomically
    from training.fit_baseline import card_for, fit, summary
    start = None
    if args.start:
        from shared.data.model_card import CardError
        from shared.vision.baseline_card import load_baseline_card
        try:
            _, start = load_baseline_card(args.start)
        except CardError as exc:
            raise ValueError(str(exc)) from None
    result = fit(_load_marks(args), start)
    write_atomically(Path(args.out), card_for(result).to_json() + "\n")
    print(summary(result))
    print(f"baseline card written to {args.out}: run inference with BASELINE_THRESHOLDS={args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("train", args.log_level)
    try:
        return run_step(args)
    except (LabelError, FileNotFoundError, ValueError) as exc:
        # ModelError is a ValueError: bad options and bad data end with one clear line, not a traceback.
        log.error("%s failed: %s", args.step, exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
