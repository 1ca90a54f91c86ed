"""The small interfaces the widgets need, and the plain records that cross them.

Widgets receive a ``ReviewBackend`` and never import the store, duckdb, mlflow or xgboost:
dashboards start fast, and tests drive the widgets with a fake backend. ``hilt.pipelines``
implements these protocols on top of the store (dependencies point one way:
notebooks → widgets → protocols ← pipelines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ReviewAction = Literal["accept", "override", "flag", "skip", "undo", "blind"]


@dataclass(frozen=True)
class FieldSpec:
    """A column a reviewer may see (data minimisation: only these are ever shown)."""

    name: str
    label: str
    #: Python format string for the value, e.g. "{:,.0f} DM"; None: str(value).
    format: str | None = None


@dataclass(frozen=True)
class FeatureRange:
    """What the model saw in training: numeric bounds or the categories seen."""

    low: float | None = None
    high: float | None = None
    levels: tuple[str, ...] | None = None

    def contains(self, value: Any) -> bool:
        if value is None:
            return True
        if self.levels is not None:
            return str(value) in self.levels
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)


@dataclass(frozen=True)
class ReviewConfig:
    """What the review panel needs to know about the use case."""

    use_case: str
    #: The target classes as stored ("1", "0") and their names for people.
    classes: tuple[str, ...]
    class_labels: dict[str, str]
    positive_class: str
    decision_threshold: float
    #: Override reason codes: code → explanation.
    reason_codes: dict[str, str]
    comment_required: bool
    max_comment_length: int
    blind_first: bool
    display: tuple[FieldSpec, ...]
    #: Feature → training range, for the out-of-distribution badge.
    training_ranges: dict[str, FeatureRange] = field(default_factory=dict)

    def class_label(self, cls: str) -> str:
        return self.class_labels.get(cls, cls)


@dataclass(frozen=True)
class Reviewer:
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ReviewItem:
    """One leased case, as the reviewer may see it."""

    case_id: str
    #: Display-field values only (what ReviewConfig.display allows), unformatted.
    values: dict[str, Any]
    #: Feature values used for the out-of-distribution check (never displayed as such).
    features: dict[str, Any]
    prediction_id: int | None
    model_version: str | None
    score: float | None
    predicted_label: str | None
    #: Signed per-feature contributions to the score, from the stored explanation.
    contributions: dict[str, float]
    lease_expires_at: str
    #: The subject asked for human review (GDPR Art. 22): always served first.
    contested: bool = False
    #: Another reviewer flagged it and asked for a second opinion.
    second_opinion: bool = False
    #: This reviewer's own blind judgement, if already recorded (blind-first mode).
    blind_label: str | None = None


@dataclass(frozen=True)
class DecisionInput:
    case_id: str
    action: ReviewAction
    final_label: str | None = None
    reason_code: str | None = None
    comment: str | None = None
    time_on_item_ms: int = 0
    model_shown: bool = True
    prediction_id: int | None = None
    #: For undo: the decision it compensates (history is never rewritten).
    undo_of: str | None = None
    #: Idempotency key: a retried submission is recorded once.
    request_id: str | None = None
    #: sha256 of the explanation fragment on screen when the reviewer decided, and the
    #: presentation context it was rendered with (``hilt.widgets.contracts.explanation``); None when
    #: no model output was shown.
    explanation_sha256: str | None = None
    explanation_context: dict[str, Any] | None = None


@dataclass(frozen=True)
class ShownExplanation:
    """The explanation a reviewer sees: its sha256 and the context it was rendered with."""

    sha256: str
    context: dict[str, Any]


@dataclass(frozen=True)
class DecisionReceipt:
    decision_id: str
    case_id: str
    action: ReviewAction
    final_label: str | None
    seq: int


@dataclass(frozen=True)
class QueueStatus:
    waiting: int
    leased: int
    done_today: int
    done_today_by_me: int


@dataclass(frozen=True)
class Refusal:
    """Why a dashboard is not shown to this person (shown instead of any panel)."""

    title: str
    message: str


class ReviewBackend(Protocol):
    """Where a review session gets its cases and sends its decisions."""

    def reviewer(self) -> Reviewer: ...

    def review_config(self) -> ReviewConfig: ...

    def next_item(self) -> ReviewItem | None:
        """Lease the next case for this reviewer (their own live lease first), or None."""
        ...

    def submit(self, decision: DecisionInput) -> DecisionReceipt:
        """Record a decision; raises an exception with a clear message if it is refused."""
        ...

    def queue_status(self) -> QueueStatus: ...


# ---------------------------------------------------------------------------- auditing
ReplayVerdict = Literal["identical", "differs", "not-recorded", "not-shown", "not-applicable"]


@dataclass(frozen=True)
class ExplanationReplay:
    """A decision's explanation rendered again from the records (EU AI Act Art. 86).

    ``identical``: the fragment rendered from the stored prediction and the recorded context
    has the sha256 recorded at decision time; ``differs``: it has not (the records changed);
    ``not-recorded``: the decision was recorded without a hash (``html``, if any, is the
    stored prediction under today's settings, for reference only, not proof);
    ``not-shown``: the model's output was hidden from the reviewer; ``not-applicable``: an
    undo, or no prediction.
    """

    decision_id: str
    verdict: ReplayVerdict
    message: str
    html: str = ""
    recorded_sha256: str | None = None
    rendered_sha256: str | None = None


@dataclass(frozen=True)
class Auditor:
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class IntegrityReport:
    """The audit log and its signed checkpoints, verified."""

    ok: bool
    #: "OK <n> events" or "BROKEN at seq <n>: <kind>: <detail>".
    summary: str
    events: int
    head_seq: int
    head_hash: str
    checkpoints: int
    #: The public key the checkpoints were checked against, and where it came from.
    public_key: str | None
    #: How the check was made, in one sentence per line.
    method: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventFilter:
    """The event explorer's filters; empty strings mean "any"."""

    actor: str = ""
    #: An action, or a prefix ending in a dot ("model.").
    action: str = ""
    #: The object acted on (a case id, a run id, a model version, a snapshot name).
    object_id: str = ""
    model_version: str = ""
    #: ISO-8601 times or dates (UTC unless they say otherwise); since ≤ time < until.
    since: str = ""
    until: str = ""


@dataclass(frozen=True)
class EventRow:
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    #: The payload as one line of JSON (hashes of free text, never the text).
    payload: str
    hash: str


@dataclass(frozen=True)
class EventPage:
    rows: tuple[EventRow, ...]
    #: Events matching the filter, on every page.
    total: int
    offset: int
    limit: int
    #: The head seq the explorer pages under (new events appear after "Refresh").
    head_seq: int
    by_action: dict[str, int] = field(default_factory=dict)
    by_day: dict[str, int] = field(default_factory=dict)
    #: A PNG of by_day and by_action (empty: no chart).
    chart_png: bytes = b""


@dataclass(frozen=True)
class DecisionChoice:
    decision_id: str
    #: How the decision is listed: seq, time, reviewer, action, case.
    label: str


LineageStatus = Literal["ok", "warning", "info"]


@dataclass(frozen=True)
class LineageStep:
    """One link of a lineage (decision, prediction, model, run, snapshot, ...)."""

    title: str
    facts: tuple[tuple[str, str], ...]
    status: LineageStatus = "ok"


@dataclass(frozen=True)
class TrainingRow:
    """A decision whose label entered the model's training data."""

    seq: int
    decision_id: str
    case_id: str
    action: str
    reviewer: str
    final_label: str
    label_source: str
    #: Empty when the log agrees with the snapshot; else what disagrees.
    problem: str = ""


@dataclass(frozen=True)
class TrainingPage:
    rows: tuple[TrainingRow, ...]
    total: int
    offset: int
    by_source: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LineageView:
    decision_id: str
    steps: tuple[LineageStep, ...]
    #: Where the records stop or disagree, in plain words (empty: the chain is complete).
    problems: tuple[str, ...]
    training: TrainingPage | None = None
    #: A PNG of the training data by label source (empty: no chart).
    chart_png: bytes = b""


@dataclass(frozen=True)
class RunNotebook:
    """An executed notebook of a retraining or scoring run, as the audit log records it."""

    run_id: str
    kind: str
    status: str
    started: str
    author: str
    notebook: str
    sha256: str | None
    #: "matches", "differs", "missing" or "not recorded".
    file_status: str


class AuditBackend(Protocol):
    """What the audit dashboard reads. Every method reads; none writes (the auditor may
    read everything and write nothing)."""

    def auditor(self) -> Auditor: ...

    def verify(self) -> IntegrityReport: ...

    def events(self, query: EventFilter, offset: int, limit: int) -> EventPage:
        """One page of events matching ``query``, newest first."""
        ...

    def refresh(self) -> int:
        """Page under the log's current head from now on; returns it."""
        ...

    def action_names(self) -> tuple[str, ...]: ...

    def recent_decisions(self, limit: int) -> tuple[DecisionChoice, ...]: ...

    def lineage(self, decision_id: str) -> LineageView: ...

    def training_page(self, decision_id: str, offset: int, limit: int) -> TrainingPage: ...

    def explanation(self, decision_id: str) -> ExplanationReplay: ...

    def crosscheck(self, decision_id: str) -> LineageStep:
        """The lineage's training run as MLflow records it, against the log (slow: MLflow)."""
        ...

    def notebooks(self) -> tuple[RunNotebook, ...]: ...

    def notebook_html(self, run_id: str) -> str:
        """The run's executed notebook as one offline HTML page (only if its sha256 matches
        the log)."""
        ...


# ---------------------------------------------------------------------------- oversight
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
    #: PNG figures rendered by the backend (None: nothing to plot).
    reviewer_figure: bytes | None = None
    reasons_figure: bytes | None = None


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
