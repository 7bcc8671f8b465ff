"""Fit the attention baseline's thresholds to a class's marks: `engagement-train fit-baseline`.

The teacher's marks (shared/data/marks.py) carry the signals the baseline read at that moment
(smoothed yaw, pitch, eye openness, mesh confidence, and the student's neutral pose when it
was known). The fit searches the fifteen thresholds (three per signal, levels.THRESHOLDS,
`looking_down` among them: the head lowered toward notes, read instead of `pitch_down`)
for the set under which the baseline's rule (levels.assess, unchanged) gives the teacher's
level most often:

- coordinate descent from the starting thresholds (the defaults or a card), each threshold
  tried on a grid (0.5 deg for angles, 0.0025 for the eye aspect ratio) between its
  neighbours, a few passes until nothing improves;
- ties are broken by a hinge (how far each signal's partial score lies outside the teacher's
  level), then by staying nearer the start, so a handful of marks moves only the thresholds
  they speak about;
- with 10 or more marks, a k-fold cross-validated agreement (fit on the other folds, count
  the held-out ones) says how much of the gain should carry over to new moments.

The result is a baseline card (shared/data/model_card.py, `baseline: true`) with the fitted
thresholds and a `fit` record (marks, sessions, agreement before and after), which
inference loads with BASELINE_THRESHOLDS=<card>.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.data.marks import Mark, agreement
from shared.data.model_card import ModelCard
from shared.vision import baseline_rule as levels
from shared.vision.baseline_card import baseline_card

MIN_MARKS = 4
NEEDED = ("mesh_confidence",)  # a mark from a model that is not the baseline has none
ANGLE_GRID = np.arange(2.0, 90.01, 0.5)
EYE_GRID = np.arange(0.04, 0.40001, 0.0025)
MIN_GAP = {"angle": 0.5, "eye": 0.0025}
PASSES = 6
MARGIN = 0.25  # score units (a quarter level) kept between a mark and the next level's threshold
FOLDS = 5


class FitError(ValueError):
    """Too few usable marks: one line for the user, exit 2."""


@dataclass
class Fit:
    thresholds: levels.Thresholds
    start: levels.Thresholds
    marks: int
    skipped: int
    sessions: list[str]
    at_the_time: dict[str, Any]  # the model's own levels when the marks were made
    before: dict[str, Any]  # the start thresholds on the marks' signals
    after: dict[str, Any]  # the fitted thresholds on the marks' signals
    cross_validated: float | None  # held-out agreement, k-fold (None under 10 marks)


def usable_marks(marks: list[Mark]) -> tuple[list[Mark], int]:
    good = [m for m in marks if all(k in m.signals for k in NEEDED)]
    return good, len(marks) - len(good)


class _Signals:
    """The marks' signals as arrays, for scoring many thresholds fast (the rule of shared/vision/baseline_rule.py)."""

    def __init__(self, marks: list[Mark]) -> None:
        rel = [levels.relative_pose(m.signals) for m in marks]

        def column(values: list[float | None]) -> np.ndarray:
            return np.array([np.nan if v is None else float(v) for v in values])

        self.yaw = np.abs(column([r[0] for r in rel]))
        pitch = column([r[1] for r in rel])
        self.down, self.up = np.maximum(pitch, 0.0), np.maximum(-pitch, 0.0)
        self.eyes = column([m.signals.get("eye_openness") for m in marks])
        # looking down at notes (levels.looking_down_at): read by looking_down, not pitch_down
        self.notes = np.array([levels.looking_down_at(y, p, m.signals.get("eye_openness"))
                               for (y, p), m in zip(rel, marks, strict=True)], bool)
        self.no_face = np.array([m.signals.get("mesh_confidence", 0.0) < levels.MIN_MESH_CONFIDENCE for m in marks])
        self.off_screen = np.array([levels.off_screen(m.signals) for m in marks])
        self.given = np.array([m.level_given for m in marks])
        counts = np.bincount(self.given, minlength=4)
        self.weight = 1.0 / counts[self.given]

    def partial(self, name: str, th: tuple[float, float, float]) -> np.ndarray:
        knots_y = [0.0, 0.5, 1.5, 2.5, 3.5]
        if name == "eye_openness":
            top = th[0] + (th[0] - th[1])
            value, t = top - self.eyes, (top - th[0], top - th[1], top - th[2])
        else:
            value, t = {"yaw": self.yaw, "pitch_down": self.down, "pitch_up": self.up,
                        "looking_down": self.down}[name], th
        knots = [0.0, t[0], t[1], t[2], t[2] + (t[2] - t[1])]
        out = np.interp(np.nan_to_num(value, nan=0.0), knots, knots_y)
        if name in ("pitch_down", "looking_down"):  # one or the other reads a lowered head
            out = np.where(self.notes == (name == "looking_down"), out, -np.inf)
        return np.where(np.isnan(value), -np.inf, out)

    def effective(self, partials: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The partials as the rule combines them: lids lowered by a look at notes read no more than the look."""
        eyes, down = partials.get("eye_openness"), partials.get("looking_down")
        if eyes is None or down is None:
            return partials
        lowered = self.notes & (down >= 0.5) & (eyes < levels.SHUT_SCORE)
        return {**partials, "eye_openness": np.where(lowered, np.minimum(eyes, down), eyes)}

    def levels_for(self, partials: dict[str, np.ndarray]) -> np.ndarray:
        score = np.maximum.reduce(list(self.effective(partials).values()))
        score = np.where(self.no_face, np.maximum(score, 3.0), score)
        score = np.where(self.off_screen, np.maximum(score, levels.OFF_SCREEN_SCORE), score)
        score = np.where(np.isneginf(score), 3.0, score)  # nothing measured: the rule says no face
        # argmax of the softmax over -(score - k)^2: the nearest level, the lower one on a tie
        return np.clip(np.ceil(score - 0.5), 0, 3).astype(int)


def _objective(data: _Signals, partials: dict[str, np.ndarray], th: levels.Thresholds,
               start: levels.Thresholds) -> tuple[int, float, float]:
    """(marks agreed, -hinge, -distance from the start): larger is better, compared in that order.

    The hinge adds, per mark, how far each signal's partial score lies above the teacher's
    level band (and the worst one below it), the band narrowed by MARGIN: one threshold alone
    often cannot change a level that two signals hold up, yet moving it shrinks the hinge, so
    the descent keeps going; and thresholds end a margin past the marks, not on their edge,
    so the moments between the marks read the same. Each mark weighs 1 / (marks at its level):
    two "distracted" marks count as much as twenty "attentive" ones.
    """
    agreed = int((data.levels_for(partials) == data.given).sum())
    partials = data.effective(partials)
    top, bottom = data.given + 0.5 - MARGIN, data.given - 0.5 + MARGIN
    over = sum((np.maximum(0.0, np.nan_to_num(p, neginf=0.0) - top) * data.weight).sum() for p in partials.values())
    worst = np.maximum.reduce(list(partials.values()))
    under = (np.maximum(0.0, bottom - np.where(np.isneginf(worst), 3.0, worst)) * data.weight).sum()
    distance = sum(abs(a - b) / (0.01 if name == "eye_openness" else 1.0)
                   for name in th for a, b in zip(th[name], start[name], strict=True))
    return agreed, -float(over + under), -distance


def fit_thresholds(marks: list[Mark], start: levels.Thresholds | None = None) -> levels.Thresholds:
    start = {**levels.OPTIONAL, **(start or levels.THRESHOLDS)}
    data = _Signals(marks)
    th = {k: tuple(v) for k, v in start.items()}
    partials = {name: data.partial(name, th[name]) for name in th}
    best = _objective(data, partials, th, start)
    for _ in range(PASSES):
        improved = False
        for name in th:
            eye = name == "eye_openness"
            grid, gap = (EYE_GRID, MIN_GAP["eye"]) if eye else (ANGLE_GRID, MIN_GAP["angle"])
            for k in range(3):
                current = list(th[name])
                for value in grid:
                    trial = [*current[:k], float(value), *current[k + 1:]]
                    steps = np.diff(trial)
                    if not ((steps <= -gap).all() if eye else (steps >= gap).all()):
                        continue
                    candidate = {**th, name: tuple(trial)}
                    got = _objective(data, {**partials, name: data.partial(name, tuple(trial))}, candidate, start)
                    if got > best:
                        best, th = got, candidate
                        improved = True
                partials[name] = data.partial(name, th[name])
        if not improved:
            break
    return {k: (round(v[0], 4), round(v[1], 4), round(v[2], 4)) for k, v in th.items()}


def reassessed(marks: list[Mark], thresholds: levels.Thresholds) -> list[Mark]:
    """The marks with level_predicted replaced by the rule's level under `thresholds` (the baseline's own rule)."""
    return [Mark(**{**m.to_dict(), "level_predicted": levels.level_of(m.signals, thresholds)}) for m in marks]


def cross_validated(marks: list[Mark], start: levels.Thresholds, folds: int = FOLDS) -> float | None:
    if len(marks) < 10:
        return None
    order = np.random.default_rng(0).permutation(len(marks))
    agreed = 0
    for fold in range(folds):
        held = set(order[fold::folds].tolist())
        train = [m for i, m in enumerate(marks) if i not in held]
        th = fit_thresholds(train, start)
        agreed += sum(levels.level_of(marks[i].signals, th) == marks[i].level_given for i in held)
    return agreed / len(marks)


def fit(marks: list[Mark], start: levels.Thresholds | None = None) -> Fit:
    start = {**levels.OPTIONAL, **(start or levels.THRESHOLDS)}
    good, skipped = usable_marks(marks)
    if len(good) < MIN_MARKS:
        raise FitError(f"{len(good)} marks with the baseline's signals ({skipped} without): "
                       f"at least {MIN_MARKS} are needed to fit thresholds")
    fitted = fit_thresholds(good, start)
    return Fit(thresholds=fitted, start=start, marks=len(good), skipped=skipped,
               sessions=sorted({m.session for m in good}), at_the_time=agreement(good),
               before=agreement(reassessed(good, start)), after=agreement(reassessed(good, fitted)),
               cross_validated=cross_validated(good, start))


def card_for(result: Fit) -> ModelCard:
    sessions = ", ".join(result.sessions[:5]) + (" ..." if len(result.sessions) > 5 else "")
    record = {"marks": result.marks, "skipped": result.skipped, "sessions": result.sessions,
              "fitted_at": time.time(), "start": {k: list(v) for k, v in result.start.items()},
              "agreement_at_the_time": result.at_the_time["rate"], "agreement_before": result.before["rate"],
              "agreement_after": result.after["rate"], "cross_validated_agreement": result.cross_validated}
    return baseline_card(result.thresholds, trained_on=f"thresholds fitted to {result.marks} teacher's marks "
                                                       f"(sessions {sessions}); rule-based otherwise", fit=record)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def summary(result: Fit) -> str:
    lines = [f"{result.marks} marks of {len(result.sessions)} sessions"
             + (f" ({result.skipped} without the baseline's signals left out)" if result.skipped else ""),
             f"agreement with the teacher: at the time {_rate(result.at_the_time['rate'])} "
             f"({result.at_the_time['agreed']}/{result.at_the_time['marks']}), "
             f"before {_rate(result.before['rate'])} ({result.before['agreed']}/{result.before['marks']}), "
             f"after {_rate(result.after['rate'])} ({result.after['agreed']}/{result.after['marks']})"
             + (f", cross-validated {_rate(result.cross_validated)}" if result.cross_validated is not None
                else " (under 10 marks: no cross-validated figure; expect less on new moments)")]
    for name, values in result.thresholds.items():
        if tuple(values) != tuple(result.start[name]):
            lines.append(f"  {name}: {list(result.start[name])} -> {list(values)}")
    return "\n".join(lines)
