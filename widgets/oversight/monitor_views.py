"""Read-only views of the oversight dashboard: queue health, reviewers (with the
automation-bias alerts), agreement on double review, override reasons.

Each view shows what it is given (``show(...)``) and nothing else: no backend, no button,
nothing that writes. Figures arrive as PNG bytes rendered by the backend (matplotlib, no
network). Only aggregates and reviewer names are shown, never a case's data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from hilt.widgets.contracts.oversight import (
    Agreement,
    BiasAlert,
    QueueHealth,
    ReasonCount,
    ReviewerStats,
)

MUTED = "var(--jp-ui-font-color2, #6b7280)"
RED = "#b91c1c"
AMBER = "#b45309"
GREEN = "#166534"
DASH = "\u2013"  # an en dash


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


def _tile(label: str, value: str, colour: str = "inherit") -> str:
    return (
        '<div style="display:inline-block;min-width:9em;margin:0 1em 0.6em 0;'
        "padding:0.4em 0.8em;border:1px solid var(--jp-border-color2, #e5e7eb);"
        'border-radius:6px">'
        f'<div style="font-size:0.85em;color:{MUTED}">{html.escape(label)}</div>'
        f'<div style="font-size:1.4em;font-weight:600;color:{colour}">{html.escape(value)}</div>'
        "</div>"
    )


def _table(headers: Sequence[str], rows: Sequence[tuple[Sequence[str], str | None]]) -> str:
    """An HTML table; each row is (cells, colour of the row or None)."""
    head = "".join(
        f'<th style="text-align:left;padding:2px 10px 2px 0">{html.escape(h)}</th>' for h in headers
    )
    body = []
    for cells, colour in rows:
        style = f' style="color:{colour};font-weight:600"' if colour else ""
        tds = "".join(f'<td style="padding:2px 10px 2px 0">{html.escape(c)}</td>' for c in cells)
        body.append(f"<tr{style}>{tds}</tr>")
    return (
        '<table style="border-collapse:collapse;margin:0.3em 0">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _image(png: bytes | None) -> widgets.Image | None:
    if not png:
        return None
    img = widgets.Image(value=png, format="png")
    img.layout.max_width = "640px"
    # No tooltip: the Image view of ipywidgets 8 fails to render with one (it reads a
    # description that an Image does not have); the section headings say what is shown.
    img.add_class("hilt-figure")
    return img


class QueueHealthView(widgets.VBox):
    """Waiting, being reviewed, done, the oldest case waiting, second reviews, conflicts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-queue-health")
        self.text = widgets.HTML()
        self.health: QueueHealth | None = None
        self._compose()

    def show(self, health: QueueHealth | None) -> None:
        self.health = health
        self._compose()

    def _compose(self) -> None:
        h = self.health
        if h is None:
            self.text.value = f'<div style="color:{MUTED}">Queue health is not available.</div>'
        else:
            oldest_colour = AMBER if (h.oldest_waiting_minutes or 0) > 24 * 60 else "inherit"
            tiles = [
                _tile("Waiting", str(h.waiting)),
                _tile("Being reviewed", str(h.leased)),
                _tile("Done today", f"{h.done_today} ({h.done_total} in all)"),
                _tile("Oldest waiting", minutes(h.oldest_waiting_minutes), oldest_colour),
                _tile("Second reviews due", str(h.awaiting_second_review)),
                _tile(
                    "Conflicts to adjudicate",
                    str(h.adjudication_waiting),
                    AMBER if h.adjudication_waiting else "inherit",
                ),
                _tile(
                    "Without a model (manual)",
                    str(h.manual_waiting),
                    AMBER if h.manual_waiting else "inherit",
                ),
                _tile("Gold cases", str(h.gold_cases)),
            ]
            self.text.value = "".join(tiles)
        self.children = (self.text,)


