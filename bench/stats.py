"""Percentiles and small summaries shared by the benchmark's parts."""

from __future__ import annotations

import numpy as np


def percentiles_ms(seconds: list[float]) -> dict[str, float | int | None]:
    """p50/p99/mean in milliseconds of a list of durations in seconds (None when empty)."""
    if not seconds:
        return {"p50": None, "p99": None, "mean": None, "n": 0}
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "mean": round(float(a.mean()), 3), "n": int(a.size)}


def rate(times: list[float], skip: int = 0) -> float | None:
    """Sustained events per second between the `skip`-th and the last timestamp."""
    times = sorted(times)[skip:]
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 3)
