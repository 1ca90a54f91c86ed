"""Digests of bulk batches (cases, predictions), computed from the rows as stored.

A bulk batch is audited by one event that carries the batch's digest. The digest is taken
from the stored rows, inside the writing transaction, with the same query that
``hilt audit verify`` runs later; so a changed, added or removed row of a batch is caught.

Digest: sha256 of the batch's rows as CSV (polars ``write_csv``, with header), rows in a
fixed order (cases by case_id, predictions by prediction_id).
"""

from __future__ import annotations

import hashlib
import io

import duckdb
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.store.schema import quote

METHOD = "sha256 of the stored batch as CSV (polars write_csv, header; fixed row order)"


def cases_sql(settings: Settings) -> str:
    feats = "".join(f", f.{quote(n)}" for n in settings.feature_only_columns)
    pers = "".join(f", p.{quote(n)}" for n in settings.personal_columns)
    return (
        f"SELECT c.case_id, i.external_subject_id AS subject_id{feats}{pers}, s.label"
        " FROM cases c JOIN identity i USING (subject_ref)"
        " JOIN case_features f USING (case_id) JOIN case_personal p USING (case_id)"
        " LEFT JOIN seed_labels s USING (case_id)"
        " WHERE c.ingest_seq = ? ORDER BY c.case_id"
    )


PREDICTIONS_SQL = (
    "SELECT prediction_id, case_id, model_version, score, label, explanation"
    " FROM predictions WHERE batch_seq = ? ORDER BY prediction_id"
)


def digest(con: duckdb.DuckDBPyConnection, query: str, seq: int) -> str:
    table = con.sql(query, params=[seq]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    buf = io.BytesIO()
    frame.write_csv(buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def first_mismatch(con: duckdb.DuckDBPyConnection, settings: Settings) -> int | None:
    """The seq of the first batch event whose stored rows no longer match its digest."""
    events = con.execute(
        "SELECT seq, json_extract_string(entry, '$.action'),"
        " json_extract_string(entry, '$.payload.digest') FROM audit_log"
        ' WHERE entry LIKE \'{"action":"cases.ingest",%\''
        ' OR entry LIKE \'{"action":"predictions.ingest",%\''
        " ORDER BY seq"
    ).fetchall()
    cases_query = cases_sql(settings)
    for seq, action, recorded in events:
        query = cases_query if action == "cases.ingest" else PREDICTIONS_SQL
        if digest(con, query, int(seq)) != recorded:
            return int(seq)
    return None