class ReviewerStatsView(widgets.VBox):
    """Per reviewer: throughput, accept / override rate, median time on item, gold accuracy;
    the automation-bias alerts above, their rows in red, and the accept-rate-against-time
    figure below."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-reviewer-stats")
        self.alerts_html = widgets.HTML()
        self.table = widgets.HTML()
        self.reviewers: tuple[ReviewerStats, ...] = ()
        self.alerts: tuple[BiasAlert, ...] = ()
        self.figure: widgets.Image | None = None
        self.window_days = 0
        self._compose()

    def show(
        self,
        reviewers: Sequence[ReviewerStats],
        alerts: Sequence[BiasAlert],
        figure: bytes | None = None,
        window_days: int = 0,
    ) -> None:
        self.reviewers = tuple(reviewers)
        self.alerts = tuple(alerts)
        self.window_days = window_days
        self.figure = _image(figure)
        self._compose()

    def _compose(self) -> None:
        if self.alerts:
            items = "".join(
                f'<li style="margin:2px 0">{html.escape(a.message)}</li>' for a in self.alerts
            )
            self.alerts_html.value = (
                f'<div role="alert" style="color:{RED};border:1px solid {RED};border-radius:6px;'
                'padding:0.4em 0.8em;margin:0.3em 0">'
                f"<b>Automation-bias alerts ({len(self.alerts)})</b>"
                f'<ul style="margin:0.2em 0 0 1.2em;padding:0">{items}</ul></div>'
            )
        else:
            self.alerts_html.value = (
                f'<div style="color:{GREEN}">No automation-bias alert.</div>'
                if self.reviewers
                else ""
            )
        flagged = {a.reviewer for a in self.alerts}
        if not self.reviewers:
            self.table.value = f'<div style="color:{MUTED}">No reviewer has decided yet.</div>'
        else:
            rows = []
            for r in self.reviewers:
                gold = (
                    f"{percent(r.gold_accuracy)} ({r.gold_correct}/{r.gold_decided})"
                    if r.gold_decided
                    else DASH
                )
                cells = [
                    ("⚠ " if r.reviewer in flagged else "") + r.reviewer,
                    f"{r.decided} ({r.decided_today} today)",
                    percent(r.accept_rate),
                    percent(r.override_rate),
                    seconds(r.median_time_s),
                    gold,
                ]
                rows.append((cells, RED if r.reviewer in flagged else None))
            window = f" over the last {self.window_days} days" if self.window_days else ""
            self.table.value = (
                _table(
                    [
                        "Reviewer",
                        "Decided",
                        "Accept rate",
                        "Override rate",
                        "Median time on item",
                        "Gold accuracy",
                    ],
                    rows,
                )
                + f'<div style="font-size:0.85em;color:{MUTED}">Final decisions{window}; '
                "rates of decisions on a model prediction.</div>"
            )
        self.children = tuple(
            w for w in (self.alerts_html, self.table, self.figure) if w is not None
        )


class AgreementView(widgets.VBox):
    """Cohen's kappa over double-reviewed cases, and where the double reviews stand."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-agreement")
        self.text = widgets.HTML()
        self.agreement: Agreement | None = None
        self._compose()

    def show(self, agreement: Agreement | None) -> None:
        self.agreement = agreement
        self._compose()

    def _compose(self) -> None:
        a = self.agreement
        if a is None:
            self.text.value = ""
        else:
            kappa = DASH if a.kappa is None else f"{a.kappa:.2f}"
            self.text.value = "".join(
                [
                    _tile("Cohen's kappa", kappa),
                    _tile("Reviewed twice", str(a.pairs)),
                    _tile(
                        "Agreed", f"{a.agreed} ({percent(a.agreed / a.pairs if a.pairs else None)})"
                    ),
                    _tile("Waiting for a second review", str(a.awaiting_second_review)),
                    _tile("Conflicts open", str(a.conflicts_open)),
                    _tile("Conflicts resolved", str(a.conflicts_resolved)),
                ]
            )
        self.children = (self.text,)


class OverrideReasonsView(widgets.VBox):
    """How often each override reason was given, as a bar chart and a table."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-override-reasons")
        self.table = widgets.HTML()
        self.reasons: tuple[ReasonCount, ...] = ()
        self.figure: widgets.Image | None = None
        self._compose()

    def show(self, reasons: Sequence[ReasonCount], figure: bytes | None = None) -> None:
        self.reasons = tuple(reasons)
        self.figure = _image(figure)
        self._compose()

    def _compose(self) -> None:
        if not self.reasons:
            self.table.value = f'<div style="color:{MUTED}">No overrides yet.</div>'
        else:
            total = sum(r.count for r in self.reasons)
            rows = [([r.label, str(r.count), percent(r.count / total)], None) for r in self.reasons]
            self.table.value = _table(["Reason", "Overrides", "Share"], rows)
        self.children = tuple(w for w in (self.figure, self.table) if w is not None)
