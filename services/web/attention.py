"""Needs attention: a student at level 2 or more for longer than ATTENTION_ALERT_SECONDS.

An alert starts when a student's run of predictions at level 2 or more (the report's
episodes are the same runs) has lasted the threshold, and ends at the run's last prediction
when a prediction below 2 comes. The live page lists the open ones, longest first; every
alert of the session stays in the log (/api/live/alerts), so a teacher can see afterwards
who needed them and when. Built from the same predictions as the cards, so a web service
restarted mid-class rebuilds them from Redis's timeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ALERT_LEVEL = 2  # "distracted" or worse, as the cards' "level 2+" time
STALE_SECONDS = 10.0  # a student unseen for this long leaves the strip (their card goes grey too)


@dataclass
class Alert:
    stream: str
    student: int
    start: float  # capture time of the run's first prediction at level 2 or more
    raised: float  # start + the threshold: when the page first listed them
    last: float  # the run's latest prediction
    worst_level: int
    end: float | None = None  # the run's last prediction once it ended; None while open

    @property
    def seconds(self) -> float:
        return self.last - self.start


class AttentionLog:
    """The alerts of one session, fed one prediction at a time."""

    def __init__(self, threshold_seconds: float) -> None:
        self.threshold = float(threshold_seconds)
        self.runs: dict[tuple[str, int], tuple[float, int]] = {}  # student -> their run at >= 2: start, worst
        self.open: dict[tuple[str, int], Alert] = {}
        self.log: list[Alert] = []

    def observe(self, stream: str, student: int, t: float, level: int) -> None:
        key = (stream, student)
        if level < ALERT_LEVEL:
            self.runs.pop(key, None)
            alert = self.open.pop(key, None)
            if alert is not None:
                alert.end = alert.last
            return
        start, worst = self.runs.get(key, (t, level))
        self.runs[key] = (start, max(worst, level))
        alert = self.open.get(key)
        if alert is not None:
            alert.last, alert.worst_level = max(alert.last, t), max(alert.worst_level, level)
        elif t - start >= self.threshold:
            alert = Alert(stream, student, start, start + self.threshold, t, max(worst, level))
            self.open[key] = alert
            self.log.append(alert)

    def current(self, last_seen: dict[tuple[str, int], float], now: float | None) -> list[Alert]:
        """The open alerts of students seen lately, longest first."""
        fresh = [a for key, a in self.open.items()
                 if now is None or last_seen.get(key, 0.0) >= now - STALE_SECONDS]
        return sorted(fresh, key=lambda a: (-a.seconds, a.stream, a.student))


def alert_row(alert: Alert, name: str | None) -> dict[str, Any]:
    """An alert as the API shows it (with the student's display name when there is one)."""
    row = {**asdict(alert), "seconds": round(alert.seconds, 1)}
    if name:
        row["name"] = name
    return row
