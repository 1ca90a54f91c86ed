"""Digests of bulk batches (cases, predictions), computed from the rows as stored.

A bulk batch is audited by one event that carries the batch's digest and the method it was
computed with (``digest_method``); ``hilt audit verify`` recomputes it from the stored rows
with the same query, so a changed, added or removed row of a batch is caught.

The rows: ``cases_sql`` (the pseudonym, the features, the sealed personal data, the seed
label; no keys, no external ids) and ``PREDICTIONS_SQL``, in a fixed order (cases by
case_id, predictions by prediction_id).

The method (``METHOD``, "v2") is sha256 over the batch column by column, so that it needs
no formatting of values and hashes large contiguous buffers (OpenSSL's sha256 runs at
gigabytes per second on them). The bytes hashed, in this order:

1. ``hilt-batch-digest-v2\\n``, then the canonical JSON (``audit_chain.canonical_json``) of
   ``{"columns": [[name, kind], ...], "rows": n}`` and ``\\n``; kind is one of ``int64``,
   ``float64``, ``bool``, ``text``, ``bytes``;
2. for each column in order: one byte per row, 1 for a value and 0 for NULL; then
   - int64, float64: 8 bytes per row, little-endian (two's complement, IEEE 754), 0 for NULL;
   - bool: one byte per row, 1 or 0 (0 for NULL);
   - text (UTF-8) and bytes: the byte length of each row as an 8-byte little-endian integer
     (0 for NULL), then all the rows' bytes one after the other.

Nothing depends on how the rows are chunked, on the Arrow layout of a column (string, large
string, string view) or on a library's text format, so the same rows give the same digest
from DuckDB (verify) and from the frame the store inserted (bulk ingest).

Events written before this method carry the CSV method (``LEGACY_METHOD``); verify still
recomputes those with it. A batch keeps its method: an erasure or retention run that
removes rows restates the batch's digest with the method of the batch's own event.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING

from hilt.pipelines.config import Settings
from hilt.pipelines.store.audit.chain import canonical_json, kind_prefix, picks
from hilt.pipelines.store.schema import quote

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa

METHOD = (
    "sha256 of the stored batch column by column (hilt-batch-digest-v2: row count, names "
    "and kinds, then per column a validity byte per row and the values as little-endian "
    "int64 / float64 / one byte per bool, or int64 byte lengths then the bytes for text and "
    "blobs; fixed row order); cases as stored: sealed personal data as bytes, no external ids"
)

#: The method of the events written before v2 (still recomputed by verify).
LEGACY_METHOD = (
    "sha256 of the stored batch as CSV (polars write_csv, header; fixed row order); "
    "cases as stored: sealed personal data in hex, no external ids"
)

_TAG = b"hilt-batch-digest-v2\n"

CASES_ACTION = "cases.ingest"
PREDICTIONS_ACTION = "predictions.ingest"
#: A batch of a version a lead allowed for shadow scoring (table shadow_predictions).
SHADOW_ACTION = "predictions.shadow"
#: A batch of outcomes, the later truth about scored cases (table outcomes).
OUTCOMES_ACTION = "outcome.recorded"
#: The batch events and the restating events, picked by their canonical prefix.
BATCH_ACTIONS = (CASES_ACTION, PREDICTIONS_ACTION, SHADOW_ACTION, OUTCOMES_ACTION)
#: Events that remove rows of earlier batches and restate those batches' digests.
RESTATING_ACTIONS = ("subject.erased", "retention.applied")


#: The batch events, and the restating events, as the checks pick them.
BATCH_KINDS = tuple(kind_prefix(a) for a in BATCH_ACTIONS)
RESTATING_KINDS = tuple(kind_prefix(a) for a in RESTATING_ACTIONS)


def _cases_sql(settings: Settings, sealed: str) -> str:
    feats = "".join(f", f.{quote(n)}" for n in settings.feature_only_columns)
    return (
        f"SELECT c.case_id, c.subject_ref{feats}, {sealed} AS personal_sealed, s.label"
        " FROM cases c"
        " JOIN case_features f USING (case_id) JOIN case_personal p USING (case_id)"
        " LEFT JOIN seed_labels s USING (case_id)"
        " WHERE c.ingest_seq = ? AND c.removed_seq IS NULL ORDER BY c.case_id"
    )


def cases_sql(settings: Settings) -> str:
    """A batch's cases as stored, without keys: the pseudonym, the features, the sealed
    personal data, the seed label. Cases whose data was removed (erasure, retention) are
    left out; the event that removed them restates the batch's digest."""
    return _cases_sql(settings, "p.sealed")


#: The batch's cases in stored order (``stored_cases``).
_BATCH_CASES_SQL = (
    "SELECT case_id, subject_ref FROM cases WHERE ingest_seq = ? AND removed_seq IS NULL"
)


