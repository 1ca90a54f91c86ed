"""Human oversight of reviewers (EU AI Act Art. 14): gold cases, the oversight report, and a
lead's adjudication of double-review conflicts.

Gold cases are holdout cases with known answers (never training labels), scored by a model
and mixed into every reviewer's queue; their answers measure automation bias.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.store import double_review, oversight_stats, sql
from hilt.pipelines.store.audit.gold_digest import digest as gold_digest
from hilt.pipelines.store.case_records import Decision
from hilt.pipelines.store.ops import case_facts, cases, models, review
from hilt.pipelines.store.ops.snapshot import HASH_SPACE
from hilt.pipelines.store.oversight_records import ConflictRecord, GoldResult, OversightReport
from hilt.pipelines.store.validation import check_text

if TYPE_CHECKING:
    import polars as pl

    from hilt.pipelines.store.unit import Unit
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it

#: Largest gold set added in one call.
MAX_GOLD_BATCH = 5000


def holdout_sql(unit: Unit, column: str) -> str:
    """A boolean SQL expression: the case is in the holdout (as ``snapshot`` decides it;
    named parameter $salt)."""
    cut = int(unit.settings.training.holdout_fraction * HASH_SPACE)
    return f"(('0x' || left(sha256($salt || {column}), 8))::BIGINT < {cut})"


def gold_candidates(unit: Unit, limit: Annotated[int, Field(ge=1, le=100_000)] = 1000) -> list[str]:
    """Holdout cases that could become gold cases (a known answer, no prediction, no
    decision, not gold yet), in an order fixed by the secret salt."""
    if limit < 1 or limit > 100_000:
        raise InputError("limit must be between 1 and 100000")
    salt = str(sql.scalar(unit.con, "SELECT value FROM meta WHERE key = 'holdout_salt'"))
    rows = unit.con.execute(
        "SELECT c.case_id FROM cases c JOIN seed_labels s USING (case_id)"
        f" WHERE {holdout_sql(unit, 'c.case_id')}"
        " AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.case_id = c.case_id)"
        " AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.case_id = c.case_id)"
        " AND c.case_id NOT IN (SELECT case_id FROM gold_cases)"
        " AND c.case_id IN " + double_review.LIVE_CASES_SQL + ""
        " ORDER BY sha256('pick:' || $salt || c.case_id) LIMIT $limit",
        {"salt": salt, "limit": limit},
    ).fetchall()
    return [str(r[0]) for r in rows]


def add_gold(unit: Unit, model_version: str, frame: pl.DataFrame, model_sha256: str) -> GoldResult:
    """Make holdout cases gold cases, in one transaction: the champion's predictions for
    them (an audited batch, as ``add_predictions``; the scorer proves the model by its
    sha256) and their known answers (the seed labels), audited as ``gold.added`` with the
    digest of the gold rows.

    Every case must be a holdout case (so a reviewer's decision on it never becomes a
    training label) without predictions or decisions, and not gold yet."""
    from hilt.pipelines.store.validation import clean_predictions

    clean = clean_predictions(frame, unit.settings)
    ids = [str(c) for c in clean["case_id"].to_list()]
    if len(ids) > MAX_GOLD_BATCH:
        raise InputError(f"at most {MAX_GOLD_BATCH} gold cases at a time")
    repeated = sorted({c for c in ids if ids.count(c) > 1})
    if repeated:
        raise InputError(f"gold cases must be distinct; repeated: {', '.join(repeated[:5])}")
    now = unit.clock()
    if models.scoring_target(unit, model_version, model_sha256, now, clean.height):
        raise PermissionDeniedError(
            f"gold cases are scored by the champion, not by {model_version} (shadow scoring)"
        )
    with unit.transaction():
        salt = str(sql.scalar(unit.con, "SELECT value FROM meta WHERE key = 'holdout_salt'"))
        rows = unit.con.execute(
            "SELECT w.case_id, c.case_id IS NOT NULL, s.label,"
            f" {holdout_sql(unit, 'w.case_id')},"
            " EXISTS (SELECT 1 FROM predictions p WHERE p.case_id = w.case_id),"
            " EXISTS (SELECT 1 FROM decisions d WHERE d.case_id = w.case_id),"
            " EXISTS (SELECT 1 FROM gold_cases g WHERE g.case_id = w.case_id),"
            " c.subject_ref IN (SELECT subject_ref FROM restrictions"
            "  WHERE lifted_seq IS NULL)"
            " FROM (SELECT unnest($ids) AS case_id) w"
            " LEFT JOIN cases c USING (case_id) LEFT JOIN seed_labels s USING (case_id)"
            " ORDER BY w.case_id",
            {"ids": ids, "salt": salt},
        ).fetchall()
        problems = [
            ("unknown case ids", [r[0] for r in rows if not r[1]]),
            (
                "cases without a known answer (seed label)",
                [r[0] for r in rows if r[1] and r[2] is None],
            ),
            (
                "cases outside the holdout",
                [r[0] for r in rows if r[2] is not None and not r[3]],
            ),
            ("cases that already have predictions", [r[0] for r in rows if r[4]]),
            ("cases that already have decisions", [r[0] for r in rows if r[5]]),
            ("cases that are gold already", [r[0] for r in rows if r[6]]),
            ("cases whose processing is restricted", [r[0] for r in rows if r[7]]),
        ]
        found = [f"- {len(bad)} {what} ({', '.join(bad[:5])})" for what, bad in problems if bad]
        if found:
            # The cases' state, not the request's shape: a conflict (409).
            raise ConflictError("gold cases rejected, nothing was written:\n" + "\n".join(found))
        expected = {str(r[0]): str(r[2]) for r in rows}
        # The predictions are an audited batch of their own, in this transaction.
        batch = cases.insert_predictions(unit, model_version, clean, now, shadow=False)
        wrong = sum(
            1
            for cid, label in zip(ids, clean["label"].to_list(), strict=True)
            if expected[cid] != str(label)
        )
        digest = gold_digest((cid, model_version) for cid in ids)
        seq = unit.append_audit(
            "gold.added",
            "gold",
            model_version,
            {
                "cases": len(ids),
                "digest": digest,
                "model_version": model_version,
                "predictions_seq": batch.seq,
                "model_wrong": wrong,
            },
            now,
        )
        unit.con.execute(
            "INSERT INTO gold_cases SELECT case_id, $model, $me, $now, $seq"
            " FROM (SELECT unnest($ids) AS case_id)",
            {
                "ids": ids,
                "model": model_version,
                "me": unit.actor.name,
                "now": now,
                "seq": seq,
            },
        )
    return GoldResult(added=len(ids), model_version=model_version, seq=seq, model_wrong=wrong)


def oversight_report(unit: Unit) -> OversightReport:
    """Queue health, reviewer statistics, agreement, override reasons and alerts. The
    store service counts from the figures it keeps as the operations change them
    (``oversight_tally.py``); the embedded mode by SQL over the whole tables."""
    now = unit.clock()
    kept = unit.kept_oversight(now) if unit.kept_oversight is not None else None
    return oversight_stats.report(unit.con, unit.settings, now, kept)


def conflicts(unit: Unit) -> list[ConflictRecord]:
    """The adjudication queue: double-review cases whose two reviewers disagree."""
    return oversight_stats.conflicts(unit.con, unit.settings)


def adjudicate(
    unit: Unit,
    case_id: str,
    final_label: str,
    comment: str | None = None,
    request_id: str | None = None,
) -> Decision:
    """A lead settles a double-review conflict: the adjudication (action ``adjudicate``)
    is the case's final label. Not by one of the two reviewers in conflict."""
    if final_label not in unit.settings.target.classes:
        raise InputError(
            f"final_label must be one of the target classes {unit.settings.target.classes}"
        )
    check_text(comment, "comment", unit.settings.review.max_comment_length, multiline=True)
    check_text(request_id, "request_id", 128)
    me = unit.actor.name
    now = unit.clock()
    with unit.transaction():
        if request_id is not None:
            done = review.decisions_where(unit, "d.request_id = ?", [request_id])
            if done:
                if done[0].reviewer != me:
                    raise ConflictError("request_id was already used by another reviewer")
                if done[0].case_id != case_id:
                    raise ConflictError("request_id was already used for another case")
                return done[0]
        case_row = sql.one(
            unit.con,
            "SELECT subject_ref, removed_seq, (SELECT count(*) FROM restrictions r"
            " WHERE r.subject_ref = cases.subject_ref AND r.lifted_seq IS NULL)"
            " FROM cases WHERE case_id = ?",
            [case_id],
        )
        if case_row is None:
            raise NotFoundError("adjudication of an unknown case id")
        if case_row[1] is not None or case_row[2]:
            raise ConflictError(
                "this case's data was erased, has passed its retention period, or its "
                "processing is restricted; it cannot be adjudicated"
            )
        open_ = [
            c for c in oversight_stats.conflicts(unit.con, unit.settings) if c.case_id == case_id
        ]
        if not open_:
            raise ConflictError("this case has no conflict to adjudicate")
        conflict = open_[0]
        if me in (conflict.first_reviewer, conflict.second_reviewer):
            raise PermissionDeniedError(
                "a reviewer in the conflict cannot adjudicate it; another lead must"
            )
        pred = sql.one(
            unit.con,
            "SELECT prediction_id, model_version, label FROM predictions WHERE case_id = ?"
            " ORDER BY prediction_id DESC LIMIT 1",
            [case_id],
        )
        decision = review.write_decision(
            unit,
            review.DecisionRow(
                request_id=request_id,
                case_id=case_id,
                subject_ref=str(case_row[0]),
                prediction=case_facts.PredictionRef(int(pred[0]), str(pred[1]), str(pred[2]))
                if pred
                else None,
                action="adjudicate",
                final_label=final_label,
                reason_code=None,
                comment=comment,
                time_on_item_ms=0,
                model_shown=True,
                undo_of=None,
                # A lead settling a conflict is shown no model view.
                explanation_sha256=None,
            ),
            {
                "conflict": {
                    "first_reviewer": conflict.first_reviewer,
                    "first_label": conflict.first_label,
                    "second_reviewer": conflict.second_reviewer,
                    "second_label": conflict.second_label,
                }
            },
            now,
        )
        unit.con.execute("DELETE FROM leases WHERE case_id = ?", [case_id])
        if unit.queue_index is not None:
            unit.queue_index.stage_unlease(case_id)
            unit.queue_index.stage_refresh(case_id)
    return decision
