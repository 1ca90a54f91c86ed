"""Records against their audit events: a changed or deleted record is a break too.

The chain proves the audit log; this proves the tables the log speaks about:
- every decision row equals the payload of its ``decision.record`` event, and every such
  event has its row;
- every case and prediction batch still holds as many rows as its event recorded.
"""

from __future__ import annotations

import duckdb
import polars as pl

from hilt.pipelines.store import batch_digest, sql
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
    "$.payload.comment_sealed",
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
       OR v[14] IS DISTINCT FROM d.comment_sealed
    UNION ALL
    SELECT ev.seq FROM ev LEFT JOIN decisions d ON d.seq = ev.seq
    WHERE d.seq IS NULL AND ev.seq > $decisions_purged_through
)
"""

_BATCHES_SQL = """
WITH ev AS (
    SELECT seq, json_extract_string(entry, '$.action') AS action,
           try_cast(json_extract(entry, '$.payload.rows') AS BIGINT) AS rows
    FROM audit_log
    WHERE entry LIKE '{"action":"cases.ingest",%' OR entry LIKE '{"action":"predictions.ingest",%'
), expected AS (
    SELECT ev.seq, coalesce(r.rows, ev.rows) AS rows
    FROM ev LEFT JOIN restated r ON r.seq = ev.seq
), actual AS (
    SELECT ingest_seq AS seq, count(*) AS n FROM cases WHERE removed_seq IS NULL
    GROUP BY ingest_seq
    UNION ALL
    SELECT batch_seq AS seq, count(*) AS n FROM predictions GROUP BY batch_seq
)
SELECT min(seq) FROM (
    SELECT e.seq FROM expected e LEFT JOIN actual a ON a.seq = e.seq
    WHERE coalesce(a.n, 0) IS DISTINCT FROM e.rows
    UNION ALL
    SELECT a.seq FROM actual a LEFT JOIN ev ON ev.seq = a.seq WHERE ev.seq IS NULL
)
"""


def first_mismatch(
    con: duckdb.DuckDBPyConnection,
    *,
    batches: bool = True,
    decisions_purged_through: int = 0,
) -> Break | None:
    """The earliest record that disagrees with its audit event, as a Break, or None.

    ``decisions_purged_through``: decision rows up to this seq were deleted by retention
    (their events stay in the log), so their absence is no break.
    """
    decision_seq = sql.scalar(
        con, _DECISIONS_SQL, {"decisions_purged_through": decisions_purged_through}
    )
    batch_seq = None
    if batches:
        restated = [(seq, rows) for seq, (rows, _, _) in batch_digest.restatements(con).items()]
        frame = pl.DataFrame(restated, schema={"seq": pl.Int64, "rows": pl.Int64}, orient="row")
        con.register("restated", frame)
        try:
            batch_seq = sql.scalar(con, _BATCHES_SQL)
        finally:
            con.unregister("restated")
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


def decisions_purged_through(con: duckdb.DuckDBPyConnection) -> int:
    """The last decision seq whose row retention deleted (its event stays), or 0."""
    value = sql.scalar(
        con,
        "SELECT try_cast(json_extract(entry, '$.payload.decisions.purged_through') AS BIGINT)"
        """ FROM audit_log WHERE entry LIKE '{"action":"retention.applied",%'"""
        " AND json_extract(entry, '$.payload.decisions.purged_through') IS NOT NULL"
        " ORDER BY seq DESC LIMIT 1",
    )
    return int(value) if value is not None else 0
