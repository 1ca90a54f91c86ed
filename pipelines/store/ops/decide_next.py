"""The review click in one transaction: record a reviewer's decision, then lease their next
case (``decide_and_next``).

It is ``review.record_decision`` followed by ``queue.next_case``, the very functions the two
separate operations run, with every check of both, in one transaction and so with one
COMMIT, one round trip for the review panel: the decision's audit event, then the lease's.
Both or neither: a decision refused leases nothing, and should the lease fail the decision
is rolled back with it. A retried request (the same ``request_id``) finds its decision and
leases again, as ``next_case`` does: the reviewer's own live lease first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from hilt.pipelines.store import review_queue
from hilt.pipelines.store.case_records import DecidedNext, DecisionRequest
from hilt.pipelines.store.ops import queue, review
from hilt.pipelines.store.validation import one_of

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def decide_and_next(
    unit: Unit,
    request: DecisionRequest,
    strategy: Annotated[str, Field(pattern=one_of(review_queue.STRATEGY_ORDER))] | None = None,
) -> DecidedNext:
    """Record ``request`` as ``record_decision`` does, then lease the next case as
    ``next_case`` does (``strategy``: the queue's order, the configured one by default),
    in one transaction."""
    queue.check_strategy(unit, strategy)  # before anything is written
    with unit.transaction():
        decision = review.record_decision(unit, request)
        # The lease reads the queue as the decision left it (the service's live queue
        # included), as the next operation of a group commit would.
        unit.queue_caught_up()
        leased = queue.next_case(unit, strategy)
    return DecidedNext(decision=decision, leased=leased)
