"""MonitoringPanel: the store's verdict on the latest monitoring run (EU AI Act Arts. 72,
26(5)), with the way to the halt.

Shows when the run was, the model and window, the worst severity in words and colour, and
each finding (check, feature or model version, statistic, value, threshold, severity):
aggregates only, never a case's data. After a breach a lead can halt from here: "Halt
because of this run" hands a reason naming the run to the dashboard's halt control
(``on_halt``), which asks the store; the store decides (lead role), as for any halt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.colours import AMBER, RED
from hilt.widgets.common.html_table import compact_table, facts, note, verdict
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.monitoring import MonitoringSource, MonitoringSummary

_COLOURS = {"warning": AMBER, "breach": RED, "serious": RED}


def halt_reason(summary: MonitoringSummary) -> str:
    """The reason a halt from the panel is given: the run, its worst severity, its checks."""
    checks = sorted({f.check for f in summary.findings if f.severity != "warning"})
    return (
        f"Monitoring run {summary.run_id} (audit seq {summary.seq}): {summary.worst} "
        f"({', '.join(checks) or 'no breach'})"
    )


class MonitoringPanel(widgets.VBox):
    """The latest monitoring verdict from ``source``; ``on_halt(reason)`` halts."""

    def __init__(
        self,
        source: MonitoringSource,
        status: StatusLine | None = None,
        on_halt: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-monitoring-panel")
        self.source = source
        self.status = status or StatusLine()
        self.on_halt = on_halt
        self.summary: MonitoringSummary | None = None
        self.body = widgets.HTML()
        self.halt_button = widgets.Button(
            description="Halt because of this run",
            button_style="danger",
            tooltip="Halt scoring and retraining, giving this monitoring run as the reason",
            layout=widgets.Layout(width="auto", align_self="flex-start"),
        )
        self.halt_button.on_click(lambda _b: self.halt())
        self.refresh()

    def refresh(self) -> None:
        try:
            self.summary = self.source.latest_monitoring()
        except Exception as exc:
            self.status.error(f"Could not read the monitoring runs: {describe_error(exc)}")
            self.summary = None
        self._compose()

    def halt(self) -> None:
        if self.summary is None or self.on_halt is None:
            return
        self.on_halt(halt_reason(self.summary))

    def _compose(self) -> None:
        s = self.summary
        if s is None:
            self.body.value = note("Monitoring has not run yet (`hilt monitor`).")
            self.children = (self.body,)
            return
        ok = None if s.worst == "warning" else not s.breached
        words = {
            "none": "No threshold crossed",
            "warning": "Warnings only: no threshold breached",
            "breach": "Thresholds breached",
            "serious": "Serious breach: an incident may have to be reported (Art. 73)",
        }.get(s.worst, s.worst)
        rows = [
            (
                [
                    f.severity,
                    f.check,
                    f.subject or "scores",
                    f.statistic,
                    f"{f.value:.4g}",
                    f"{f.threshold:.4g}",
                ],
                _COLOURS.get(f.severity),
            )
            for f in s.findings
        ]
        table = (
            compact_table(["severity", "check", "on", "statistic", "value", "threshold"], rows)
            if rows
            else ""
        )
        self.body.value = (
            verdict(ok, words)
            + facts(
                [
                    ("run", f"{s.run_id} at {s.at} (audit seq {s.seq})"),
                    ("model", s.model_version),
                    ("window", f"{s.cases} cases in the last {s.window_days} days"),
                    ("record", s.notebook or "—"),
                ]
            )
            + table
        )
        children: tuple[widgets.Widget, ...] = (self.body,)
        if s.breached and self.on_halt is not None:
            children += (self.halt_button,)
        self.children = children
