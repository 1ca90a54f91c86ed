"""The batch digest (v2): what it hashes, that it depends on the rows only, that bulk ingest
and verify compute the same one, and that batches recorded with the CSV method still verify.

The expected values are computed here by an independent reading of the format described in
``batch_digest``'s docstring (``struct.pack``, one row at a time), not by the module itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from hilt.pipelines.errors import NotFoundError
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.audit import batch_digest
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.workspace import Workspace
from tests.conftest import TEST_MODEL, operator, predictions_for, stand_in

COLUMNS = {
    "id": pa.int64(),
    "score": pa.float64(),
    "shown": pa.bool_(),
    "text": pa.string(),
    "blob": pa.binary(),
}
ROWS: list[dict[str, Any]] = [
    {"id": 1, "score": 0.25, "shown": True, "text": "plain", "blob": b"\x00\x01"},
    {"id": 2, "score": -0.0, "shown": False, "text": "", "blob": b""},
    {"id": 3, "score": None, "shown": None, "text": None, "blob": None},
    {"id": -4, "score": 1e-300, "shown": True, "text": 'ünï "q" \\ \n', "blob": b"\xff" * 300},
]


def reference_digest(rows: list[dict[str, Any]], kinds: dict[str, str]) -> str:
    """The v2 format, read from the docstring and written out the slow way."""
    header = json.dumps(
        {"columns": [[name, kind] for name, kind in kinds.items()], "rows": len(rows)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    out = b"hilt-batch-digest-v2\n" + header.encode() + b"\n"
    for name, kind in kinds.items():
        values = [r[name] for r in rows]
        out += bytes(0 if v is None else 1 for v in values)
        if kind == "int64":
            out += b"".join(struct.pack("<q", v or 0) for v in values)
        elif kind == "float64":
            out += b"".join(struct.pack("<d", 0.0 if v is None else v) for v in values)
        elif kind == "bool":
            out += bytes(1 if v else 0 for v in values)
        else:
            raw = [b"" if v is None else v.encode() if isinstance(v, str) else v for v in values]
            out += b"".join(struct.pack("<q", len(b)) for b in raw) + b"".join(raw)
    return hashlib.sha256(out).hexdigest()


KINDS = {"id": "int64", "score": "float64", "shown": "bool", "text": "text", "blob": "bytes"}


def table(rows: list[dict[str, Any]], **types: pa.DataType) -> pa.Table:
    schema = pa.schema([(n, types.get(n, t)) for n, t in COLUMNS.items()])
    return pa.Table.from_pylist(rows, schema=schema)


def test_the_digest_is_the_documented_encoding() -> None:
    assert batch_digest.table_digest(table(ROWS)) == reference_digest(ROWS, KINDS)


def test_the_digest_does_not_depend_on_chunks_or_arrow_layout() -> None:
    expected = reference_digest(ROWS, KINDS)
    chunked = pa.concat_tables([table(ROWS[:1]), table(ROWS[1:3]), table(ROWS[3:])])
    assert chunked.column("text").num_chunks == 3
    assert batch_digest.table_digest(chunked) == expected
    large = table(ROWS, text=pa.large_string(), blob=pa.large_binary(), id=pa.int32())
    assert batch_digest.table_digest(large) == expected
    views = table(ROWS, text=pa.string_view(), blob=pa.binary_view())
    assert batch_digest.table_digest(views) == expected
    sliced = table([ROWS[0], *ROWS]).slice(1)  # non-zero array offsets
    assert batch_digest.table_digest(sliced) == expected
    dictionary = table(ROWS).set_column(3, "text", table(ROWS).column("text").dictionary_encode())
    assert batch_digest.table_digest(dictionary) == expected
    frame = pl.from_arrow(table(ROWS))
    assert isinstance(frame, pl.DataFrame)
    assert batch_digest.frame_digest(frame) == expected


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: r[0].update(score=0.26), id="value"),
        pytest.param(lambda r: r[1].update(score=0.0), id="negative-zero"),
        pytest.param(lambda r: r[1].update(text=None), id="empty-to-null"),
        pytest.param(lambda r: r[2].update(id=None), id="value-to-null"),
        pytest.param(lambda r: r[1].update(shown=None), id="false-to-null"),
        pytest.param(lambda r: (r[0].update(text="plai"), r[1].update(text="n")), id="shifted"),
        pytest.param(lambda r: r.reverse(), id="order"),
        pytest.param(lambda r: r.pop(), id="row-removed"),
        pytest.param(lambda r: r.append(dict(r[0])), id="row-added"),
    ],
)
def test_every_change_of_the_rows_changes_the_digest(change: Any) -> None:
    rows = [dict(r) for r in ROWS]
    change(rows)
    assert batch_digest.table_digest(table(rows)) != batch_digest.table_digest(table(ROWS))
    assert batch_digest.table_digest(table(rows)) == reference_digest(rows, KINDS)


def test_names_and_kinds_are_part_of_the_digest() -> None:
    base = batch_digest.table_digest(table(ROWS))
    renamed = table(ROWS).rename_columns(["id", "score", "shown", "label", "blob"])
    assert batch_digest.table_digest(renamed) != base
    as_float = table([{**r, "id": float(r["id"])} for r in ROWS], id=pa.float64())
    assert batch_digest.table_digest(as_float) != base


def test_duckdb_rows_give_the_frames_digest() -> None:
    """What verify reads back from DuckDB hashes like the frame that was inserted."""
    con = duckdb.connect()
    try:
        con.execute(
            "CREATE TABLE t (id BIGINT, score DOUBLE, shown BOOLEAN, text VARCHAR, blob BLOB,"
            " seq BIGINT)"
        )
        con.register("incoming", table(ROWS))
        con.execute("INSERT INTO t SELECT *, 7 FROM incoming")
        got = batch_digest.digest(
            con, "SELECT id, score, shown, text, blob FROM t WHERE seq = ? ORDER BY id DESC", 7
        )
    finally:
        con.close()
    in_order = sorted(ROWS, key=lambda r: -int(r["id"]))
    assert got == reference_digest(in_order, KINDS)
    assert math.copysign(1.0, ROWS[1]["score"]) == -1.0  # -0.0 went through as such


def test_bulk_predictions_carry_the_digest_verify_recomputes(
    loaded_workspace: Workspace, cases_frame: pl.DataFrame
) -> None:
    ws = loaded_workspace
    preds = predictions_for(cases_frame.head(50)).with_columns(
        pl.Series("explanation", ['{ "duration" : 1e-05,\n"job": -0.0 }'] * 50)
    )
    result = operator(ws).add_predictions(TEST_MODEL.model, preds, TEST_MODEL.sha256)
    con = connect(ws)
    try:
        stored = batch_digest.digest(con, batch_digest.PREDICTIONS_SQL, result.seq)
        (entry,) = con.execute(
            "SELECT entry FROM audit_log WHERE seq = ?", [result.seq]
        ).fetchall()[0]
        ids = con.execute(
            "SELECT min(prediction_id), max(prediction_id), count(DISTINCT prediction_id)"
            " FROM predictions WHERE batch_seq = ?",
            [result.seq],
        ).fetchall()[0]
    finally:
        con.close()
    payload = json.loads(entry)["payload"]
    assert result.digest == stored == payload["digest"]
    assert payload["digest_method"] == batch_digest.METHOD
    # ids continue the earlier batch's (200 predictions)
    assert ids == (201, 250, 50)
    assert (payload["first_prediction_id"], payload["last_prediction_id"]) == (201, 250)
    assert open_store_as(ws, Identity(name="otto")).verify().ok


def test_unknown_cases_are_named_by_their_rows_and_nothing_is_written(
    loaded_workspace: Workspace, cases_frame: pl.DataFrame
) -> None:
    preds = predictions_for(cases_frame.head(10))
    preds = preds.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([2, 7]))
        .then(pl.lit("NO-SUCH-CASE"))
        .otherwise(pl.col("case_id"))
        .alias("case_id")
    )
    op = operator(loaded_workspace)
    before = op.counts()
    with pytest.raises(NotFoundError, match=r"2 rows name unknown case ids \(rows 3, 8\)"):
        op.add_predictions(TEST_MODEL.model, preds, TEST_MODEL.sha256)
    assert op.counts() == before


def _csv_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the store write its batch events as the previous version did (the CSV method)."""

    def csv_of(table: pa.Table) -> str:
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return hashlib.sha256(frame.write_csv().encode()).hexdigest()

    def cases_digest(con: duckdb.DuckDBPyConnection, query: str, seq: int) -> str:
        return batch_digest.legacy_digest(
            con, query.replace("p.sealed AS", "hex(p.sealed) AS"), seq
        )

    monkeypatch.setattr(batch_digest, "METHOD", batch_digest.LEGACY_METHOD)
    monkeypatch.setattr(batch_digest, "table_digest", csv_of)
    monkeypatch.setattr(batch_digest, "digest", cases_digest)


