"""The monitoring panel's contract (post-market monitoring, EU AI Act Art. 72): the store's
latest verdict as the oversight dashboard shows it. Pure: no ipywidgets.

A backend that can show it implements ``MonitoringSource`` besides ``OversightBackend``;
``hilt.pipelines.dashboards.oversight`` does, on the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class MonitoringFinding:
    """One finding of a monitoring run (a breach or a warning): aggregates only."""

    check: str
    #: The feature, or the model version; None: the scores.
    subject: str | None
    statistic: str
    value: float
    threshold: float
    #: "warning", "breach" or "serious".
    severity: str


@dataclass(frozen=True)
class MonitoringSummary:
    """The store's verdict on the latest monitoring run."""

    run_id: str
    seq: int
    at: str
    model_version: str
    window_days: int
    cases: int
    #: "none", "warning", "breach" or "serious".
    worst: str
    findings: tuple[MonitoringFinding, ...]
    #: The executed notebook's file name in runs/ (the run's record), if known.
    notebook: str | None = None

    @property
    def breached(self) -> bool:
        return self.worst in ("breach", "serious")


@runtime_checkable
class MonitoringSource(Protocol):
    def latest_monitoring(self) -> MonitoringSummary | None:
        """The store's verdict on the latest monitoring run; None: monitoring never ran."""
        ...
