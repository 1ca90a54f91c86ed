"""Double review, gold cases and manual review: which cases follow which queue rules.

- Double review: a case is double-reviewed when a salted hash of its id falls below
  ``oversight.double_review_share`` (the salt is the workspace's secret holdout salt with its
  own prefix, so reviewers cannot predict which cases, and the choice is independent of the
  holdout). Such a case needs two final decisions by different reviewers; the second
  reviewer does not see the first decision. Two decisions that agree settle the case; two
  that disagree are a conflict that a lead adjudicates (action ``adjudicate``), and the
  adjudication is the final label. A contest (GDPR Art. 22) opens a new round.
- Gold cases (``gold_cases``): holdout cases with known answers, served to each reviewer
  on their own at ``oversight.gold_rate``; never in the shared queue, never training labels
  (the holdout keeps its original label in every snapshot).
- Manual review: a case without a prediction and without a seed label joins the queue
  when it was already in the store while the system was halted: everything ingested before
  the end of the latest halt (or at all, while a halt holds).

Python and SQL implement the same rules; tests compare them.
"""

from __future__ import annotations

import hashlib

#: Size of the hash space of the salted buckets (the first 8 hex digits of a sha256).
HASH_SPACE = 2**32
DOUBLE_PREFIX = "double:"
GOLD_PREFIX = "gold:"
#: Actions that settle a review (an adjudication settles a double-review conflict).
FINAL_ACTIONS = ("accept", "override")
SETTLING_ACTIONS = ("accept", "override", "adjudicate")
#: The salt, read in the same statement (meta holds it since `hilt init`).
SALT_SQL = "(SELECT value FROM meta WHERE key = 'holdout_salt')"
#: Cases that may still be processed: not removed (erasure, retention), their subject's
#: processing not restricted (GDPR Arts. 18, 21).
LIVE_CASES_SQL = (
    "(SELECT case_id FROM cases WHERE removed_seq IS NULL AND subject_ref NOT IN"
    " (SELECT subject_ref FROM restrictions WHERE lifted_seq IS NULL))"
)
#: Cases ingested before this seq without a prediction or a seed label go to manual review.
MANUAL_CUT_SQL = (
    "(SELECT CASE WHEN halted THEN 9223372036854775807 ELSE coalesce(seq, 0) END FROM system_state)"
)


def bucket(text: str) -> int:
    """The first 32 bits of sha256(text), as DuckDB's ``bucket_sql`` computes them."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def double_cut(share: float) -> int:
    return int(share * HASH_SPACE)


def is_double(salt: str, case_id: str, share: float) -> bool:
    return bucket(DOUBLE_PREFIX + salt + case_id) < double_cut(share)


def gold_due(salt: str, reviewer: str, ordinal: int, rate: float) -> bool:
    """Whether a reviewer's ``ordinal``-th case (their count of final decisions so far) is a
    gold case: fixed by the secret salt, so it cannot be predicted, and repeatable."""
    return bucket(f"{GOLD_PREFIX}{salt}:{reviewer}:{ordinal}") < int(rate * HASH_SPACE)


def bucket_sql(case_column: str, salt_sql: str = SALT_SQL) -> str:
    return f"('0x' || left(sha256('{DOUBLE_PREFIX}' || {salt_sql} || {case_column}), 8))::BIGINT"


def double_sql(case_column: str, share: float, salt_sql: str = SALT_SQL) -> str:
    """A boolean SQL expression: the case is double-reviewed (a literal false when off)."""
    cut = double_cut(share)
    if cut <= 0:
        return "false"
    return f"({bucket_sql(case_column, salt_sql)} < {cut})"


def rounds_sql(decisions: str, contests: str) -> str:
    """Per case with a live settling decision since its latest contest: n_final (accept /
    override), n_adjudicated, n_labels (distinct final labels of those reviews),
    first_reviewer, first_label, last_reviewer, last_label and last_seq of the reviews."""
    return f"""
SELECT d.case_id,
       count(*) FILTER (WHERE d.action <> 'adjudicate') AS n_final,
       count(*) FILTER (WHERE d.action = 'adjudicate') AS n_adjudicated,
       count(DISTINCT d.final_label) FILTER (WHERE d.action <> 'adjudicate') AS n_labels,
       arg_min(d.reviewer, d.seq) FILTER (WHERE d.action <> 'adjudicate') AS first_reviewer,
       arg_min(d.final_label, d.seq) FILTER (WHERE d.action <> 'adjudicate') AS first_label,
       arg_max(d.reviewer, d.seq) FILTER (WHERE d.action <> 'adjudicate') AS last_reviewer,
       arg_max(d.final_label, d.seq) FILTER (WHERE d.action <> 'adjudicate') AS last_label,
       max(d.seq) FILTER (WHERE d.action <> 'adjudicate') AS last_seq
FROM {decisions} d
LEFT JOIN (SELECT case_id, max(seq) AS contest_seq FROM {contests} GROUP BY case_id) ct
    USING (case_id)
WHERE d.action IN ('accept', 'override', 'adjudicate')
  AND d.decision_id NOT IN (
      SELECT undo_of FROM {decisions} WHERE action = 'undo' AND undo_of IS NOT NULL)
  AND d.seq > coalesce(ct.contest_seq, 0)
GROUP BY d.case_id
"""


def unsettled_sql(decisions: str, contests: str, share: float, salt_sql: str = SALT_SQL) -> str:
    """case_id of the double-review cases not settled yet: decided once (waiting for the
    second review) or by two reviewers who disagree, without an adjudication."""
    if double_cut(share) <= 0:
        return "SELECT NULL::VARCHAR AS case_id WHERE false"
    return f"""
SELECT r.case_id FROM ({rounds_sql(decisions, contests)}) r
WHERE r.n_adjudicated = 0 AND (r.n_final = 1 OR r.n_labels > 1)
  AND {double_sql("r.case_id", share, salt_sql)}
"""


def conflicts_sql(share: float) -> str:
    """Open conflicts (two disagreeing reviews, no adjudication) with the latest prediction."""
    if double_cut(share) <= 0:
        return (
            "SELECT NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR,"
            " NULL::VARCHAR, NULL::DOUBLE, NULL::BIGINT WHERE false"
        )
    return f"""
SELECT r.case_id, r.first_reviewer, r.first_label, r.last_reviewer, r.last_label,
       p.label, p.score, r.last_seq
FROM ({rounds_sql("decisions", "contests")}) r
LEFT JOIN (SELECT case_id, arg_max(label, prediction_id) AS label,
                  arg_max(score, prediction_id) AS score
           FROM predictions GROUP BY case_id) p USING (case_id)
WHERE r.n_adjudicated = 0 AND r.n_final >= 2 AND r.n_labels > 1
  AND {double_sql("r.case_id", share)}
  AND r.case_id NOT IN (SELECT case_id FROM gold_cases)
  AND r.case_id IN {LIVE_CASES_SQL}
ORDER BY r.last_seq
"""
