"""Records against their audit events: a changed or deleted record is a break too.

The chain proves the audit log; this proves the tables the log speaks about:
- every decision row equals the payload of its ``decision.record`` event, and every such
  event has its row;
- every case and prediction batch still holds as many rows as its event recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit import batch_digest
from hilt.pipelines.store.audit.chain import RETENTION_KINDS, Break, kind_prefix, picks

if TYPE_CHECKING:
    import duckdb

#: Canonical entries have sorted keys, so "action" always comes first: a prefix match picks
#: the events of one kind without parsing a million JSON documents.
DECISION_EVENT = picks([kind_prefix("decision.record")])

#: Each field of a decision event and the decisions column it must equal (as text, as
#: ``json_extract_string`` gives it).
FIELDS: list[tuple[str, str]] = [
    ("$.actor", "d.reviewer"),
    ("$.object_id", "d.case_id"),
    ("$.payload.decision_id", "d.decision_id"),
    ("$.payload.request_id", "d.request_id"),
    ("$.payload.action", "d.action"),
    ("$.payload.final_label", "d.final_label"),
    ("$.payload.predicted_label", "d.predicted_label"),
    ("$.payload.reason_code", "d.reason_code"),
    ("$.payload.model_version", "d.model_version"),
    ("$.payload.prediction_id", "d.prediction_id::VARCHAR"),
    ("$.payload.time_on_item_ms", "d.time_on_item_ms::VARCHAR"),
    ("$.payload.model_shown", "d.model_shown::VARCHAR"),
    ("$.payload.undo_of", "d.undo_of"),
    ("$.payload.comment_sealed", "d.comment_sealed"),
    ("$.payload.explanation_sha256", "d.explanation_sha256"),
]
_PATHS = [path for path, _ in FIELDS]


def _differs(first: int) -> str:
    """Any field of ``v`` (the extracted paths from index ``first`` on) differs from its
    column of ``d``."""
    return "\n       OR ".join(
        f"v[{first + i}] IS DISTINCT FROM {column}" for i, (_, column) in enumerate(FIELDS)
    )


#: The decision rows after the seq ``$since`` (all of them for 0).
_DECISION_ROWS = "(SELECT * FROM decisions WHERE $since = 0 OR seq > $since)"

# Every decision row and every decision event, matched by seq in one full outer join: a row
# without its event, an event without its row (beyond what retention purged), or a pair
# whose fields differ. The events are parsed once each (one json_extract_string for all
# paths). Only the rows and events after ``$since`` (a signed checkpoint; 0: all).
_DECISIONS_SQL = f"""
SELECT min(coalesce(d.seq, ev.seq))
FROM (
    SELECT seq, json_extract_string(entry, {_PATHS!r}) AS v
    FROM audit_log WHERE ($since = 0 OR seq > $since) AND {DECISION_EVENT}
) ev FULL OUTER JOIN {_DECISION_ROWS} d ON d.seq = ev.seq
WHERE ev.seq IS NULL
   OR (d.seq IS NULL AND ev.seq > $decisions_purged_through)
   OR (d.seq IS NOT NULL AND (
       {_differs(1)}))
"""

#: The seq check of the chain (``audit_chain._CONTENT_SQL``) and the decisions above in one
#: scan of the log, so that each entry is read and parsed once: the seq inside the entry is
#: the first extracted path, the decision fields follow. Returns (seq-mismatch, decision
#: record-mismatch), each the earliest seq or NULL. (The hashes are recomputed apart, with
#: hashlib: ``audit_chain.first_bad_hash``.)
CONTENT_AND_DECISIONS_SQL = f"""
SELECT
    min(a.seq) FILTER (WHERE a.in_log AND v[1] IS DISTINCT FROM a.seq::VARCHAR),
    min(coalesce(d.seq, a.seq)) FILTER (
        WHERE a.in_log IS NULL
           OR (d.seq IS NULL AND a.is_decision AND a.seq > $decisions_purged_through)
           OR (d.seq IS NOT NULL AND (
               {_differs(2)})))
