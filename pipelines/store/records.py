"""The records that cross the store's boundary, in both modes (embedded and HTTP).

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_serializer,
)

#: accept / override end a review (a final decision); flag asks for a second opinion; skip
#: hands the case back; undo compensates an earlier decision (history is never rewritten);
#: blind records the reviewer's own judgement before the model's output is shown.
DecisionAction = Literal["accept", "override", "flag", "skip", "undo", "blind"]
FINAL_ACTIONS = ("accept", "override")


#: The largest audit seq a query may name (DuckDB's BIGINT).
MAX_SEQ = 2**63 - 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class User(_Record):
    name: str
    roles: list[str]
    #: None when the store knows who this is (their own token, a sign-in proxy that proved
    #: itself, the workspace's files); otherwise why not (``SINGLE_PERSON``). Every audit
    #: event written as this user carries it (``Unit.append_audit``). Left out of the
    #: record as sent when None, so a proven user reads as before.
    unproven: str | None = None

    @model_serializer(mode="wrap")
    def _without_proof_when_proven(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("unproven") is None:
            data.pop("unproven", None)
        return data


class TokenGrant(_Record):
    """A new API token; it is shown once and only its hash is stored."""

    user: str
    roles: list[str]
    token: str
    #: When the store starts refusing it ([access] token_days after it was issued).
    expires_at: str


class UserInfo(_Record):
    """A user as the store knows them (``hilt users list``); never a token."""

    name: str
    roles: list[str]
    active: bool
    #: Listed in hilt.toml [access.users] as of the last ``users sync`` (or init).
    in_config: bool
    #: Tokens that still work (neither revoked nor expired), and when the last one expires.
    tokens: int
    tokens_expire: str | None = None


class UserSync(_Record):
    """What ``users sync`` changed to make the users match hilt.toml [access.users]."""

    #: New users, with their roles.
    created: dict[str, list[str]] = Field(default_factory=dict)
    #: Users the store knew that hilt.toml lists from now on (``hilt users add`` made them,
    #: or the file listed them before) ...
    listed: list[str] = Field(default_factory=list)
    #: ... of whom these were disabled, and may act again.
    enabled: list[str] = Field(default_factory=list)
    #: No longer listed in hilt.toml: disabled, their tokens revoked.
    disabled: list[str] = Field(default_factory=list)
    #: name → [roles before, roles after]
    roles_changed: dict[str, list[list[str]]] = Field(default_factory=dict)
    #: The audit event that records the sync (None: nothing to change, nothing written).
    seq: int | None = None

    @property
    def changed(self) -> bool:
        return self.seq is not None


class IngestResult(_Record):
    kind: Literal["cases", "predictions", "shadow-predictions"]
    rows: int
    #: The audit event that records the batch.
    seq: int
    #: sha256 of the batch as written (see ``batch_digest``).
    digest: str
    #: A partial ingest (cases only): how many rows were rejected, which (1-based row numbers
    #: of the file) and why (column and problem, never a value), and the sha256 of the
    #: rejects file ``tables.rejects_csv`` makes of them (audited with the batch).
    rejected: int = 0
    rejected_rows: list[int] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    rejects_sha256: str | None = None


class DecisionRequest(_Record):
    case_id: str = Field(min_length=1, max_length=128)
    action: DecisionAction
    #: override / blind: the class the reviewer chose. accept: omitted (the model's label).
    final_label: str | None = None
    reason_code: str | None = None
    comment: str | None = None
    #: Ignored: the store measures the time on item itself, from the reviewer's lease (kept
    #: so that clients written before can still send it).
    time_on_item_ms: int = Field(default=0, ge=0, le=86_400_000)
    #: Ignored: the store decides whether the model's output was before the reviewer (not
    #: for a blind judgement or a case without a prediction; under blind-first review, only
    #: after the reviewer's own blind judgement). Kept so that older clients may send it.
    model_shown: bool = True
    #: The prediction the decision is about; default: the case's latest prediction.
    prediction_id: int | None = None
    #: Client-chosen idempotency key: a retried request with the same key is recorded once.
    request_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[^\x00\n\r]+$"
    )
    #: For undo: the decision_id it compensates.
    undo_of: str | None = Field(default=None, max_length=64)
    #: sha256 of the explanation fragment the reviewer saw, and the presentation context
    #: it was rendered with (``hilt.widgets.contracts.explanation``); both or neither. The store
    #: re-renders it from the stored prediction and refuses a hash that does not match.
    explanation_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    explanation_context: dict[str, Any] | None = None


class Decision(_Record):
    decision_id: str
    request_id: str | None
    case_id: str
    prediction_id: int | None
    model_version: str | None
    reviewer: str
    reviewer_role: str
    action: str
    predicted_label: str | None
    final_label: str | None
    reason_code: str | None
    #: The reviewer's comment, opened with the subject's key (None once shredded).
    comment: str | None
    time_on_item_ms: int
    model_shown: bool
    undo_of: str | None = None
    created_at: str
    seq: int
    #: The comment as stored and audited: sealed with the subject's key (``enc:v1:…``).
    comment_sealed: str | None = None
    #: sha256 of the explanation the reviewer saw (None: none shown, or recorded before
    #: explanations were hashed); its context is in the decision's audit event.
    explanation_sha256: str | None = None


class Prediction(_Record):
    prediction_id: int
    case_id: str
    model_version: str
    score: float
    label: str
    #: Signed per-feature contributions to the score (feature → contribution).
    explanation: dict[str, float]
    created_at: str
    batch_seq: int


class CaseRecord(_Record):
    case_id: str
    subject_ref: str
    ingest_seq: int
    created_at: str
    #: Feature values, not personal data.
    features: dict[str, Any]
    #: Personal-data values; only those the caller's role may see (see Store.get_case).
    personal: dict[str, Any]
    seed_label: str | None
    predictions: list[Prediction]
    decisions: list[Decision]
    #: The case's data was erased (Art. 17) or passed retention; only its record remains.
    data_removed: bool = False


class AuditEvent(_Record):
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditHead(_Record):
    seq: int
    hash: str


class CheckpointRecord(_Record):
    seq: int
    head_hash: str
    time: str


class BreakRecord(_Record):
    seq: int
    kind: str
    detail: str


class VerifyReport(_Record):
    ok: bool
    events: int
    head_hash: str
    checkpoints: int
    first_break: BreakRecord | None = None
    #: Verified from the signed checkpoint at this seq (``events``: the events after it);
    #: None: the whole log was walked.
    from_checkpoint: int | None = None

    def summary(self) -> str:
        since = self.from_checkpoint
        if self.ok:
            if since is not None:
                return (
                    f"OK {self.events} events after checkpoint seq {since} (verified from "
                    "that signed checkpoint; the log up to it was not re-read)"
                )
            return f"OK {self.events} events"
        b = self.first_break
        assert b is not None
        broken = f"BROKEN at seq {b.seq}: {b.kind}: {b.detail}"
        return broken + (f" (verifying from checkpoint seq {since})" if since is not None else "")


class QueueStatus(_Record):
    """The review queue's counts: waiting (not leased), leased, final decisions today."""

    waiting: int
    leased: int
    done_today: int
    done_today_by_me: int


