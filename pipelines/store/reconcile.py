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

_DECISIONS_SQL = """
WITH ev AS (
    SELECT seq, json_extract_string(entry, '$.action') AS action,
           json_extract_string(entry, '$.actor') AS actor,
           json_extract_string(entry, '$.object_id') AS object_id,
           json_extract(entry, '$.payload') AS p
    FROM audit_log
)
SELECT min(seq) FROM (
    SELECT d.seq FROM decisions d LEFT JOIN ev ON ev.seq = d.seq
    WHERE ev.seq IS NULL
       OR ev.action IS DISTINCT FROM 'decision.record'
       OR ev.actor IS DISTINCT FROM d.reviewer
       OR ev.object_id IS DISTINCT FROM d.case_id
       OR json_extract_string(p, '$.decision_id') IS DISTINCT FROM d.decision_id
       OR json_extract_string(p, '$.request_id') IS DISTINCT FROM d.request_id
       OR json_extract_string(p, '$.action') IS DISTINCT FROM d.action
       OR json_extract_string(p, '$.final_label') IS DISTINCT FROM d.final_label
       OR json_extract_string(p, '$.predicted_label') IS DISTINCT FROM d.predicted_label
       OR json_extract_string(p, '$.reason_code') IS DISTINCT FROM d.reason_code
       OR json_extract_string(p, '$.model_version') IS DISTINCT FROM d.model_version
       OR try_cast(json_extract(p, '$.prediction_id') AS BIGINT) IS DISTINCT FROM d.prediction_id
       OR try_cast(json_extract(p, '$.time_on_item_ms') AS BIGINT)
            IS DISTINCT FROM d.time_on_item_ms
       OR try_cast(json_extract(p, '$.model_shown') AS BOOLEAN) IS DISTINCT FROM d.model_shown
       OR json_extract_string(p, '$.undo_of') IS DISTINCT FROM d.undo_of
       OR json_extract_string(p, '$.comment_sha256')
            IS DISTINCT FROM (CASE WHEN d.comment IS NULL THEN NULL ELSE sha256(d.comment) END)
    UNION ALL
    SELECT ev.seq FROM ev LEFT JOIN decisions d ON d.seq = ev.seq
    WHERE ev.action = 'decision.record' AND d.seq IS NULL
)
"""

_BATCHES_SQL = """
WITH ev AS (
    SELECT seq, json_extract_string(entry, '$.action') AS action,
           try_cast(json_extract(entry, '$.payload.rows') AS BIGINT) AS rows
    FROM audit_log
    WHERE json_extract_string(entry, '$.action') IN ('cases.ingest', 'predictions.ingest')
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
