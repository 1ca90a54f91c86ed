"""The oversight dashboard's two charts, drawn as SVG from the numbers the page shows.

Drawn here, in the page's kernel, from the overview's numbers: no plotting library is
imported to open the dashboard (matplotlib, numpy and the evaluation figures cost the
lead's kernel about a second of CPU before the first paint). Every text is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from hilt.widgets.common.colours import GREEN, MUTED, RED
from hilt.widgets.contracts.oversight import ReasonCount, ReviewerStats

WIDTH = 560
#: Plot area of the reviewer chart: left, top, right, bottom margins.
_LEFT, _TOP, _RIGHT, _BOTTOM = 56, 28, 16, 44
_HEIGHT = 300
_FONT = 'font-family="sans-serif" font-size="11"'


def _svg(height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" {_FONT}>'
        f"<title>{html.escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, **attrs: str) -> str:
    more = "".join(f' {k.rstrip("_").replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{more}>{html.escape(text)}</text>'


def ticks(top: float, most: int = 5) -> list[float]:
    """Round steps (1, 2 or 5 times a power of ten) from 0 to at least ``top``, at most
    ``most`` + 1 of them."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [round(step * i, 12) for i in range(math.ceil(top / step - 1e-9) + 1)]


def reviewer_chart(
    reviewers: Sequence[ReviewerStats],
    alerted: frozenset[str] | set[str],
    *,
    alert_accept_rate: float,
    alert_median_seconds: float,
) -> str:
    """Per reviewer, a point of accept rate against median time on item; the
    rubber-stamping zone (accept rate at least ``alert_accept_rate``, median at most
    ``alert_median_seconds``) shaded, alerted reviewers red. Reviewers without a rate or a
    median are left out."""
    points = [
        (r.reviewer, r.median_time_s, r.accept_rate, r.reviewer in alerted)
        for r in reviewers
        if r.median_time_s is not None and r.accept_rate is not None
    ]
    x_ticks = ticks(max([alert_median_seconds * 2, *(s for _, s, _, _ in points)]) * 1.1)
    right = x_ticks[-1]
    x0, y0 = _LEFT, _TOP
    w, h = WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def px(seconds: float) -> float:
        return x0 + w * seconds / right

    def py(rate: float) -> float:
        return y0 + h * (1 - rate / 1.05)

    body = [
        _text(WIDTH / 2, 16, "Reviewers: accept rate against time on item", text_anchor="middle"),
        f'<rect x="{x0}" y="{py(1.05):.1f}" width="{px(alert_median_seconds) - x0:.1f}" '
        f'height="{py(alert_accept_rate) - py(1.05):.1f}" fill="{RED}" fill-opacity="0.12"/>',
        f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" style="stroke:{MUTED}"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(_text(x0 - 6, py(tick) + 4, f"{tick:.0%}", text_anchor="end"))
    for seconds in x_ticks:
        body.append(_text(px(seconds), y0 + h + 16, f"{seconds:g}", text_anchor="middle"))
    body.append(_text(x0 + w / 2, _HEIGHT - 8, "median time on item (s)", text_anchor="middle"))
    body.append(
        _text(
            x0,
            y0 + h - 6,
            f"alert: accept ≥ {alert_accept_rate:.0%}, median ≤ {alert_median_seconds:g} s",
            dx="6",
            fill=RED,
        )
    )
    for name, s, a, flag in points:
        colour = RED if flag else GREEN
        body.append(f'<circle cx="{px(s):.1f}" cy="{py(a):.1f}" r="4" fill="{colour}"/>')
        body.append(_text(px(s) + 6, py(a) - 5, name, class_="hilt-chart-label"))
    if not points:
        body.append(_text(x0 + w / 2, y0 + h / 2, "no decisions yet", text_anchor="middle"))
    return _svg(_HEIGHT, "Reviewers: accept rate against median time on item", body)


def reasons_chart(reasons: Sequence[ReasonCount]) -> str:
    """Horizontal bars: overrides per reason, the most frequent on top."""
    items = sorted(reasons, key=lambda r: (-r.count, r.label))
    label_w, bar_h, top = 200, 22, 8
    height = top * 2 + bar_h * max(1, len(items))
    most = max([1, *(r.count for r in items)])
    span = WIDTH - label_w - 48
    body = []
    for i, r in enumerate(items):
        y = top + i * bar_h
        width = span * r.count / most
        body.append(
            _text(label_w - 8, y + 15, r.label, text_anchor="end", class_="hilt-chart-label")
        )
        body.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{bar_h - 6}" '
            f'fill="{GREEN}"/>'
        )
        body.append(_text(label_w + width + 6, y + 15, str(r.count)))
    return _svg(height, "Overrides per reason", body)
