"""The review queue, derived from the decisions log: what needs a person, and in what order.

Nothing about the queue is stored apart from leases: a case needs review when it has a
prediction and no final decision (accept / override that was not undone), or when it was
contested by its subject after its final decision, or flagged for a second opinion. Cases
whose data was removed (erasure, retention) and subjects who restricted or objected to the
processing are never in the queue. Who
may take it follows from the same log: a contested case goes to someone other than the
reviewer who decided it, a flagged case to someone other than the one who flagged it.

Oversight (``double_review``): a double-review case decided once stays in the queue for a
second reviewer (not the first); two disagreeing decisions leave it for a lead's
adjudication. Gold cases are never in the shared queue (each reviewer is served them on
their own). A case without a prediction is in the queue only for manual review after a halt.
"""

from __future__ import annotations

from dataclasses import dataclass

from hilt.pipelines.store.double_review import (
    SALT_SQL,
    SETTLING_ACTIONS,
    double_sql,
    rounds_sql,
)

#: One row per case that needs review, with the reviewer it must not go to. Placeholders:
#: the tables (a one-case variant filters them), {rounds} (double review: the rounds of the
#: double-review cases, or an empty relation when it is off), {join_latest} and {manual}
#: (cases without a prediction: only while they are due for manual review).
_QUEUE_STATE_TEMPLATE = """
WITH live AS (
    SELECT * FROM {decisions}
    WHERE decision_id NOT IN (
        SELECT undo_of FROM {decisions} WHERE action = 'undo' AND undo_of IS NOT NULL)
), final AS (
    SELECT case_id, max(seq) AS final_seq, arg_max(reviewer, seq) AS final_reviewer
    FROM live WHERE action IN ('accept', 'override', 'adjudicate') GROUP BY case_id
), flagged AS (
    SELECT case_id, max(seq) AS flag_seq, arg_max(reviewer, seq) AS flagger
    FROM live WHERE action = 'flag' GROUP BY case_id
), contested AS (
    SELECT case_id, max(seq) AS contest_seq FROM {contests} GROUP BY case_id
), rounds AS (
    {rounds}
), latest AS (
    SELECT case_id, max(prediction_id) AS prediction_id, arg_max(score, prediction_id) AS score
    FROM {predictions} GROUP BY case_id
), state AS (
    SELECT c.case_id, c.created_at, l.score, l.prediction_id,
           coalesce(ct.contest_seq > coalesce(f.final_seq, 0), false) AS contested,
           coalesce(fl.flag_seq > coalesce(f.final_seq, 0), false) AS second_opinion,
           coalesce(r.n_adjudicated = 0 AND r.n_final = 1, false) AS second_review,
           l.prediction_id IS NULL AS manual,
           f.final_seq, f.final_reviewer, fl.flagger, r.first_reviewer
    FROM {cases} c
    {join_latest} latest l USING (case_id)
    LEFT JOIN final f USING (case_id)
    LEFT JOIN flagged fl USING (case_id)
    LEFT JOIN contested ct USING (case_id)
    LEFT JOIN rounds r USING (case_id)
    WHERE c.removed_seq IS NULL
      AND NOT EXISTS (SELECT 1 FROM restrictions r WHERE r.subject_ref = c.subject_ref
                      AND r.lifted_seq IS NULL)
      AND c.case_id NOT IN (SELECT case_id FROM gold_cases){manual}
)
SELECT case_id, created_at, score, prediction_id, contested, second_opinion, second_review,
       manual,
       CASE WHEN contested THEN final_reviewer WHEN second_review THEN first_reviewer
            WHEN second_opinion THEN flagger END AS excluded_reviewer
FROM state
WHERE final_seq IS NULL OR contested OR second_review
"""

_NO_ROUNDS = (
    "SELECT NULL::VARCHAR AS case_id, NULL::BIGINT AS n_final, NULL::BIGINT AS n_adjudicated,"
    " NULL::VARCHAR AS first_reviewer WHERE false"
)


def _only_case(table: str) -> str:
    return f"(SELECT * FROM {table} WHERE case_id = $case_id)"


def _queue_sql(tables: dict[str, str], double_review_share: float, manual_cut: int) -> str:
    if double_review_share > 0:
        rounds = (
            "SELECT r.case_id, r.n_final, r.n_adjudicated, r.first_reviewer FROM ("
            + rounds_sql(tables["decisions"], tables["contests"])
            + ") r WHERE "
            + double_sql("r.case_id", double_review_share)
        )
    else:
        rounds = _NO_ROUNDS
    if manual_cut > 0:
        join_latest = "LEFT JOIN"
        manual = (
            f" AND (l.prediction_id IS NOT NULL OR (c.ingest_seq < {int(manual_cut)}"
            " AND c.case_id NOT IN (SELECT case_id FROM seed_labels)))"
        )
    else:
        join_latest, manual = "JOIN", ""
    return _QUEUE_STATE_TEMPLATE.format(
        **tables, rounds=rounds, join_latest=join_latest, manual=manual
    )


