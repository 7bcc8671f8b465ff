"""The attention scale every part of the system shares: 4 levels, 0 really engaged ... 3 checked out."""

from __future__ import annotations

LEVELS = 4
LEVEL_LABELS = ["engaged", "slightly bored", "bored", "checked out"]  # index = level
assert len(LEVEL_LABELS) == LEVELS
# The baseline's reason for a face the detector found but the face mesh could not read: such a
# prediction is level 3, and it is not a frame without a face (the reports count it apart).
UNREAD_REASON = "no_face"
