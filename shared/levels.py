"""The attention scale every part of the system shares: 4 levels, 0 really engaged ... 3 checked out."""

from __future__ import annotations

LEVELS = 4
LEVEL_LABELS = ["engaged", "slightly bored", "bored", "checked out"]  # index = level
assert len(LEVEL_LABELS) == LEVELS
