"""The first line of every dashboard: what it is, and who is looking (with their roles)."""

from __future__ import annotations

from collections.abc import Sequence

from hilt.widgets.common.colours import MUTED
from hilt.widgets.common.html_table import esc


def header_html(title: str, name: str | None, roles: Sequence[str] = (), note: str = "") -> str:
    """``title · name (roles) · note``; without a name, the title alone."""
    who = ""
    if name is not None:
        held = ", ".join(roles) or "no role"
        who = f' · {esc(name)} <span style="color:{MUTED}">({esc(held)})</span>'
    tail = f" · {esc(note)}" if note else ""
    return f'<div style="font-size:1.1em"><b>{esc(title)}</b>{who}{tail}</div>'