class LeasedCase(_Record):
    """A case leased to one reviewer until ``lease_expires_at``; nobody else gets it meanwhile."""

    case: CaseRecord
    lease_expires_at: str
    #: The subject asked for human review (GDPR Art. 22): served first.
    contested: bool
    #: Flagged by another reviewer for a second opinion.
    second_opinion: bool
    #: This reviewer's blind judgement on the case, if recorded (blind-first mode).
    blind_label: str | None
    #: The queue's counts right after this lease (the panel's progress line needs no
    #: second round trip); None from an older service.
    queue: QueueStatus | None = None


class DecidedNext(_Record):
    """A decision and the lease that followed it, written in one transaction
    (``ops/decide_next.decide_and_next``): what the review panel needs after a click."""

    decision: Decision
    #: The reviewer's next case (their own live lease first, then the queue), or None when
    #: nothing waits for them.
    leased: LeasedCase | None


class FeatureRange(_Record):
    low: float | None = None
    high: float | None = None
    levels: list[str] | None = None


class SnapshotRecord(_Record):
    """A training snapshot: the training view as of an audit seq, as a Parquet file."""

    name: str
    path: str
    sha256: str
    as_of_seq: int
    #: The audit event that records the snapshot.
    seq: int
    rows: int
    train_rows: int
    holdout_rows: int
    #: Training rows by label source: original, reviewer-accepted, reviewer-corrected.
    label_sources: dict[str, int]
    #: Reviewer-accepted labels left out by the cap (training.max_accepted_share).
    accepted_dropped: int


class SystemState(_Record):
    halted: bool
    changed_by: str | None
    reason: str | None
    changed_at: str | None
    seq: int | None


