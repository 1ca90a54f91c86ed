"""The review queue, derived from the decisions log: what needs a person, and in what order.

Nothing about the queue is stored apart from leases: a case needs review when it has a
prediction and no final decision (accept / override that was not undone), or when it was
contested by its subject after its final decision, or flagged for a second opinion. Who
may take it follows from the same log: a contested case goes to someone other than the
reviewer who decided it, a flagged case to someone other than the one who flagged it.
"""

from __future__ import annotations

#: One row per case that needs review, with the reviewer it must not go to.
QUEUE_STATE_SQL = """
WITH live AS (
    SELECT * FROM decisions
    WHERE decision_id NOT IN (
        SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL)
), final AS (
    SELECT case_id, max(seq) AS final_seq, arg_max(reviewer, seq) AS final_reviewer
    FROM live WHERE action IN ('accept', 'override') GROUP BY case_id
), flagged AS (
    SELECT case_id, max(seq) AS flag_seq, arg_max(reviewer, seq) AS flagger
    FROM live WHERE action = 'flag' GROUP BY case_id
), contested AS (
    SELECT case_id, max(seq) AS contest_seq FROM contests GROUP BY case_id
), latest AS (
    SELECT case_id, max(prediction_id) AS prediction_id, arg_max(score, prediction_id) AS score
    FROM predictions GROUP BY case_id
), state AS (
    SELECT c.case_id, c.created_at, l.score, l.prediction_id,
           coalesce(ct.contest_seq > coalesce(f.final_seq, 0), false) AS contested,
           coalesce(fl.flag_seq > coalesce(f.final_seq, 0), false) AS second_opinion,
           f.final_seq, f.final_reviewer, fl.flagger
    FROM cases c
    JOIN latest l USING (case_id)
    LEFT JOIN final f USING (case_id)
    LEFT JOIN flagged fl USING (case_id)
    LEFT JOIN contested ct USING (case_id)
)
SELECT case_id, created_at, score, prediction_id, contested, second_opinion,
       CASE WHEN contested THEN final_reviewer WHEN second_opinion THEN flagger END
           AS excluded_reviewer
FROM state
WHERE final_seq IS NULL OR contested
"""

#: Order keys per strategy, after "contested first" and "second opinions next".
STRATEGY_ORDER = {
    "uncertainty": "abs(q.score - $threshold), q.created_at, q.case_id",
    "oldest": "q.created_at, q.case_id",
    "random": "random()",
}
