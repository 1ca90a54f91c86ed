"""How the dashboards write numbers for people; a missing value is a dash."""

from __future__ import annotations

#: Shown for a number that is not there (an en dash).
DASH = "\u2013"


def percent(x: float | None) -> str:
    return DASH if x is None else f"{x:.0%}"


def seconds(x: float | None) -> str:
    if x is None:
        return DASH
    return f"{x:.1f} s" if x < 120 else f"{x / 60:.1f} min"


def minutes(x: float | None) -> str:
    if x is None:
        return DASH
    if x < 120:
        return f"{x:.0f} min"
    if x < 48 * 60:
        return f"{x / 60:.1f} h"
    return f"{x / 1440:.1f} days"