class AuditQuery(_Record):
    """A filter over the audit log (``Store.audit_search``); every given filter must hold."""

    #: Who acted (exact user name).
    actor: str | None = Field(default=None, max_length=128)
    #: An action ("decision.record"), or a prefix ending in a dot ("model.").
    action: str | None = Field(default=None, max_length=64)
    #: The object acted on: a case id, a run id, a model version, a snapshot name.
    object_id: str | None = Field(default=None, max_length=128)
    #: Events about a model version: its own events and those whose payload names it
    #: (predictions, decisions), e.g. "hilt-german-credit/v3".
    model_version: str | None = Field(default=None, max_length=128)
    #: ISO-8601 times (UTC unless they say otherwise); since ≤ ts < until. Over HTTP an
    #: RFC 3339 date-time (``requests.AuditQueryIn``): sent as one (``_as_date_time``).
    since: str | None = Field(default=None, max_length=40)
    until: str | None = Field(default=None, max_length=40)
    #: min_seq ≤ seq ≤ max_seq (max_seq: the head an explorer opened at, for stable pages).
    min_seq: int | None = Field(default=None, ge=0, le=MAX_SEQ)
    max_seq: int | None = Field(default=None, ge=0, le=MAX_SEQ)
    #: Only these seqs (at most 1000).
    seqs: list[Annotated[int, Field(ge=0, le=MAX_SEQ)]] | None = Field(
        default=None, max_length=1000
    )
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    newest_first: bool = True

    @field_serializer("since", "until")
    def _as_date_time(self, value: str | None) -> str | None:
        """An ISO-8601 time as an RFC 3339 date-time (a day: its midnight; UTC unless it
        says otherwise), as the service takes it; anything else as it is, for the store to
        refuse naming it."""
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.isoformat()


class AuditPage(_Record):
    """One page of events matching an ``AuditQuery``, and counts over all that match."""

    events: list[AuditEvent]
    #: Events matching the filter (all pages).
    total: int
    offset: int
    #: Matching events per action, and per UTC day ("YYYY-MM-DD").
    by_action: dict[str, int]
    by_day: dict[str, int]


class AuditStats(_Record):
    """The audit log at a glance: how many events, over which seqs and times, of which kinds."""

    events: int
    #: The oldest seq still in the log (later than 1 once retention purged the start).
    first_seq: int | None
    head_seq: int
    first_at: str | None
    last_at: str | None
    by_action: dict[str, int]


ModelState = Literal["challenger", "champion", "rejected", "retired", "superseded"]


class ModelEvaluation(_Record):
    """What a training run reports when it registers a model: the holdout evaluation the
    store applies the gate to. Metrics are the evaluation's (NaN as null)."""

    #: sha256 of the training snapshot the model was trained and evaluated on (a snapshot
    #: the store made).
    snapshot_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: The challenger's holdout metrics (auc, accuracy, brier, ...).
    metrics: dict[str, float | None]
    #: The largest subgroup gap per protected attribute.
    gaps: dict[str, float | None]
    #: The champion compared with on the same holdout (None: there was none) and its metrics.
    champion: str | None = None
    champion_metrics: dict[str, float | None] | None = None


class GateCheckRecord(_Record):
    name: str
    passed: bool
    value: float | None
    limit: float | None
    explanation: str


class ModelRecord(_Record):
    """A model version as the store's registry holds it; scoring and promotion obey this."""

    #: "<registered name>/v<version>", as predictions name it.
    model: str
    model_sha256: str
    run_id: str
    #: Who registered it (the run's author).
    author: str
    #: The store's own gate verdict on the reported evaluation.
    gate: Literal["passed", "rejected"]
    checks: list[GateCheckRecord]
    evaluation: ModelEvaluation
    state: ModelState
    #: A lead allowed it to score in the shadow (never queued for review).
    shadow: bool
    registered_at: str
    registered_seq: int
    #: The lead who promoted or rejected it (None: not decided by a lead).
    decided_by: str | None
    decided_seq: int | None


def halted_message(state: SystemState, what: str) -> str:
    """Why ``what`` (e.g. "scoring") is refused while a lead's halt holds. The halt's reason
    is not repeated: it is free text, kept in the store and shown to leads only."""
    when = f" at {state.changed_at}" if state.changed_at else ""
    seq = f", audit seq {state.seq}" if state.seq is not None else ""
    return (
        f"{what} refused: the system is halted (by {state.changed_by}{when}{seq}); "
        "a second lead must resume it (`hilt resume --as LEAD`)"
    )


class GoldResult(_Record):
    """Gold cases added: holdout cases with known answers, scored, mixed into the queues."""

    added: int
    model_version: str
    #: The audit event that records the gold set.
    seq: int
    #: Of those added, how many the model gets wrong (its label differs from the known one).
    model_wrong: int


