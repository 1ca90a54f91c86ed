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
import json

import duckdb
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.store.schema import quote

METHOD = (
    "sha256 of the stored batch as CSV (polars write_csv, header; fixed row order); "
    "cases as stored: sealed personal data in hex, no external ids"
)


def cases_sql(settings: Settings) -> str:
    """A batch's cases as stored, without keys: the pseudonym, the features, the sealed
    personal data, the seed label. Cases whose data was removed (erasure, retention) are
    left out; the event that removed them restates the batch's digest."""
    feats = "".join(f", f.{quote(n)}" for n in settings.feature_only_columns)
    return (
        f"SELECT c.case_id, c.subject_ref{feats}, hex(p.sealed) AS personal_sealed, s.label"
        " FROM cases c"
        " JOIN case_features f USING (case_id) JOIN case_personal p USING (case_id)"
        " LEFT JOIN seed_labels s USING (case_id)"
        " WHERE c.ingest_seq = ? AND c.removed_seq IS NULL ORDER BY c.case_id"
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


#: Events that remove rows of earlier batches and restate those batches' digests.
RESTATING_ACTIONS = ("subject.erased", "retention.applied")


def restatements(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[int, str, int]]:
    """batch seq → (rows, digest, restating seq) as last restated by an erasure or a
    retention run (payload ``batches``: {"<seq>": {"rows": n, "digest": d}})."""
    where = " OR ".join(f'entry LIKE \'{{"action":"{a}",%\'' for a in RESTATING_ACTIONS)
    rows = con.execute(
        f"SELECT seq, json_extract(entry, '$.payload.batches') FROM audit_log WHERE {where}"
        " ORDER BY seq"
    ).fetchall()
    out: dict[int, tuple[int, str, int]] = {}
    for seq, batches in rows:
        if not batches:
            continue
        for batch_seq, info in json.loads(batches).items():
            out[int(batch_seq)] = (int(info["rows"]), str(info["digest"]), int(seq))
    return out


def first_mismatch(con: duckdb.DuckDBPyConnection, settings: Settings) -> int | None:
    """The seq of the first batch event whose stored rows no longer match its digest (or,
    after an erasure or retention run removed some of them, the digest it restated)."""
    events = con.execute(
        "SELECT seq, json_extract_string(entry, '$.action'),"
        " json_extract_string(entry, '$.payload.digest') FROM audit_log"
        ' WHERE entry LIKE \'{"action":"cases.ingest",%\''
        ' OR entry LIKE \'{"action":"predictions.ingest",%\''
        " ORDER BY seq"
    ).fetchall()
    restated = restatements(con)
    cases_query = cases_sql(settings)
    for seq, action, recorded in events:
        expected = restated[int(seq)][1] if int(seq) in restated else recorded
        query = cases_query if action == "cases.ingest" else PREDICTIONS_SQL
        if digest(con, query, int(seq)) != expected:
            return int(seq)
    return None