def test_batches_recorded_with_the_csv_method_still_verify_and_catch_edits(
    workspace: Workspace, cases_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace
    with monkeypatch.context() as m:
        _csv_method(m)
        op = operator(ws)
        cases_seq = op.ingest_cases(cases_frame.head(40)).seq
        stand_in(ws)
        preds_seq = op.add_predictions(
            TEST_MODEL.model, predictions_for(cases_frame.head(40)), TEST_MODEL.sha256
        ).seq
    events = {e.seq: e for e in open_store_as(ws, Identity(name="otto")).audit_events()}
    assert events[cases_seq].payload["digest_method"] == batch_digest.LEGACY_METHOD
    assert events[preds_seq].payload["digest_method"] == batch_digest.LEGACY_METHOD
    # A batch written by the current version next to them
    new_seq = (
        operator(ws)
        .add_predictions(TEST_MODEL.model, predictions_for(cases_frame.head(40)), TEST_MODEL.sha256)
        .seq
    )
    assert open_store_as(ws, Identity(name="otto")).verify().ok

    # Erasing a subject restates the old batch by its own (CSV) method: still OK.
    subject = str(cases_frame["applicant_id"][3])
    open_store_as(ws, Identity(name="pia")).subject_erase(subject)
    assert open_store_as(ws, Identity(name="otto")).verify().ok

    con = connect(ws)
    try:
        con.execute(
            "UPDATE predictions SET score = 0.5 WHERE batch_seq = ? AND prediction_id = 5",
            [preds_seq],
        )
    finally:
        con.close()
    report = open_store_as(ws, Identity(name="otto")).verify()
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (preds_seq, "record-mismatch")
    assert new_seq > preds_seq


def test_an_unknown_digest_method_is_not_taken_on_trust(loaded_workspace: Workspace) -> None:
    con = connect(loaded_workspace)
    try:
        seq = int(
            con.execute(
                'SELECT seq FROM audit_log WHERE entry LIKE \'{"action":"predictions.ingest",%\''
            ).fetchall()[0][0]
        )
        assert (
            batch_digest.stored_digest(
                con, loaded_workspace.settings(), "predictions.ingest", "some later method", seq
            )
            is None
        )
    finally:
        con.close()


def _batch(ws: Workspace, action: str = "cases.ingest") -> tuple[int, str]:
    """The seq and the recorded digest of the workspace's one batch of cases (or of the
    batch event ``action``)."""
    con = connect(ws)
    try:
        ((seq, digest),) = con.execute(
            "SELECT seq, json_extract_string(entry, '$.payload.digest') FROM audit_log"
            " WHERE starts_with(entry, ?)",
            [f'{{"action":"{action}",'],
        ).fetchall()
    finally:
        con.close()
    return int(seq), str(digest)


def _read_back(ws: Workspace, seq: int) -> tuple[pa.Table | None, pa.Table, str | None]:
    """The batch read table by table (None: not taken), as ``cases_sql`` returns it, and the
    digest verify recomputes."""
    settings = ws.settings()
    con = connect(ws)
    try:
        return (
            batch_digest.stored_cases(con, settings, seq),
            con.sql(batch_digest.cases_sql(settings), params=[seq]).to_arrow_table(),
            batch_digest.stored_digest(con, settings, "cases.ingest", batch_digest.METHOD, seq),
        )
    finally:
        con.close()


def _stored_anew(ws: Workspace, table: str, order: str, where: str = "true") -> None:
    """``table``'s rows (those ``where`` holds) stored again in ``order``."""
    con = connect(ws)
    try:
        con.execute(f"CREATE TEMP TABLE kept AS SELECT * FROM {table} WHERE {where}")
        con.execute(f"DELETE FROM {table}")
        con.execute(f"INSERT INTO {table} SELECT * FROM kept ORDER BY {order}")
    finally:
        con.close()


def test_a_batch_of_cases_read_table_by_table_is_the_joined_one(
    loaded_workspace: Workspace,
) -> None:
    """Bulk ingest stores a batch's cases in case_id order in each table: read table by table
    they are the very table ``cases_sql`` gives (names, types, rows, order), whose digest is
    the recorded one; without seed labels too (the left join's NULLs)."""
    ws = loaded_workspace
    seq, recorded = _batch(ws)
    by_tables, joined, digest = _read_back(ws, seq)
    assert by_tables is not None
    assert joined.num_rows == 200
    assert by_tables.equals(joined)
    assert digest == recorded
    _stored_anew(ws, "seed_labels", "case_id", "false")
    by_tables, joined, digest = _read_back(ws, seq)
    assert by_tables is not None
    assert joined.column("label").null_count == 200
    assert by_tables.equals(joined)
    assert digest != recorded  # the labels are gone


@pytest.mark.parametrize(
    ("table", "order", "where"),
    [
        # rows stored out of case_id order
        ("case_features", "case_id DESC", "true"),
        ("cases", "case_id DESC", "true"),
        ("case_personal", "hash(case_id)", "true"),
        # a case without its personal data, or its seed label: the joins leave it out
        ("case_personal", "case_id", "case_id <> (SELECT max(case_id) FROM cases)"),
        ("seed_labels", "case_id", "case_id <> (SELECT min(case_id) FROM cases)"),
    ],
)
def test_where_the_tables_do_not_show_it_the_joins_decide(
    loaded_workspace: Workspace, table: str, order: str, where: str
) -> None:
    """Rows out of order, or a case missing from a table: the batch is not read table by
    table, and its digest is what the joins and the sort give (the recorded one where
    only the order changed)."""
    ws = loaded_workspace
    seq, recorded = _batch(ws)
    _stored_anew(ws, table, order, where)
    by_tables, joined, digest = _read_back(ws, seq)
    assert by_tables is None
    assert digest == batch_digest.table_digest(joined)
    assert (digest == recorded) == (where == "true")


def test_another_cases_row_in_the_batchs_range_is_not_taken(
    loaded_workspace: Workspace,
) -> None:
    """A row of case_features between the batch's first and last case_id that no case of the
    batch has: the rows of the range are not the batch's, and the joins decide (the
    batch's digest is unchanged: the row joins none of its cases)."""
    ws = loaded_workspace
    seq, recorded = _batch(ws)
    con = connect(ws)
    try:
        con.execute(
            "INSERT INTO case_features SELECT * REPLACE (case_id || '~' AS case_id)"
            " FROM case_features WHERE case_id = (SELECT min(case_id) FROM cases)"
        )
    finally:
        con.close()
    by_tables, joined, digest = _read_back(ws, seq)
    assert by_tables is None
    assert digest == batch_digest.table_digest(joined) == recorded


def test_cases_stored_in_one_other_order_in_every_table_are_sorted(
    loaded_workspace: Workspace,
) -> None:
    """Every table stored in the same order, not case_id's, from the first case_id to the
    last: position by position the tables agree, but that is not the sorted batch, so the
    joins and the sort decide (the recorded digest)."""
    ws = loaded_workspace
    seq, recorded = _batch(ws)
    con = connect(ws)
    try:
        first, last = con.execute("SELECT min(case_id), max(case_id) FROM cases").fetchall()[0]
    finally:
        con.close()
    shuffled = f"case_id = '{last}', case_id <> '{first}', hash(case_id)"
    for table in ("cases", "case_features", "case_personal", "seed_labels"):
        _stored_anew(ws, table, shuffled)
    by_tables, joined, digest = _read_back(ws, seq)
    assert by_tables is None
    assert digest == batch_digest.table_digest(joined) == recorded


@pytest.mark.parametrize("order", ["prediction_id", "prediction_id DESC", "hash(prediction_id)"])
def test_predictions_stored_in_id_order_are_not_sorted_again(
    loaded_workspace: Workspace, order: str
) -> None:
    """A batch of predictions stored in prediction_id order is read without the sort (the
    same table); stored in another order it is sorted, and either way its digest is the
    recorded one."""
    ws = loaded_workspace
    _stored_anew(ws, "predictions", order)
    seq, recorded = _batch(ws, "predictions.ingest")
    con = connect(ws)
    try:
        as_stored = batch_digest.stored_predictions(con, batch_digest.PREDICTIONS_SQL, seq)
        sorted_ = con.sql(batch_digest.PREDICTIONS_SQL, params=[seq]).to_arrow_table()
        digest = batch_digest.stored_digest(
            con, ws.settings(), "predictions.ingest", batch_digest.METHOD, seq
        )
    finally:
        con.close()
    assert sorted_.num_rows == 200
    if order == "prediction_id":
        assert as_stored is not None
        assert as_stored.equals(sorted_)
    else:
        assert as_stored is None
    assert digest == batch_digest.table_digest(sorted_) == recorded
