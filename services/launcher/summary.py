"""The end of a run: where the session's report was written (the asked folder or the fallback)
and the summary printed after it (frames, speed, the streams that failed, the recording)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.data.outbox import flush_command, outbox_path, queued_for
from shared.data.report_doc import Report, load_report
from shared.ops.config import report_fallback_dir


@dataclass(frozen=True)
class ReportFolders:
    """Where a session's report is written: the folder asked for (REPORT_DIR), else the fallback
    (REPORT_FALLBACK_DIR or the XDG state folder: config.report_fallback_dir), resolved once."""

    asked: Path
    fallback: Path

    @classmethod
    def of(cls, report_dir: str, fallback_dir: str) -> ReportFolders:
        return cls(Path(report_dir), report_fallback_dir(fallback_dir))

    def find(self, session: str) -> tuple[Path, Path] | None:
        """The session's report (its .txt and .json), in the asked folder or the fallback."""
        for folder in (self.asked, self.fallback):
            txt, js = folder / f"{session}.txt", folder / f"{session}.json"
            if txt.exists() and js.exists():
                return txt, js
        return None


@dataclass(frozen=True)
class Outbox:
    """With MESSAGING=1, where the reporter queues what the local broker has not taken yet."""

    paths: frozenset[Path]
    mqtt_host: str
    mqtt_port: int
    device_id: str  # the topics' device: flushing under another would send the report elsewhere

    @classmethod
    def of(cls, reports: ReportFolders, outbox_path_setting: str, mqtt_host: str, mqtt_port: int,
           device_id: str) -> Outbox:
        return cls(frozenset({outbox_path(str(reports.asked), outbox_path_setting), outbox_path(reports.fallback)}),
                   mqtt_host, mqtt_port, device_id)


def print_summary(js: Path, elapsed: float, failed_streams: list[str] | None = None,
                  crashed: set[str] | None = None) -> None:
    """Frames and speed of the session, each failed stream and why, the recording; nothing when the
    report cannot be read (its paths are printed anyway)."""
    try:
        report = load_report(js)
    except (OSError, ValueError):  # ReportError and msgspec's DecodeError are ValueErrors
        return
    frames = report.totals.frames
    print(f"session {report.session}: {frames} frames in {elapsed:.1f} s "
          f"({frames / elapsed:.2f} frames/s including start-up)")
    for stream in failed_streams or []:
        reason = _stream_end_reason(report, stream)
        why = "its capture crashed" if stream in (crashed or set()) else "its source could not be read"
        print(f"stream {stream} failed: {why}" + (f" ({reason})" if reason else "") + "; the other streams went on")
    if report.recording:
        print(f"recording: {report.recording}")


def _stream_end_reason(report: Report, stream: str) -> str:
    """The end reason the report recorded for `stream` (its per-stream section), if any."""
    return next((st.end_reason for st in report.streams if st.stream == stream), "")


def print_outbox_state(outbox: Outbox | None, session: str) -> None:
    """With MESSAGING=1 (an outbox), say so when the report has not reached the local broker yet: it
    waits in the outbox (services/reporter/outbox.py) and is sent when the broker takes it."""
    if outbox is None:
        return
    waiting = {path: n for path in sorted(outbox.paths) if (n := queued_for(path, session))}
    if waiting:
        flush = " or ".join(f"`{flush_command(path, outbox.mqtt_host, outbox.mqtt_port, outbox.device_id)}`"
                            for path in waiting)
        print(f"report queued for the broker: {outbox.mqtt_host}:{outbox.mqtt_port} has not taken it "
              f"yet ({sum(waiting.values())} message(s) in the outbox); it is sent when the broker is back, by the "
              f"next `engagement run -m` with the same report folder, or by {flush}", flush=True)
