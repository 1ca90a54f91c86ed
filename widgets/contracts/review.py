"""The review panel's contract: ``ReviewBackend`` (leases in, decisions out) and the records
that cross it. ``hilt.pipelines.dashboards.review`` implements it on the store; tests use a
fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hilt.widgets.contracts.common import ReviewConfig, Reviewer, ReviewItem

#: The title of the refusal shown when the review queue cannot be opened.
UNAVAILABLE = "The review queue is not available"

ReviewAction = Literal["accept", "override", "flag", "skip", "undo", "blind"]


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
class Advanced:
    """A decision recorded and the case to show next (None: none waits for this reviewer)."""

    receipt: DecisionReceipt
    item: ReviewItem | None


@dataclass(frozen=True)
class QueueStatus:
    waiting: int
    leased: int
    done_today: int
    done_today_by_me: int


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

    def submit_and_next(self, decision: DecisionInput) -> Advanced:
        """Record a decision, then lease the next case (as ``next_item``), both or neither:
        one round trip to the store for a click. Raises as ``submit`` does."""
        ...

    def queue_status(self) -> QueueStatus: ...
