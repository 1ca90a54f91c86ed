"""Records against their audit events: a changed or deleted record is a break too.

The chain proves the audit log; this proves the tables the log speaks about:
- every decision row equals the payload of its ``decision.record`` event, and every such
  event has its row;
- every case and prediction batch still holds as many rows as its event recorded.
"""

from __future__ import annotations

import duckdb

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit_chain import Break

#: Canonical entries have sorted keys, so "action" always comes first: a prefix match picks
#: the events of one kind without parsing a million JSON documents.
DECISION_EVENT = """entry LIKE '{"action":"decision.record",%'"""

_PATHS = [
    "$.actor",
    "$.object_id",
    "$.payload.decision_id",
    "$.payload.request_id",
    "$.payload.action",
    "$.payload.final_label",
    "$.payload.predicted_label",
    "$.payload.reason_code",
    "$.payload.model_version",
    "$.payload.prediction_id",
    "$.payload.time_on_item_ms",
    "$.payload.model_shown",
    "$.payload.undo_of",
    "$.payload.comment_sha256",
    "$.payload.explanation_sha256",
]

_DECISIONS_SQL = f"""
WITH ev AS (
    SELECT seq, json_extract_string(entry, {_PATHS!r}) AS v
    FROM audit_log WHERE {DECISION_EVENT}
)
SELECT min(seq) FROM (
    SELECT d.seq FROM decisions d LEFT JOIN ev ON ev.seq = d.seq
    WHERE ev.seq IS NULL
       OR v[1] IS DISTINCT FROM d.reviewer
       OR v[2] IS DISTINCT FROM d.case_id
       OR v[3] IS DISTINCT FROM d.decision_id
       OR v[4] IS DISTINCT FROM d.request_id
       OR v[5] IS DISTINCT FROM d.action
       OR v[6] IS DISTINCT FROM d.final_label
       OR v[7] IS DISTINCT FROM d.predicted_label
       OR v[8] IS DISTINCT FROM d.reason_code
       OR v[9] IS DISTINCT FROM d.model_version
       OR v[10] IS DISTINCT FROM d.prediction_id::VARCHAR
       OR v[11] IS DISTINCT FROM d.time_on_item_ms::VARCHAR
       OR v[12] IS DISTINCT FROM d.model_shown::VARCHAR
       OR v[13] IS DISTINCT FROM d.undo_of
       OR v[14] IS DISTINCT FROM (CASE WHEN d.comment IS NULL THEN NULL ELSE sha256(d.comment) END)
       OR v[15] IS DISTINCT FROM d.explanation_sha256
    UNION ALL
    SELECT ev.seq FROM ev LEFT JOIN decisions d ON d.seq = ev.seq WHERE d.seq IS NULL
)
"""

_BATCHES_SQL = """
WITH ev AS (
    SELECT seq, json_extract_string(entry, '$.action') AS action,
           try_cast(json_extract(entry, '$.payload.rows') AS BIGINT) AS rows
    FROM audit_log
    WHERE entry LIKE '{"action":"cases.ingest",%' OR entry LIKE '{"action":"predictions.ingest",%'
), actual AS (
    SELECT ingest_seq AS seq, count(*) AS n FROM cases GROUP BY ingest_seq
    UNION ALL
    SELECT batch_seq AS seq, count(*) AS n FROM predictions GROUP BY batch_seq
)
SELECT min(seq) FROM (
    SELECT ev.seq FROM ev LEFT JOIN actual a ON a.seq = ev.seq
    WHERE a.n IS DISTINCT FROM ev.rows
    UNION ALL
    SELECT a.seq FROM actual a LEFT JOIN ev ON ev.seq = a.seq WHERE ev.seq IS NULL
)
"""


def first_mismatch(con: duckdb.DuckDBPyConnection, *, batches: bool = True) -> Break | None:
    """The earliest record that disagrees with its audit event, as a Break, or None."""
    decision_seq = sql.scalar(con, _DECISIONS_SQL)
    batch_seq = sql.scalar(con, _BATCHES_SQL) if batches else None
    found: list[Break] = []
    if decision_seq is not None:
        found.append(
            Break(
                int(decision_seq),
                "record-mismatch",
                "a decision row differs from its audit event, or one of them is missing",
            )
        )
    if batch_seq is not None:
        found.append(
            Break(
                int(batch_seq),
                "record-mismatch",
                "a batch of cases or predictions no longer holds the rows its audit event recorded",
            )
        )
    return min(found, key=lambda b: b.seq) if found else None