def queue_state_sql(double_review_share: float = 0.0, manual_cut: int = 0) -> str:
    """Every case that needs review: double review at the given share; cases without a
    prediction ingested before ``manual_cut`` (see ``double_review.MANUAL_CUT_SQL``)."""
    tables = {"decisions": "decisions", "contests": "contests", "predictions": "predictions"}
    return _queue_sql({**tables, "cases": "cases"}, double_review_share, manual_cut)


def case_state_sql(double_review_share: float = 0.0, manual_cut: int = 0) -> str:
    """The same for one case (named parameter $case_id)."""
    tables = {t: _only_case(t) for t in ("decisions", "contests", "predictions", "cases")}
    return _queue_sql(tables, double_review_share, manual_cut)


#: Every case that needs review, without double review.
QUEUE_STATE_SQL = queue_state_sql()
#: The same for one case (named parameter $case_id).
CASE_STATE_SQL = case_state_sql()

#: Order keys per strategy, after "contested first" and "second opinions next".
#: The actions a reviewer's progress line counts as done (``queue.done_today``).
DONE_ACTIONS = ("accept", "override")
#: The final decisions (not undone) made since ``?`` (midnight UTC): decision id, reviewer.
DONE_TODAY_SQL = (
    "SELECT decision_id, reviewer FROM decisions"
    " WHERE action IN ('accept', 'override') AND created_at >= ?"
    " AND decision_id NOT IN (SELECT undo_of FROM decisions WHERE action = 'undo'"
    " AND undo_of IS NOT NULL)"
)

#: The order of ``random``: a hash of the case id salted with the workspace's secret salt
#: (random at `hilt init`, never shown to a reviewer; `hilt simulate` fixes it from its seed)
#: and the reviewer's name. Unpredictable to a reviewer, different for each reviewer (so
#: they do not all reach for the same case), and the same every time for the same store
#: contents: a simulation is reproducible from its seed. The store decides it; a client
#: only names the strategy.
RANDOM_PREFIX = "queue-random:"
RANDOM_ORDER_SQL = (
    f"sha256('{RANDOM_PREFIX}' || {SALT_SQL} || ':' || $me || ':' || q.case_id), q.case_id"
)
STRATEGY_ORDER = {
    # A case without a score (manual review while halted) is as uncertain as can be.
    "uncertainty": "abs(coalesce(q.score, $threshold) - $threshold), q.created_at, q.case_id",
    "oldest": "q.created_at, q.case_id",
    "random": RANDOM_ORDER_SQL,
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
    #: A double-review case decided once: it waits for a second, independent reviewer.
    second_review: bool = False
    #: A double-review case whose two reviewers disagree: it waits for a lead.
    conflict: bool = False


def case_state(
    actions: list[LoggedAction],
    contest_seq: int | None,
    has_prediction: bool,
    *,
    double: bool = False,
    manual: bool = False,
) -> CaseState:
    """The queue rules for one case, from its decisions (in seq order) and contests.

    ``double``: the case is double-reviewed; ``manual``: it may be reviewed without a
    prediction (see ``double_review``)."""
    undone = {a.undo_of for a in actions if a.action == "undo" and a.undo_of}
    live = [a for a in actions if a.decision_id not in undone]
    finals = [a for a in live if a.action in SETTLING_ACTIONS]
    flags = [a for a in live if a.action == "flag"]
    final_seq = finals[-1].seq if finals else 0
    contested = contest_seq is not None and contest_seq > final_seq
    second = bool(flags) and flags[-1].seq > final_seq
    this_round = [a for a in finals if a.seq > (contest_seq or 0)]
    reviews = [a for a in this_round if a.action != "adjudicate"]
    adjudicated = len(reviews) < len(this_round)
    second_review = double and not adjudicated and len(reviews) == 1
    conflict = (
        double
        and not adjudicated
        and len(reviews) >= 2
        and len({a.final_label for a in reviews}) > 1
    )
    if contested:
        # A case contested before anyone decided it excludes nobody.
        excluded: str | None = finals[-1].reviewer if finals else None
    elif second_review:
        excluded = reviews[0].reviewer
    elif second:
        excluded = flags[-1].reviewer
    else:
        excluded = None
    pending = (has_prediction or manual) and (not finals or contested or second_review)
    return CaseState(pending, contested, second, excluded, second_review, conflict)


def gold_state(actions: list[LoggedAction], reviewer: str, has_prediction: bool) -> CaseState:
    """A gold case for one reviewer: pending until they decided it themselves (other
    reviewers' decisions on the same gold case do not count)."""
    mine = [a for a in actions if a.reviewer == reviewer]
    return case_state(mine, None, has_prediction)


def blind_label(actions: list[LoggedAction], reviewer: str) -> str | None:
    """The reviewer's blind judgement since the case's last live final decision."""
    undone = {a.undo_of for a in actions if a.action == "undo" and a.undo_of}
    live = [a for a in actions if a.decision_id not in undone]
    final_seq = max((a.seq for a in live if a.action in ("accept", "override")), default=0)
    blinds = [
        a for a in live if a.action == "blind" and a.reviewer == reviewer and a.seq > final_seq
    ]
    return blinds[-1].final_label if blinds else None