class QueueHealthRecord(_Record):
    waiting: int
    leased: int
    #: Final decisions today (UTC) and in all.
    done_today: int
    done_total: int
    #: When the oldest case still waiting (not leased) arrived, and its age in minutes.
    oldest_waiting_at: str | None
    oldest_waiting_minutes: float | None
    #: Double-review cases decided once, waiting for a second, independent reviewer.
    awaiting_second_review: int
    #: Double-review cases whose two reviewers disagree, waiting for a lead.
    adjudication_waiting: int
    #: Cases waiting without a model prediction (new cases while the system is halted).
    manual_waiting: int
    gold_cases: int


class ReviewerStatsRecord(_Record):
    reviewer: str
    #: Live (not undone) final decisions in the window; today (UTC).
    decided: int
    decided_today: int
    accepted: int
    #: Overrides of a model prediction (decisions on cases without one are not counted).
    overridden: int
    accept_rate: float | None
    override_rate: float | None
    median_time_ms: float | None
    #: Final decisions on gold cases, and how many matched the known answer.
    gold_decided: int
    gold_correct: int
    gold_accuracy: float | None


class AgreementRecord(_Record):
    #: Double-review cases with two final decisions by different reviewers.
    pairs: int
    agreed: int
    #: Cohen's kappa between the first and the second review (None: undefined).
    kappa: float | None
    awaiting_second_review: int
    conflicts_open: int
    conflicts_resolved: int


class ReasonCountRecord(_Record):
    reason_code: str
    count: int


class BiasAlertRecord(_Record):
    reviewer: str
    kind: Literal["rubber-stamping", "low-gold-accuracy"]
    message: str


class OversightReport(_Record):
    """What the oversight lead watches, computed by the store from its own tables."""

    as_of: str
    window_days: int
    queue: QueueHealthRecord
    reviewers: list[ReviewerStatsRecord]
    agreement: AgreementRecord
    reasons: list[ReasonCountRecord]
    alerts: list[BiasAlertRecord]


class ConflictRecord(_Record):
    """A double-review case whose two reviewers disagree: a lead adjudicates."""

    case_id: str
    first_reviewer: str
    first_label: str
    second_reviewer: str
    second_label: str
    predicted_label: str | None
    score: float | None
    #: The seq of the second decision (when the conflict arose).
    seq: int


# ---- issue 12, config drift: the versions of hilt.toml the store recorded.
ConfigState = Literal["in-force", "superseded", "pending", "rejected", "withdrawn"]


class ConfigVersion(_Record):
    """One version of hilt.toml as the store recorded it (never its text: key names, and
    values only where they carry no personal data)."""

    version: int
    sha256: str
    state: ConfigState
    #: The version in force when this one was applied (None: the first, at init).
    base_version: int | None
    #: Keys of the file that changed, were added, were removed (against the base).
    changed: list[str]
    added: list[str]
    removed: list[str]
    #: [old, new] in effect, for the keys whose values may be shown.
    values: dict[str, list[Any]]
    #: The keys whose change loosens a rule that protects people (a lead approves them),
    #: each described in one line.
    loosens: list[str]
    #: [access.users] differs from the base: `hilt users sync` applies it to the store.
    users_changed: bool
    applied_by: str
    applied_at: str
    applied_seq: int
    #: The lead who approved or rejected it, or the admin whose later change withdrew it.
    decided_by: str | None
    decided_at: str | None
    decided_seq: int | None


class ConfigStatus(_Record):
    """The config in force, the change waiting for a lead, and the file on disk."""

    in_force: ConfigVersion
    pending: ConfigVersion | None
    #: sha256 of the workspace's hilt.toml (None: there is no such file).
    file_sha256: str | None
    #: The file differs from the config in force: everything but the config operations is
    #: refused until an admin applies it (or restores the file).
    drift: bool
    #: What is wrong, in one line (None: nothing).
    problem: str | None
    #: Keys of the file that differ from the config in force.
    file_keys: list[str]


class ConfigInForce(_Record):
    """The config in force with its text: what the dashboards' gateway reads to run the
    dashboards on another host under the rules the store enforces (one truth, no copy)."""

    version: int
    sha256: str
    text: str


class ConfigApplied(_Record):
    """What `config apply` did with the workspace's hilt.toml."""

    #: applied: in force at once; pending: a loosening waits for a lead; unchanged: the
    #: file is the config in force (nothing written).
    outcome: Literal["applied", "pending", "unchanged"]
    version: ConfigVersion
    #: A change that was pending and that this one withdrew.
    withdrawn: int | None
