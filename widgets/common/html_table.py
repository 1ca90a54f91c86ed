"""Small HTML pieces for read-only panels: tables, fact lists, verdict lines and notes.

Every value is escaped; nothing here loads anything from elsewhere.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from hilt.widgets.common.colours import AMBER, BORDER, GREEN, MUTED, RED


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


def compact_table(headers: Sequence[str], rows: Sequence[tuple[Sequence[str], str | None]]) -> str:
    """A compact table without rules; each row is (cells, the colour of the row or None).
    A coloured row is also bold, and its cells should say why in words."""
    head = "".join(
        f'<th style="text-align:left;padding:2px 10px 2px 0">{esc(h)}</th>' for h in headers
    )
    body = []
    for cells, colour in rows:
        style = f' style="color:{colour};font-weight:600"' if colour else ""
        tds = "".join(f'<td style="padding:2px 10px 2px 0">{esc(c)}</td>' for c in cells)
        body.append(f"<tr{style}>{tds}</tr>")
    return (
        '<table style="border-collapse:collapse;margin:0.3em 0">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
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
    colour = GREEN if ok else AMBER if ok is None else RED
    mark = "✓" if ok else "?" if ok is None else "✗"
    return (
        f'<div role="status" style="font-weight:600;color:{colour};margin:4px 0">'
        f"{mark} {esc(text)}</div>"
    )


def note(text: str, size: str = "") -> str:
    """A line of secondary text ("nothing here yet", how to read a table); ``size`` is a
    CSS font size, e.g. "0.85em"."""
    font = f"font-size:{size};" if size else ""
    return f'<div style="{font}color:{MUTED}">{html.escape(text, quote=False)}</div>'