FROM (
    SELECT seq, true AS in_log,
           {DECISION_EVENT} AS is_decision,
           json_extract_string(entry, {["$.seq", *_PATHS]!r}) AS v
    FROM audit_log WHERE $since = 0 OR seq > $since
) a FULL OUTER JOIN {_DECISION_ROWS} d ON d.seq = a.seq AND a.is_decision
"""


def content_and_decisions_sql(log: str, decisions: str) -> str:
    """``CONTENT_AND_DECISIONS_SQL`` of the rows of ``log`` and ``decisions`` (sources of
    some of the rows of ``audit_log`` and ``decisions``: a part of the seqs of both, so
    that a decision row and its event, which share a seq, are in the same part)."""
    return CONTENT_AND_DECISIONS_SQL.replace("FROM audit_log WHERE", f"FROM {log} WHERE").replace(
        "FROM decisions WHERE", f"FROM {decisions} WHERE"
    )


DECISION_DETAIL = "a decision row differs from its audit event, or one of them is missing"
BATCH_DETAIL = "a batch of cases or predictions no longer holds the rows its audit event recorded"

#: The batch events whose rows are counted, and the tables of those rows (with the column of
#: the seq of the event that wrote a row).
COUNTED_KINDS = tuple(
    kind_prefix(a) for a in ("cases.ingest", "predictions.ingest", "predictions.shadow")
)
COUNTED_TABLES = {
    "cases": "ingest_seq",
    "predictions": "batch_seq",
    "shadow_predictions": "batch_seq",
}

_BATCHES_SQL = f"""
WITH restated AS (
    SELECT unnest($restated_seqs::BIGINT[]) AS seq, unnest($restated_rows::BIGINT[]) AS rows
), ev AS (
    SELECT seq, json_extract_string(entry, '$.action') AS action,
           try_cast(json_extract(entry, '$.payload.rows') AS BIGINT) AS rows
    FROM __events__
    WHERE seq > $since AND {picks(COUNTED_KINDS)}
), expected AS (
    SELECT ev.seq, coalesce(r.rows, ev.rows) AS rows
    FROM ev LEFT JOIN restated r ON r.seq = ev.seq
), actual AS (
    SELECT ingest_seq AS seq, count(*) AS n FROM cases
    WHERE removed_seq IS NULL AND ($since = 0 OR ingest_seq > $since)
    GROUP BY ingest_seq
    UNION ALL
    SELECT batch_seq AS seq, count(*) AS n FROM predictions
    WHERE $since = 0 OR batch_seq > $since GROUP BY batch_seq
    UNION ALL
    SELECT batch_seq AS seq, count(*) AS n FROM shadow_predictions
    WHERE $since = 0 OR batch_seq > $since GROUP BY batch_seq
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
    decision_seq = first_decision_mismatch(con, decisions_purged_through)
    batch_seq = first_batch_mismatch(con) if batches else None
    return as_break(decision_seq, batch_seq)


def first_decision_mismatch(
    con: duckdb.DuckDBPyConnection, decisions_purged_through: int = 0, since: int = 0
) -> int | None:
    """The earliest seq of a decision row or event that disagrees with its counterpart
    (after seq ``since`` only, when it is a signed checkpoint's)."""
    value = sql.scalar(
        con,
        _DECISIONS_SQL,
        {"decisions_purged_through": decisions_purged_through, "since": since},
    )
    return int(value) if value is not None else None


def first_batch_mismatch(
    con: duckdb.DuckDBPyConnection,
    since: int = 0,
    restated: batch_digest.Restated | None = None,
    events: str = "audit_log",
) -> int | None:
    """The earliest batch event whose batch no longer holds the rows it recorded (of the
    batches recorded after seq ``since``). ``restated``: ``batch_digest.restatements(con,
    since)`` when the caller read them already; ``events``: ``after_checkpoint.kind_source(con,
    since)`` likewise."""
    if restated is None:
        restated = batch_digest.restatements(con, since, events)
    value = sql.scalar(
        con,
        _BATCHES_SQL.replace("__events__", events),
        {
            "since": since,
            "restated_seqs": list(restated),
            "restated_rows": [rows for rows, _, _ in restated.values()],
        },
    )
    return int(value) if value is not None else None


def as_break(decision_seq: int | None, batch_seq: int | None) -> Break | None:
    """The earlier of a decision and a batch record-mismatch, as a Break, or None."""
    found: list[Break] = []
    if decision_seq is not None:
        found.append(Break(int(decision_seq), "record-mismatch", DECISION_DETAIL))
    if batch_seq is not None:
        found.append(Break(int(batch_seq), "record-mismatch", BATCH_DETAIL))
    return min(found, key=lambda b: b.seq) if found else None


def decisions_purged_through(
    con: duckdb.DuckDBPyConnection, since: int = 0, events: str = "audit_log"
) -> int:
    """The last decision seq whose row retention deleted (its event stays), or 0. After a
    checkpoint (``since``) only a retention run after it can have purged a later decision.
    ``events``: ``after_checkpoint.kind_source(con, since)`` when the caller read it."""
    value = sql.scalar(
        con,
        "SELECT try_cast(json_extract(entry, '$.payload.decisions.purged_through') AS BIGINT)"
        f" FROM {events} WHERE seq > ? AND {picks(RETENTION_KINDS)}"
        " AND json_extract(entry, '$.payload.decisions.purged_through') IS NOT NULL"
        " ORDER BY seq DESC LIMIT 1",
        [since],
    )
    return int(value) if value is not None else 0
