"""Decisions: a reviewer accepts, overrides, flags, skips or undoes; a production system reads
the final ones; a subject contests.

``record_decision`` reads everything it checks about the case in one round trip
(``case_facts.CaseFacts``), applies the review rules (``review_queue``: whose turn it is,
what is pending), and writes the decision with its audit row (``write_decision``, shared with a
lead's adjudication) in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.store import double_review, explanations, personal_data, review_queue, sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.case_records import Decision, DecisionRequest
from hilt.pipelines.store.ops import case_facts, queue, recipients
from hilt.pipelines.store.oversight_tally import Written
from hilt.pipelines.store.validation import check_text

if TYPE_CHECKING:
    from hilt.pipelines.store.ops.case_facts import CaseFacts, PredictionRef
    from hilt.pipelines.store.unit import Unit


#: Longest time on item recorded (a day): a lease left open over a weekend is not a measure.
MAX_TIME_ON_ITEM_MS = 86_400_000

#: The columns ``decisions_where`` reads (decisions d JOIN cases c), in its order.
DECISION_COLUMNS = (
    "d.decision_id, d.request_id, d.case_id, d.prediction_id, d.model_version, d.reviewer,"
    " d.reviewer_role, d.action, d.predicted_label, d.final_label, d.reason_code,"
    " d.comment_sealed, d.time_on_item_ms, d.model_shown, d.undo_of, d.created_at, d.seq,"
    " c.subject_ref, d.explanation_sha256"
)


def check_decision_fields(settings: Settings, request: DecisionRequest) -> None:
    """Validate what can be validated without reading the store."""
    review = settings.review
    classes = settings.target.classes
    check_text(request.comment, "comment", review.max_comment_length, multiline=True)
    check_text(request.request_id, "request_id", 128)
    action = request.action
    if action in ("override", "blind"):
        if request.final_label is None:
            raise InputError(f"{action} needs final_label (the class the reviewer chose)")
        if request.final_label not in classes:
            raise InputError(f"final_label must be one of the target classes {classes}")
    elif request.final_label is not None:
        raise InputError(f"{action} takes no final_label")
    if action == "override":
        if not request.reason_code:
            raise InputError("an override needs a reason_code")
        if request.reason_code not in review.reason_codes:
            raise InputError(
                f"unknown reason_code; configured codes: {', '.join(review.reason_codes)}"
            )
        if review.comment_required and not (request.comment or "").strip():
            raise InputError("an override needs a comment (review.comment_required)")
    elif request.reason_code is not None:
        raise InputError(f"{action} takes no reason_code")
    if action == "undo" and not request.undo_of:
        raise InputError("undo needs undo_of (the decision_id it compensates)")
    if action != "undo" and request.undo_of is not None:
        raise InputError("only undo takes undo_of")


def _check_reviewable(facts: CaseFacts, me: str) -> None:
    """The case exists, may still be processed, and nobody else holds its lease."""
    if not facts.known:
        raise NotFoundError("decision on an unknown case id")
    if facts.removed:
        raise ConflictError(
            "this case's data was erased or has passed its retention period; "
            "it can no longer be reviewed"
        )
    if facts.restricted:
        raise ConflictError(
            "processing of this case is restricted at its subject's request "
            "(GDPR Art. 18 / 21) until the restriction is lifted"
        )
    if facts.lease_holder is not None and facts.lease_holder != me:
        raise ConflictError("another reviewer holds this case's lease")


def _time_on_item_ms(facts: CaseFacts, request: DecisionRequest, me: str, now: datetime) -> int:
    """The time the reviewer held the case before deciding, measured by the store from
    their lease (a decision needs one; an undo, which follows the decision that released
    it, takes none and counts 0)."""
    if request.action == "undo":
        return 0
    if facts.lease_holder != me or facts.lease_since_us is None:
        raise ConflictError(
            "a decision needs your live lease on the case: take it from the queue "
            "(next_case), or take it again if it expired"
        )
    held_ms = (int(now.timestamp() * 1_000_000) - facts.lease_since_us) // 1000
    return max(0, min(held_ms, MAX_TIME_ON_ITEM_MS))


def _model_shown(
    unit: Unit, facts: CaseFacts, request: DecisionRequest, pred: PredictionRef | None, me: str
) -> bool:
    """Whether the model's output was before the reviewer, as the store knows it (the
    client's ``model_shown`` is not asked): never for a blind judgement or a case without a
    prediction; under blind-first review (``review.blind_first``) only once the reviewer
    recorded their own blind judgement in this round, and an accept or override before that
    is refused."""
    if pred is None or request.action == "blind":
        return False
    if not unit.settings.review.blind_first:
        return True
    mine = [a for a in facts.history if a.reviewer == me] if facts.gold else facts.history
    judged = review_queue.blind_label(mine, me) is not None
    if not judged and request.action in double_review.FINAL_ACTIONS:
        raise ConflictError(
            "blind-first review: record your own judgement (action blind) before you "
            "accept or override the model's"
        )
    return judged


def _chosen_prediction(facts: CaseFacts, prediction_id: int | None) -> PredictionRef | None:
    """The prediction the decision is about: the one named, else the newest."""
    if prediction_id is None:
        return facts.predictions[0] if facts.predictions else None
    matching = [p for p in facts.predictions if p.prediction_id == prediction_id]
    if not matching:
        raise NotFoundError("prediction_id does not belong to this case")
    return matching[0]


def _check_turn(facts: CaseFacts, request: DecisionRequest, me: str) -> None:
    """A review is pending on the case and this reviewer may give it (or, for an undo, the
    decision undone is their own latest one)."""
    if request.action == "undo":
        # On a gold case every reviewer decides alone: only their own history counts.
        mine = [a for a in facts.history if a.reviewer == me or not facts.gold]
        _check_undo(request, mine, me)
        return
    has_prediction = bool(facts.predictions)
    if facts.gold:
        state = review_queue.gold_state(facts.history, me, has_prediction)
    else:
        state = review_queue.case_state(
            facts.history,
            facts.contest_seq,
            has_prediction,
            double=facts.double,
            manual=facts.manual,
        )
    if not state.pending:
        raise ConflictError("this case has no review pending (already decided)")
    if state.excluded_reviewer == me:
        why = (
            "a contested case"
            if state.contested
            else "a double-review case"
            if state.second_review
            else "a case you flagged"
        )
        raise PermissionDeniedError(f"{why} must be decided by another reviewer")


def _check_undo(
    request: DecisionRequest, history: list[review_queue.LoggedAction], me: str
) -> None:
    """Only your own latest, not yet undone decision on the case can be undone."""
    target = next((a for a in history if a.decision_id == request.undo_of), None)
    if target is None:
        raise NotFoundError("undo_of names no decision on this case")
    if target.reviewer != me:
        raise PermissionDeniedError("only the reviewer who made a decision can undo it")
    if target.action == "undo":
        raise InputError("an undo cannot itself be undone; decide again instead")
    if history[-1].decision_id != target.decision_id:
        raise ConflictError("only the latest decision on a case can be undone")


def record_decision(unit: Unit, request: DecisionRequest) -> Decision:
    """Record a reviewer's decision on a case, with its audit row, in one transaction.

    A retry with the same ``request_id`` returns the decision already recorded."""
    check_decision_fields(unit.settings, request)
    now = unit.clock()
    me = unit.actor.name
    with unit.transaction():
        facts = case_facts.read_case_facts(unit, request.case_id, request.request_id, now)
        if facts.recorded_as is not None:
            existing = decisions_where(unit, "d.decision_id = ?", [facts.recorded_as])[0]
            if existing.reviewer != me:
                # A retry is the same reviewer's: another's decision (their judgement on a
                # case still open, their comment) is never handed over as one.
                raise ConflictError("request_id was already used by another reviewer")
            if existing.case_id != request.case_id:
                raise ConflictError("request_id was already used for another case")
            return existing
        _check_reviewable(facts, me)
        pred = _chosen_prediction(facts, request.prediction_id)
        predicted = pred.label if pred else None
        _check_turn(facts, request, me)
        time_on_item_ms = _time_on_item_ms(facts, request, me, now)
        shown = _model_shown(unit, facts, request, pred, me)
        request = request.model_copy(update={"model_shown": shown})
        final = request.final_label
        if request.action == "accept":
            if predicted is None:
                raise ConflictError("accept needs a prediction; this case has none")
            final = predicted
        elif request.action == "override" and final == predicted:
            raise ConflictError("an override must choose a class other than the model's")
        prediction_id = pred.prediction_id if pred else None
        decision = write_decision(
            unit,
            DecisionRow(
                request_id=request.request_id,
                case_id=request.case_id,
                subject_ref=facts.subject_ref,
                prediction=pred,
                action=request.action,
                final_label=final,
                reason_code=request.reason_code,
                comment=request.comment,
                time_on_item_ms=time_on_item_ms,
                model_shown=shown,
                undo_of=request.undo_of,
                explanation_sha256=request.explanation_sha256,
            ),
            {"explanation_context": explanation_context(unit, request, prediction_id)},
            now,
        )
        if request.action == "undo":
            # The case comes back to the reviewer who undid, so they can decide again.
            queue.lease(unit, request.case_id, now, decision.seq)
        elif request.action != "blind" and facts.any_lease:
            unit.delete_rows("leases", {"case_id": request.case_id})
            if unit.queue_index is not None:
                unit.queue_index.stage_unlease(request.case_id)
        if unit.queue_index is not None:
            _stage_queue(unit, facts, decision, now)
    return decision


def _stage_queue(unit: Unit, facts: CaseFacts, decision: Decision, now: datetime) -> None:
    """The case's new place in the service's live queue, by the queue rules applied to the
    facts the decision read plus the decision itself (no query), and the day's count."""
    index = unit.queue_index
    assert index is not None
    index.stage_decision(
        decision.decision_id, decision.reviewer, decision.action, decision.undo_of, now
    )
    if decision.action == "skip":
        index.stage_skip(decision.reviewer, decision.case_id)
    if facts.gold:
        return  # never in the shared queue
    history = [
        *facts.history,
        review_queue.LoggedAction(
            decision.decision_id,
            decision.action,
            decision.reviewer,
            decision.seq,
            decision.undo_of,
            decision.final_label,
        ),
    ]
    state = review_queue.case_state(
        history,
        facts.contest_seq,
        bool(facts.predictions),
        double=facts.double,
        manual=facts.manual,
    )
    index.stage_state(decision.case_id, state)


