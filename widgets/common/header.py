"""The first line of every dashboard: what it is, and who is looking (with their roles).

When the store could not prove who is looking (single-person mode: no sign-in proxy, the
dashboards act as the one configured local user), a banner under the line says so, on
every dashboard, in the store's own words: the records say it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from hilt.widgets.common.colours import AMBER, MUTED
from hilt.widgets.common.html_table import esc
from hilt.widgets.common.icons import warning_svg


def header_html(
    title: str,
    name: str | None,
    roles: Sequence[str] = (),
    note: str = "",
    unproven: str | None = None,
) -> str:
    """``title · name (roles) · note``; without a name, the title alone. ``unproven``: why
    the store could not prove who ``name`` is (``unproven_banner_html`` under the line)."""
    who = ""
    if name is not None:
        held = ", ".join(roles) or "no role"
        who = f' · {esc(name)} <span style="color:{MUTED}">({esc(held)})</span>'
    tail = f" · {esc(note)}" if note else ""
    line = f'<div style="font-size:1.1em"><b>{esc(title)}</b>{who}{tail}</div>'
    if name is None or unproven is None:
        return line
    return line + unproven_banner_html(name, unproven)


def unproven_note_html(body: str) -> str:
    """The amber note of every page that acts for someone nobody proved (``body``: HTML,
    already escaped)."""
    return (
        f'<div role="note" class="hilt-unproven" style="margin:0.3em 0;padding:0.4em 0.8em;'
        f'border:1px solid {AMBER};border-radius:6px;color:{AMBER}">{warning_svg()} {body}</div>'
    )


def unproven_banner_html(name: str, why: str) -> str:
    """The banner of a page whose user nobody proved: who it acts as, and that every record
    written from it says so."""
    return unproven_note_html(
        f"<b>Identity not proven</b> ({esc(why)}). This page acts as "
        f"<b>{esc(name)}</b>, and every record it writes says that who acted was not proven. "
        "For more than one person, serve the dashboards behind a sign-in proxy."
    )
