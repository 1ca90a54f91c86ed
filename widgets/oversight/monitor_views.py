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

from hilt.widgets.common.colours import AMBER, BORDER, GREEN, MUTED, RED
from hilt.widgets.common.formats import DASH, minutes, percent, seconds
from hilt.widgets.common.html_table import compact_table, note
from hilt.widgets.contracts.oversight import (
    Agreement,
    BiasAlert,
    QueueHealth,
    ReasonCount,
    ReviewerStats,
)
from hilt.widgets.oversight.charts import reasons_chart, reviewer_chart


def _tile(label: str, value: str, colour: str = "inherit") -> str:
    return (
        '<div style="display:inline-block;min-width:9em;margin:0 1em 0.6em 0;'
        f"padding:0.4em 0.8em;border:1px solid {BORDER};"
        'border-radius:6px">'
        f'<div style="font-size:0.85em;color:{MUTED}">{html.escape(label)}</div>'
        f'<div style="font-size:1.4em;font-weight:600;color:{colour}">{html.escape(value)}</div>'
        "</div>"
    )


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
            self.text.value = note("Queue health is not available.")
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
    chart below (``charts.reviewer_chart``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-reviewer-stats")
        self.alerts_html = widgets.HTML()
        self.table = widgets.HTML()
        self.reviewers: tuple[ReviewerStats, ...] = ()
        self.alerts: tuple[BiasAlert, ...] = ()
        self.chart = widgets.HTML()
        self.chart.add_class("hilt-chart")
        self.window_days = 0
        self._compose()

    def show(
        self,
        reviewers: Sequence[ReviewerStats],
        alerts: Sequence[BiasAlert],
        window_days: int = 0,
        thresholds: tuple[float, float] | None = None,
    ) -> None:
        """``thresholds``: the alert's accept rate and median seconds (None: no chart)."""
        self.reviewers = tuple(reviewers)
        self.alerts = tuple(alerts)
        self.window_days = window_days
        self.chart.value = (
            ""
            if thresholds is None or not self.reviewers
            else reviewer_chart(
                self.reviewers,
                {a.reviewer for a in self.alerts},
                alert_accept_rate=thresholds[0],
                alert_median_seconds=thresholds[1],
            )
        )
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
            self.table.value = note("No reviewer has decided yet.")
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
            self.table.value = compact_table(
                [
                    "Reviewer",
                    "Decided",
                    "Accept rate",
                    "Override rate",
                    "Median time on item",
                    "Gold accuracy",
                ],
                rows,
            ) + note(
                f"Final decisions{window}; rates of decisions on a model prediction.",
                size="0.85em",
            )
        self.children = tuple(w for w in (self.alerts_html, self.table, self.chart) if w.value)


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
    """How often each override reason was given, as a bar chart (``charts.reasons_chart``)
    and a table."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-override-reasons")
        self.table = widgets.HTML()
        self.chart = widgets.HTML()
        self.chart.add_class("hilt-chart")
        self.reasons: tuple[ReasonCount, ...] = ()
        self._compose()

    def show(self, reasons: Sequence[ReasonCount]) -> None:
        self.reasons = tuple(reasons)
        self.chart.value = reasons_chart(self.reasons) if self.reasons else ""
        self._compose()

    def _compose(self) -> None:
        if not self.reasons:
            self.table.value = note("No overrides yet.")
        else:
            total = sum(r.count for r in self.reasons)
            rows = [([r.label, str(r.count), percent(r.count / total)], None) for r in self.reasons]
            self.table.value = compact_table(["Reason", "Overrides", "Share"], rows)
        self.children = tuple(w for w in (self.chart, self.table) if w.value)
