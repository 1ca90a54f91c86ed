"""Small HTML pieces for read-only panels: tables, fact lists and verdict badges.

Every value is escaped; nothing here loads anything from elsewhere.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

OK_COLOUR = "#166534"
WARN_COLOUR = "#b45309"
BAD_COLOUR = "#b91c1c"
MUTED = "var(--jp-ui-font-color2, #6b7280)"
BORDER = "var(--jp-border-color2, #e5e7eb)"


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], css_class: str = "") -> str:
    """A plain table; values are escaped, long ones wrap."""
    head = "".join(
        f'<th style="text-align:left;padding:2px 10px 2px 0;border-bottom:1px solid {BORDER};'
        f'white-space:nowrap">{esc(h)}</th>'
        for h in headers
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="padding:2px 10px 2px 0;vertical-align:top;'
            f'border-bottom:1px solid {BORDER};overflow-wrap:anywhere">{esc(v)}</td>'
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return (
        f'<table{cls} style="border-collapse:collapse;font-size:0.9em;width:100%">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def facts(pairs: Sequence[tuple[str, str]]) -> str:
    """Label → value, one per line."""
    rows = "".join(
        f'<tr><th style="text-align:left;font-weight:500;padding:1px 14px 1px 0;'
        f'color:{MUTED};white-space:nowrap;vertical-align:top">{esc(k)}</th>'
        f'<td style="padding:1px 0;overflow-wrap:anywhere">{esc(v)}</td></tr>'
        for k, v in pairs
    )
    return f'<table style="border-collapse:collapse;font-size:0.9em">{rows}</table>'


def verdict(ok: bool | None, text: str) -> str:
    """A line that says OK / not OK in words and colour (never colour alone)."""
    colour = OK_COLOUR if ok else WARN_COLOUR if ok is None else BAD_COLOUR
    mark = "✓" if ok else "?" if ok is None else "✗"
    return (
        f'<div role="status" style="font-weight:600;color:{colour};margin:4px 0">'
        f"{mark} {esc(text)}</div>"
    )