@dataclass(frozen=True)
class DecisionRow:
    """A decision as it is written (the store adds its id, the reviewer, the time, the seq)."""

    request_id: str | None
    case_id: str
    subject_ref: str
    prediction: PredictionRef | None
    action: str
    final_label: str | None
    reason_code: str | None
    comment: str | None
    time_on_item_ms: int
    model_shown: bool
    undo_of: str | None
    explanation_sha256: str | None


#: The decision row's values its ``decision.record`` event carries, in the event's order.
_PAYLOAD_FIELDS = (
    "decision_id",
    "request_id",
    "action",
    "prediction_id",
    "model_version",
    "predicted_label",
    "final_label",
    "reason_code",
    "comment_sealed",
    "time_on_item_ms",
    "model_shown",
    "undo_of",
    "explanation_sha256",
)


def write_decision(
    unit: Unit, row: DecisionRow, extra_payload: dict[str, Any], now: datetime
) -> Decision:
    """Write a decision and its ``decision.record`` audit event (inside the caller's
    transaction). Free text may be about the subject: it is sealed with their key, in the
    row and in the audit payload alike (shredded with the key)."""
    decision_id = uuid.uuid4().hex
    seq = unit.next_seq()
    comment_sealed = (
        personal_data.seal_value(
            unit.keys.store.key(row.subject_ref),
            row.comment,
            personal_data.COMMENT_PURPOSE,
            row.subject_ref,
            seq,
            decision_id,
        )
        if row.comment is not None
        else None
    )
    pred = row.prediction
    decision = Decision(
        decision_id=decision_id,
        request_id=row.request_id,
        case_id=row.case_id,
        prediction_id=pred.prediction_id if pred else None,
        model_version=pred.model_version if pred else None,
        reviewer=unit.actor.name,
        reviewer_role=unit.role,
        action=row.action,
        predicted_label=pred.label if pred else None,
        final_label=row.final_label,
        reason_code=row.reason_code,
        comment=row.comment,
        comment_sealed=comment_sealed,
        time_on_item_ms=row.time_on_item_ms,
        model_shown=row.model_shown,
        undo_of=row.undo_of,
        created_at=utc_timestamp(now),
        seq=seq,
        explanation_sha256=row.explanation_sha256,
    )
    # The stored row; its audit event carries the same values (``_PAYLOAD_FIELDS``).
    stored: dict[str, Any] = {
        "decision_id": decision_id,
        "request_id": row.request_id,
        "case_id": row.case_id,
        "prediction_id": decision.prediction_id,
        "model_version": decision.model_version,
        "reviewer": decision.reviewer,
        "reviewer_role": decision.reviewer_role,
        "action": row.action,
        "predicted_label": decision.predicted_label,
        "final_label": row.final_label,
        "reason_code": row.reason_code,
        "comment_sealed": comment_sealed,
        "time_on_item_ms": row.time_on_item_ms,
        "model_shown": row.model_shown,
        "undo_of": row.undo_of,
        "created_at": now,
        "seq": seq,
        "explanation_sha256": row.explanation_sha256,
    }
    unit.append_audit(
        "decision.record",
        "case",
        row.case_id,
        {**{k: stored[k] for k in _PAYLOAD_FIELDS}, **extra_payload},
        now,
        expect_seq=seq,
    )
    if unit.queue_index is not None:
        unit.queue_index.stage_written(
            Written(
                seq=seq,
                reviewer=decision.reviewer,
                action=row.action,
                predicted=decision.predicted_label is not None,
                reason_code=row.reason_code,
                case_id=row.case_id,
                final_label=row.final_label,
                time_on_item_ms=row.time_on_item_ms,
                undo_of=row.undo_of,
                at=now,
            )
        )
    unit.insert_row("decisions", stored)
    if unit.queue_index is not None and row.request_id is not None:
        # At once, not at the commit: a rolled-back one stays a "maybe" (request_ids.py).
        unit.queue_index.request_ids.add(row.request_id)
    return decision


