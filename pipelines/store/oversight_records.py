"""Human oversight (EU AI Act Art. 14) as it crosses the store's boundary: the halt a lead
holds (``SystemState``), gold cases, the oversight report and the double-review
conflicts a lead adjudicates.

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from typing import Literal

from hilt.pipelines.store.record_base import Record


class SystemState(Record):
    halted: bool
    changed_by: str | None
    reason: str | None
    changed_at: str | None
    seq: int | None


def halted_message(state: SystemState, what: str) -> str:
    """Why ``what`` (e.g. "scoring") is refused while a lead's halt holds. The halt's reason
    is not repeated: it is free text, kept in the store and shown to leads only."""
    when = f" at {state.changed_at}" if state.changed_at else ""
    seq = f", audit seq {state.seq}" if state.seq is not None else ""
    return (
        f"{what} refused: the system is halted (by {state.changed_by}{when}{seq}); "
        "a second lead must resume it (`hilt resume --as LEAD`)"
    )


class GoldResult(Record):
    """Gold cases added: holdout cases with known answers, scored, mixed into the queues."""

    added: int
    model_version: str
    #: The audit event that records the gold set.
    seq: int
    #: Of those added, how many the model gets wrong (its label differs from the known one).
    model_wrong: int


class QueueHealthRecord(Record):
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


class ReviewerStatsRecord(Record):
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


class AgreementRecord(Record):
    #: Double-review cases with two final decisions by different reviewers.
    pairs: int
    agreed: int
    #: Cohen's kappa between the first and the second review (None: undefined).
    kappa: float | None
    awaiting_second_review: int
    conflicts_open: int
    conflicts_resolved: int


class ReasonCountRecord(Record):
    reason_code: str
    count: int


class BiasAlertRecord(Record):
    reviewer: str
    kind: Literal["rubber-stamping", "low-gold-accuracy"]
    message: str


class OversightReport(Record):
    """What the oversight lead watches, computed by the store from its own tables."""

    as_of: str
    window_days: int
    queue: QueueHealthRecord
    reviewers: list[ReviewerStatsRecord]
    agreement: AgreementRecord
    reasons: list[ReasonCountRecord]
    alerts: list[BiasAlertRecord]


class ConflictRecord(Record):
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