def stored_cases(con: duckdb.DuckDBPyConnection, settings: Settings, seq: int) -> pa.Table | None:
    """The table ``cases_sql`` returns for the batch at ``seq``, read table by table
    without its joins and its sort (on a batch of a million cases, two thirds of its CPU),
    where the stored rows show it is the same table; None where they do not (the caller
    runs ``cases_sql``).

    A bulk ingest stores a batch's rows in each of the four tables in case_id order. So:
    the batch's cases in stored order, their case_ids strictly ascending (byte order, as
    DuckDB compares text: the order the sort gives, with no tie); then, of each other table,
    its rows whose case_id lies between the batch's first and last, in stored order, whose
    case_ids must equal the batch's one for one. Then each case has exactly one row in that
    table, and no other row of it can join one (its case_id lies outside the range), so
    the joins give these rows, position by position. Of the seed labels there may also be
    none in the range (a batch without labels: the left join's NULLs). Anything else (rows
    stored out of order, a case without its features, another batch's cases in the range,
    a duplicate, a NULL case_id) is None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cases = con.sql(_BATCH_CASES_SQL, params=[seq]).to_arrow_table()
    ids = cases.column(0)
    n = len(ids)
    if not n or ids.null_count:
        return None
    if n > 1 and not pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py():
        return None
    features = "".join(f", {quote(c)}" for c in settings.feature_only_columns)
    columns = list(cases.columns)
    for table, values in (
        ("case_features", features),
        ("case_personal", ", sealed"),
        ("seed_labels", ", label"),
    ):
        rows = con.sql(
            f"SELECT case_id{values} FROM {table} WHERE case_id BETWEEN ? AND ?",
            params=[ids[0].as_py(), ids[-1].as_py()],
        ).to_arrow_table()
        if table == "seed_labels" and not rows.num_rows:
            columns.append(pa.nulls(n, rows.schema.field(1).type))
            continue
        if not rows.column(0).equals(ids):
            return None
        columns += rows.columns[1:]
    return pa.table(columns, names=con.sql(cases_sql(settings), params=[seq]).columns)


def legacy_cases_sql(settings: Settings) -> str:
    """``cases_sql`` as the CSV method read it (the sealed data in hex)."""
    return _cases_sql(settings, "hex(p.sealed)")


PREDICTIONS_SQL = (
    "SELECT prediction_id, case_id, model_version, score, label, explanation"
    " FROM predictions WHERE batch_seq = ? ORDER BY prediction_id"
)
SHADOW_PREDICTIONS_SQL = PREDICTIONS_SQL.replace("FROM predictions", "FROM shadow_predictions")
_BY_PREDICTION = " ORDER BY prediction_id"
#: A batch of outcomes (`hilt outcomes`, issue 14): the time observed as epoch microseconds.
OUTCOMES_SQL = (
    "SELECT case_id, outcome, epoch_us(observed_at) AS observed_at_us"
    " FROM outcomes WHERE batch_seq = ? ORDER BY case_id"
)


# ---------------------------------------------------------------------- the v2 digest


def table_digest(table: pa.Table) -> str:
    """The v2 digest (see the module's docstring) of the rows of ``table``, in its order."""
    from hilt.pipelines.store.audit import digest_columns

    kinds = [digest_columns.kind_of(f.type) for f in table.schema]
    header = canonical_json(
        {
            "columns": [[f.name, k] for f, k in zip(table.schema, kinds, strict=True)],
            "rows": table.num_rows,
        }
    )
    h = hashlib.sha256(_TAG + header.encode("utf-8") + b"\n")
    for column, kind in zip(table.columns, kinds, strict=True):
        digest_columns.update_column(h, [c for c in column.chunks if len(c)], kind)
    return h.hexdigest()


def frame_digest(frame: pl.DataFrame) -> str:
    """The v2 digest of a polars frame (the rows a bulk ingest is about to insert)."""
    import polars as pl

    return table_digest(frame.to_arrow(compat_level=pl.CompatLevel.newest()))


def digest(con: duckdb.DuckDBPyConnection, query: str, seq: int) -> str:
    """The v2 digest of the rows ``query`` returns for the batch at ``seq``."""
    return table_digest(con.sql(query, params=[seq]).to_arrow_table())


def legacy_digest(con: duckdb.DuckDBPyConnection, query: str, seq: int) -> str:
    """The CSV method's digest (``LEGACY_METHOD``) of the rows ``query`` returns."""
    import polars as pl

    table = con.sql(query, params=[seq]).to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    buf = io.BytesIO()
    frame.write_csv(buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def stored_predictions(con: duckdb.DuckDBPyConnection, query: str, seq: int) -> pa.Table | None:
    """The rows ``query`` (``PREDICTIONS_SQL`` or ``SHADOW_PREDICTIONS_SQL``) returns for the
    batch at ``seq``, read without the sort where they are stored in its order: their
    prediction_ids (from a sequence, in the order they were inserted) strictly ascending,
    so the sort would leave them as they are. None otherwise (the caller runs ``query``)."""
    import pyarrow.compute as pc

    table = con.sql(query.removesuffix(_BY_PREDICTION), params=[seq]).to_arrow_table()
    ids = table.column("prediction_id")
    n = len(ids)
    if ids.null_count or (n > 1 and not pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py()):
        return None
    return table


def stored_digest(
    con: duckdb.DuckDBPyConnection, settings: Settings, action: str, method: str | None, seq: int
) -> str | None:
    """The digest of the batch at ``seq`` (a ``cases.ingest``, ``predictions.ingest``,
    ``predictions.shadow`` or ``outcome.recorded`` event) as stored now, by ``method``;
    None for a method this version does not know."""
    cases = action == CASES_ACTION
    rows = SHADOW_PREDICTIONS_SQL if action == SHADOW_ACTION else PREDICTIONS_SQL
    if action == OUTCOMES_ACTION:
        return digest(con, OUTCOMES_SQL, seq) if method == METHOD else None
    if method == METHOD:
        table = stored_cases(con, settings, seq) if cases else stored_predictions(con, rows, seq)
        if table is not None:
            return table_digest(table)
        return digest(con, cases_sql(settings) if cases else rows, seq)
    if method == LEGACY_METHOD or method is None:
        return legacy_digest(con, legacy_cases_sql(settings) if cases else rows, seq)
    return None


def restated_digest(con: duckdb.DuckDBPyConnection, settings: Settings, seq: int) -> str:
    """The digest of the batch at ``seq`` as stored now, by the method of the batch's own
    event (a batch keeps its method): what an erasure or a retention run that removed some
    of its rows restates."""
    row = con.execute(
        "SELECT json_extract_string(entry, ['$.action', '$.payload.digest_method'])"
        " FROM audit_log WHERE seq = ?",
        [seq],
    ).fetchall()
    action, method = row[0][0] if row else ("", METHOD)
    found = stored_digest(con, settings, str(action), method, seq)
    if found is None:  # a method of a later version: restate by this version's own
        found = stored_digest(con, settings, str(action), METHOD, seq)
    assert found is not None
    return found


# ---------------------------------------------------------------------- verify


#: batch seq → (rows, digest, restating seq): what ``restatements`` returns.
Restated = dict[int, tuple[int, str, int]]


def restatements(
    con: duckdb.DuckDBPyConnection, since: int = 0, events: str = "audit_log"
) -> Restated:
    """batch seq → (rows, digest, restating seq) as last restated by an erasure or a
    retention run (payload ``batches``: {"<seq>": {"rows": n, "digest": d}}); only the runs
    after seq ``since`` (which restate the batches after it as well as earlier ones).
    ``events``: ``after_checkpoint.kind_source(con, since)`` when the caller read it."""
    rows = con.execute(
        f"SELECT seq, json_extract(entry, '$.payload.batches') FROM {events}"
        f" WHERE seq > ? AND {picks(RESTATING_KINDS)} ORDER BY seq",
        [since],
    ).fetchall()
    out: Restated = {}
    for seq, batches in rows:
        if not batches:
            continue
        for batch_seq, info in json.loads(batches).items():
            out[int(batch_seq)] = (int(info["rows"]), str(info["digest"]), int(seq))
    return out


def first_mismatch(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    since: int = 0,
    restated: Restated | None = None,
    events: str = "audit_log",
) -> int | None:
    """The seq of the first batch event whose stored rows no longer match its digest (or,
    after an erasure or retention run removed some of them, the digest it restated); of
    the batches recorded after seq ``since`` (a signed checkpoint's; 0: all).
    ``restated``: ``restatements(con, since)`` when the caller read them already;
    ``events``: ``after_checkpoint.kind_source(con, since)`` likewise."""
    picked = con.execute(
        "SELECT seq, json_extract_string(entry, ['$.action', '$.payload.digest',"
        f" '$.payload.digest_method']) FROM {events}"
        f" WHERE seq > ? AND {picks(BATCH_KINDS)} ORDER BY seq",
        [since],
    ).fetchall()
    if restated is None:
        restated = restatements(con, since, events)
    for seq, (action, recorded, method) in picked:
        expected = restated[int(seq)][1] if int(seq) in restated else recorded
        if stored_digest(con, settings, str(action), method, int(seq)) != expected:
            return int(seq)
    return None
