"""The review queue, derived from the decisions log: what needs a person, and in what order.

Nothing about the queue is stored apart from leases: a case needs review when it has a
prediction and no final decision (accept / override that was not undone), or when it was
contested by its subject after its final decision, or flagged for a second opinion. Cases
whose data was removed (erasure, retention) and subjects who restricted or objected to the
processing are never in the queue. Who
may take it follows from the same log: a contested case goes to someone other than the
reviewer who decided it, a flagged case to someone other than the one who flagged it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: One row per case that needs review, with the reviewer it must not go to.
_QUEUE_STATE_TEMPLATE = """
WITH live AS (
    SELECT * FROM {decisions}
    WHERE decision_id NOT IN (
        SELECT undo_of FROM {decisions} WHERE action = 'undo' AND undo_of IS NOT NULL)
), final AS (
    SELECT case_id, max(seq) AS final_seq, arg_max(reviewer, seq) AS final_reviewer
    FROM live WHERE action IN ('accept', 'override') GROUP BY case_id
), flagged AS (
    SELECT case_id, max(seq) AS flag_seq, arg_max(reviewer, seq) AS flagger
    FROM live WHERE action = 'flag' GROUP BY case_id
), contested AS (
    SELECT case_id, max(seq) AS contest_seq FROM {contests} GROUP BY case_id
), latest AS (
    SELECT case_id, max(prediction_id) AS prediction_id, arg_max(score, prediction_id) AS score
    FROM {predictions} GROUP BY case_id
), state AS (
    SELECT c.case_id, c.created_at, l.score, l.prediction_id,
           coalesce(ct.contest_seq > coalesce(f.final_seq, 0), false) AS contested,
           coalesce(fl.flag_seq > coalesce(f.final_seq, 0), false) AS second_opinion,
           f.final_seq, f.final_reviewer, fl.flagger
    FROM {cases} c
    JOIN latest l USING (case_id)
    LEFT JOIN final f USING (case_id)
    LEFT JOIN flagged fl USING (case_id)
    LEFT JOIN contested ct USING (case_id)
    WHERE c.removed_seq IS NULL
      AND c.subject_ref NOT IN (SELECT subject_ref FROM restrictions WHERE lifted_seq IS NULL)
)
SELECT case_id, created_at, score, prediction_id, contested, second_opinion,
       CASE WHEN contested THEN final_reviewer WHEN second_opinion THEN flagger END
           AS excluded_reviewer
FROM state
WHERE final_seq IS NULL OR contested
"""


def _only_case(table: str) -> str:
    return f"(SELECT * FROM {table} WHERE case_id = $case_id)"


#: Every case that needs review.
QUEUE_STATE_SQL = _QUEUE_STATE_TEMPLATE.format(
    decisions="decisions", contests="contests", predictions="predictions", cases="cases"
)
#: The same for one case (named parameter $case_id): the decision path's fast check.
CASE_STATE_SQL = _QUEUE_STATE_TEMPLATE.format(
    decisions=_only_case("decisions"),
    contests=_only_case("contests"),
    predictions=_only_case("predictions"),
    cases=_only_case("cases"),
)

#: Order keys per strategy, after "contested first" and "second opinions next".
STRATEGY_ORDER = {
    "uncertainty": "abs(q.score - $threshold), q.created_at, q.case_id",
    "oldest": "q.created_at, q.case_id",
    "random": "random()",
}


@dataclass(frozen=True)
class LoggedAction:
    decision_id: str
    action: str
    reviewer: str
    seq: int
    undo_of: str | None
    final_label: str | None


@dataclass(frozen=True)
class CaseState:
    """One case's place in the queue, by the same rules as QUEUE_STATE_SQL."""

    pending: bool
    contested: bool
    second_opinion: bool
    excluded_reviewer: str | None


def case_state(
    actions: list[LoggedAction], contest_seq: int | None, has_prediction: bool
) -> CaseState:
    """The queue rules for one case, from its decisions (in seq order) and contests."""
    undone = {a.undo_of for a in actions if a.action == "undo" and a.undo_of}
    live = [a for a in actions if a.decision_id not in undone]
    finals = [a for a in live if a.action in ("accept", "override")]
    flags = [a for a in live if a.action == "flag"]
    final_seq = finals[-1].seq if finals else 0
    contested = contest_seq is not None and contest_seq > final_seq
    second = bool(flags) and flags[-1].seq > final_seq
    # A case contested before anyone decided it excludes nobody.
    last_final = finals[-1].reviewer if finals else None
    excluded = last_final if contested else flags[-1].reviewer if second else None
    pending = has_prediction and (not finals or contested)
    return CaseState(pending, contested, second, excluded)


def blind_label(actions: list[LoggedAction], reviewer: str) -> str | None:
    """The reviewer's blind judgement since the case's last live final decision."""
    undone = {a.undo_of for a in actions if a.action == "undo" and a.undo_of}
    live = [a for a in actions if a.decision_id not in undone]
    final_seq = max((a.seq for a in live if a.action in ("accept", "override")), default=0)
    blinds = [
        a for a in live if a.action == "blind" and a.reviewer == reviewer and a.seq > final_seq
    ]
    return blinds[-1].final_label if blinds else None