def decisions_where(
    unit: Unit, where: str, params: list[Any], limit: int = 100_000, *, disclose: bool = False
) -> list[Decision]:
    """Decisions matching ``where`` (on ``decisions d JOIN cases c``), in audit order, their
    comments opened with the subjects' keys (None once a subject is erased). ``disclose``:
    they go to the caller, recorded as disclosed when it is a recipient (GDPR Art. 19)."""
    rows = unit.con.execute(
        f"SELECT {DECISION_COLUMNS} FROM decisions d JOIN cases c USING (case_id)"
        f" WHERE {where} ORDER BY d.seq LIMIT {int(limit)}",
        params,
    ).fetchall()
    return _decisions_from_rows(unit, rows, disclose)


def decisions_of_case(unit: Unit, case_id: str, subject_ref: str) -> list[Decision]:
    """``decisions_where`` for one case whose subject is known (no join with cases: a
    DuckDB join costs more than the point query), disclosed as that is. In the service, a
    case its live queue knows to have no decision is not asked about."""
    index = unit.queue_index
    if index is not None and index.has_no_decisions(case_id):
        return []
    columns = DECISION_COLUMNS.replace("c.subject_ref", "?::VARCHAR")
    rows = unit.con.execute(
        f"SELECT {columns} FROM decisions d WHERE d.case_id = ? ORDER BY d.seq",
        [subject_ref, case_id],
    ).fetchall()
    return _decisions_from_rows(unit, rows, disclose=True)


