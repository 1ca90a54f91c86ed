"""The oversight dashboard's contract: ``OversightBackend`` (what a lead reads and does) and
the records that cross it. ``hilt.pipelines.dashboards.oversight`` implements it on the
store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hilt.widgets.contracts.common import ReviewConfig, Reviewer, ReviewItem

#: The title of the refusal shown when the oversight dashboard cannot be opened.
UNAVAILABLE = "The oversight dashboard is not available"


@dataclass(frozen=True)
class QueueHealth:
    waiting: int
    leased: int
    done_today: int
    done_total: int
    #: Age of the oldest case waiting (not leased), in minutes; None when none waits.
    oldest_waiting_minutes: float | None
    #: Double-review cases decided once, waiting for a second reviewer.
    awaiting_second_review: int
    #: Double-review conflicts waiting for a lead.
    adjudication_waiting: int
    #: Cases waiting without a model prediction (new cases while halted).
    manual_waiting: int
    gold_cases: int


@dataclass(frozen=True)
class ReviewerStats:
    reviewer: str
    decided: int
    decided_today: int
    accepted: int
    overridden: int
    accept_rate: float | None
    override_rate: float | None
    median_time_s: float | None
    gold_decided: int
    gold_correct: int
    gold_accuracy: float | None


@dataclass(frozen=True)
class BiasAlert:
    reviewer: str
    #: "rubber-stamping" or "low-gold-accuracy".
    kind: str
    message: str


@dataclass(frozen=True)
class Agreement:
    pairs: int
    agreed: int
    kappa: float | None
    awaiting_second_review: int
    conflicts_open: int
    conflicts_resolved: int


@dataclass(frozen=True)
class ReasonCount:
    code: str
    label: str
    count: int


@dataclass(frozen=True)
class OversightOverview:
    """Everything the oversight dashboard shows about the queue and the reviewers."""

    queue: QueueHealth
    reviewers: tuple[ReviewerStats, ...]
    agreement: Agreement
    reasons: tuple[ReasonCount, ...]
    alerts: tuple[BiasAlert, ...]
    window_days: int
    as_of: str
    #: The automation-bias alert's thresholds (hilt.toml ``[oversight]``): the reviewer
    #: chart shades the zone they bound.
    alert_accept_rate: float
    alert_median_seconds: float


@dataclass(frozen=True)
class ConflictItem:
    """A double-review case whose two reviewers disagree, as the adjudicating lead sees it."""

    item: ReviewItem
    first_reviewer: str
    first_label: str
    second_reviewer: str
    second_label: str


@dataclass(frozen=True)
class AdjudicationReceipt:
    case_id: str
    final_label: str
    seq: int


@dataclass(frozen=True)
class SystemStatus:
    halted: bool
    changed_by: str | None
    changed_at: str | None
    #: The halt's reason, shown to leads only.
    reason: str | None


@dataclass(frozen=True)
class MetricRow:
    name: str
    challenger: float | None
    champion: float | None


@dataclass(frozen=True)
class GateCheckView:
    name: str
    passed: bool
    explanation: str


@dataclass(frozen=True)
class SubgroupRow:
    """One protected group's positive (selection) rate under both models."""

    attribute: str
    group: str
    n: int
    challenger: float | None
    champion: float | None


@dataclass(frozen=True)
class ModelComparison:
    """The challenger against the champion, and whether this lead may decide on it."""

    run_id: str
    challenger_version: str
    champion_version: str | None
    author: str | None
    gate: str | None
    metrics: tuple[MetricRow, ...]
    checks: tuple[GateCheckView, ...]
    subgroups: tuple[SubgroupRow, ...]
    figure: bytes | None
    #: Four eyes: the lead looking did not train the run.
    can_decide: bool
    why_not: str | None = None


@dataclass(frozen=True)
class ModelDecision:
    run_id: str
    version: str
    #: "approved" or "rejected".
    action: str
    audit_seq: int
    message: str


class OversightBackend(Protocol):
    """What the oversight dashboard reads and does, on behalf of one lead."""

    def lead(self) -> Reviewer: ...

    def review_config(self) -> ReviewConfig: ...

    def overview(self) -> OversightOverview: ...

    def conflicts(self) -> tuple[ConflictItem, ...]: ...

    def adjudicate(
        self, case_id: str, final_label: str, comment: str | None
    ) -> AdjudicationReceipt:
        """Settle a conflict; raises with a clear message if refused."""
        ...

    def system_status(self) -> SystemStatus: ...

    def halt(self, reason: str) -> SystemStatus: ...

    def resume(self) -> SystemStatus: ...

    def comparison(self) -> ModelComparison | None:
        """Challenger against champion (slow: reads the model registry); None without a
        challenger."""
        ...

    def approve(self, run_id: str) -> ModelDecision: ...

    def reject(self, run_id: str, reason: str) -> ModelDecision: ...


# ---- issue 14, the incident register (widgets/oversight/incidents_panel.py)
def time_left(seconds: float | None) -> str:
    """'2.5 d', '5.0 h', '3.0 h overdue'; '-' without a deadline."""
    if seconds is None:
        return "-"
    hours = abs(seconds) / 3600
    text = f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"
    return text if seconds >= 0 else f"{text} overdue"


@dataclass(frozen=True)
class IncidentView:
    """One open incident as the lead sees it; the deadline and the time left are the
    store's (from the kind and the time it became known)."""

    incident_id: str
    kind: str
    #: The provision that names it, e.g. "AI Act 73(2)", "GDPR 33(1)".
    provision: str
    serious: bool
    source: str
    status: str
    summary: str
    known_at: str
    deadline: str | None
    seconds_left: float | None
    overdue: bool
    report_to: str
    opened_by: str
    #: "recipient at time", one per notification.
    told: tuple[str, ...]
    #: Whether this lead may close it (a serious one: not the person who opened it).
    can_close: bool
    why_not: str | None = None


@runtime_checkable
class IncidentBackend(Protocol):
    """The incident register's part of the oversight backend."""

    def open_incidents(self) -> tuple[IncidentView, ...]: ...

    def record_told(self, incident_id: str, recipient: str, told_at: str | None) -> IncidentView:
        """Record that ``recipient`` was told (at ``told_at``, ISO-8601; None: now)."""
        ...

    def close_incident(self, incident_id: str, reason: str) -> IncidentView:
        """Close it with a reason; raises with a clear message if refused."""
        ...