def _decisions_from_rows(unit: Unit, rows: list[tuple[Any, ...]], disclose: bool) -> list[Decision]:
    if disclose:
        recipients.record_disclosures(unit, [(str(r[17]), int(r[16])) for r in rows])
    with_comment = {str(r[17]) for r in rows if r[11] is not None}
    keys = unit.keys.store.get(with_comment) if with_comment else {}

    def comment(r: tuple[Any, ...]) -> str | None:
        key = keys.get(str(r[17]))
        if r[11] is None or key is None:
            return None
        text = personal_data.open_value(
            key, r[11], personal_data.COMMENT_PURPOSE, str(r[17]), int(r[16]), str(r[0])
        )
        return str(text)

    return [
        Decision(
            decision_id=r[0],
            request_id=r[1],
            case_id=r[2],
            prediction_id=r[3],
            model_version=r[4],
            reviewer=r[5],
            reviewer_role=r[6],
            action=r[7],
            predicted_label=r[8],
            final_label=r[9],
            reason_code=r[10],
            comment=comment(r),
            comment_sealed=r[11],
            time_on_item_ms=int(r[12]),
            model_shown=bool(r[13]),
            undo_of=r[14],
            created_at=utc_timestamp(r[15]),
            seq=int(r[16]),
            explanation_sha256=r[18],
        )
        for r in rows
    ]


def decisions(
    unit: Unit,
    after_seq: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=100_000)] = 1000,
    final_only: bool = False,
) -> list[Decision]:
    """Reviewer decisions in audit order, for a production system to read.

    Every action by default (undo events included, so a consumer can apply them);
    ``final_only``: only accept / override / adjudicate decisions that have not been
    undone, on settled cases (not a gold case; a double-review case once two reviews
    agree or a lead adjudicated); apply them in seq order, the last one wins.
    """
    if limit < 1 or limit > 100_000:
        raise InputError("limit must be between 1 and 100000")
    where = "d.seq > ?"
    if final_only:
        where += " AND " + final_sql(unit)
    return decisions_where(unit, where, [after_seq], limit, disclose=True)


def final_sql(unit: Unit) -> str:
    """The condition (on ``decisions d``) of a final decision: accept / override /
    adjudicate, not undone, on a settled case; of several, the last one (by seq) wins."""
    where = (
        "d.action IN ('accept', 'override', 'adjudicate') AND d.decision_id NOT IN"
        " (SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL)"
    )
    # Gold cases are tests of reviewers, not cases to act on; a double-review case
    # is final once settled (two reviews that agree, or a lead's adjudication).
    where += " AND d.case_id NOT IN (SELECT case_id FROM gold_cases)"
    share = unit.settings.oversight.double_review_share
    if share > 0:
        unsettled = double_review.unsettled_sql("decisions", "contests", share)
        where += f" AND d.case_id NOT IN ({unsettled})"
    return where


def get_decision(unit: Unit, decision_id: str) -> Decision:
    """One decision by its id (NotFoundError if there is none)."""
    found = decisions_where(unit, "d.decision_id = ?", [decision_id], limit=1, disclose=True)
    if not found:
        raise NotFoundError("unknown decision id")
    return found[0]


def explanation_context(
    unit: Unit, request: DecisionRequest, prediction_id: int | None
) -> dict[str, Any] | None:
    """The explanation context to record with a decision (checked and re-rendered from
    the stored prediction, see ``explanations``), or None when none was sent."""
    if request.explanation_sha256 is None and request.explanation_context is None:
        return None
    stored = None
    if prediction_id is not None:
        stored = _stored_prediction(unit, request.case_id, prediction_id)
    return explanations.check_explanation(unit.settings, request, stored)


def _stored_prediction(
    unit: Unit, case_id: str, prediction_id: int
) -> tuple[float, str, str] | None:
    """(score, label, explanation) of a prediction of the case. In the service, from the
    rows a lease read ahead for the case when it holds them (``LiveQueue.case_rows``, as the
    tables hold them: the same rows ``case_facts`` reads the case's predictions from)."""
    index = unit.queue_index
    read_ahead = index.case_rows.get(case_id) if index is not None else None
    for p in read_ahead[2] if read_ahead is not None else ():
        if int(p[0]) == prediction_id:  # (cases.PREDICTION_COLUMNS)
            return float(p[3]), str(p[4]), str(p[5])
    row = sql.one(
        unit.con,
        "SELECT score, label, explanation FROM predictions WHERE prediction_id = ?",
        [prediction_id],
    )
    return (float(row[0]), str(row[1]), str(row[2])) if row is not None else None


def contest(unit: Unit, case_id: str) -> int:
    """Record that the case's subject asked for human review (GDPR Art. 22): it comes
    first in the queue, for another reviewer. Returns the event's seq."""
    now = unit.clock()
    with unit.transaction():
        if sql.one(unit.con, "SELECT 1 FROM cases WHERE case_id = ?", [case_id]) is None:
            raise NotFoundError("unknown case id")
        seq = unit.append_audit("case.contested", "case", case_id, {}, now)
        unit.con.execute("INSERT INTO contests VALUES (?, ?, ?)", [case_id, now, seq])
        if unit.queue_index is not None:
            unit.queue_index.stage_contest(case_id, seq)
            unit.queue_index.stage_refresh(case_id)
    return seq
