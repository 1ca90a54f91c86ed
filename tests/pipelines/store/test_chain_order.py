"""The chain check against a plain walk over the sorted log (the window query it replaced).

``audit_chain.verify_chain_rows`` finds gaps, duplicates and broken links by joining each
row to the row at seq - 1 instead of sorting the log; its comment argues that the first
break it names is the one a walk over the rows in seq order names. Here a reference walk,
written from the old query's definition, and the real check judge the same randomly
damaged logs (rows deleted, duplicated, renumbered, swapped, edited with or without
re-hashing, forged and chained in), and must name the same (seq, kind).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit.chain import (
    GENESIS_HASH,
    KIND_ORDER,
    AuditEntry,
    ChainOrder,
    chain_hash,
    check_order,
    first_chain_break,
    hash_scan,
    order_of_run,
    purge_anchor,
    tail,
    verify_chain_rows,
)


@dataclass(frozen=True)
class Row:
    seq: int
    entry: str
    prev_hash: str
    hash: str


def entry(seq: int, note: str = "") -> str:
    return AuditEntry(
        seq, "2030-01-01T00:00:00.000000Z", "alice", "reviewer", "run.noted", "run", note, {}
    ).canonical()


def chain(n: int) -> list[Row]:
    rows, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        text = entry(seq)
        rows.append(Row(seq, text, prev, chain_hash(prev, text)))
        prev = rows[-1].hash
    return rows


def rechain_from(rows: list[Row], index: int) -> list[Row]:
    """Recompute prev_hash and hash from ``index`` on, in list order."""
    out = list(rows[:index])
    prev = out[-1].hash if out else GENESIS_HASH
    for r in rows[index:]:
        r = replace(r, prev_hash=prev, hash=chain_hash(prev, r.entry))
        out.append(r)
        prev = r.hash
    return out


def damage(rows: list[Row], rng: random.Random, steps: int) -> list[Row]:
    rows = list(rows)
    for _ in range(steps):
        if not rows:
            break
        i = rng.randrange(len(rows))
        what = rng.choice(
            ["delete", "duplicate", "renumber", "swap", "edit", "edit-rehash", "forge", "link"]
        )
        if what == "delete":
            del rows[i]
        elif what == "duplicate":
            copy = replace(rows[i], entry=entry(rows[i].seq, "forged"))
            prev = rows[i - 1].hash if i else GENESIS_HASH
            rows.insert(i + 1, replace(copy, prev_hash=prev, hash=chain_hash(prev, copy.entry)))
        elif what == "renumber":
            by = rng.choice([-2, -1, 1, 2])
            rows = rows[:i] + [replace(r, seq=r.seq + by) for r in rows[i:]]
        elif what == "swap":
            j = rng.randrange(len(rows))
            a, b = rows[i], rows[j]
            rows[i], rows[j] = replace(a, seq=b.seq), replace(b, seq=a.seq)
        elif what == "edit":
            rows[i] = replace(rows[i], entry=entry(rows[i].seq, "edited"))
        elif what == "edit-rehash":
            rows[i] = replace(rows[i], entry=entry(rows[i].seq, "edited"))
            rows = rechain_from(rows, i)
        elif what == "forge":
            seq = rows[i].seq + rng.choice([0, 1])
            forged = Row(seq, entry(seq, "forged"), rows[i].hash, "")
            rows.insert(i + 1, replace(forged, hash=chain_hash(forged.prev_hash, forged.entry)))
        else:
            rows[i] = replace(rows[i], prev_hash="f" * 64)
    return rows


def reference(rows: list[Row], tie_break: int) -> tuple[int, str] | None:
    """The first break as the old window query defined it, walking the rows sorted by seq
    (rows with the same seq in an order given by ``tie_break``)."""
    order = sorted(rows, key=lambda r: (r.seq, hash((r.entry, r.prev_hash, tie_break))))
    anchor_seq, anchor_hash = 0, GENESIS_HASH
    found: dict[str, int] = {}
    gap_prev: int | None = None

    def note(kind: str, seq: int) -> None:
        if kind not in found or seq < found[kind]:
            found[kind] = seq

    for k, r in enumerate(order):
        prev_seq = order[k - 1].seq if k else None
        prev_row_hash = order[k - 1].hash if k else None
        if prev_seq is not None and r.seq == prev_seq:
            note("seq-duplicate", r.seq)
        base = prev_seq if prev_seq is not None else anchor_seq
        if r.seq != base + 1 and (prev_seq is None or r.seq != prev_seq):
            if "seq-gap" not in found or r.seq < found["seq-gap"]:
                gap_prev = base
            note("seq-gap", r.seq)
        if r.prev_hash != (prev_row_hash if prev_row_hash is not None else anchor_hash):
            note("link-broken", r.seq)
        inside = int(r.entry.rsplit('"seq":', 1)[1].split(",", 1)[0])
        if inside != r.seq:
            note("seq-mismatch", r.seq)
        if r.hash != chain_hash(r.prev_hash, r.entry):
            note("hash-mismatch", r.seq)
    if not found:
        return None
    seq, _, kind = min((s, KIND_ORDER.index(k), k) for k, s in found.items())
    if kind == "seq-gap":
        assert gap_prev is not None
        return gap_prev + 1, kind
    return seq, kind


@functools.cache
def _db() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for the module's logs (opening one costs ~15 ms; each log
    replaces the table of the one before)."""
    return duckdb.connect()


def _table(rows: list[Row]) -> duckdb.DuckDBPyConnection:
    """The rows in the DuckDB table ``log``, stored in list order (so a swap is read out of
    seq order)."""
    con = _db()
    con.execute(
        "CREATE OR REPLACE TABLE log AS SELECT unnest($1::BIGINT[]) AS seq,"
        " unnest($2::VARCHAR[]) AS entry, unnest($3::VARCHAR[]) AS prev_hash,"
        " unnest($4::VARCHAR[]) AS hash",
        [
            [r.seq for r in rows],
            [r.entry for r in rows],
            [r.prev_hash for r in rows],
            [r.hash for r in rows],
        ],
    )
    return con


def _run_order(
    con: duckdb.DuckDBPyConnection, since: int, start: tuple[int, str], *, bulk: bool
) -> ChainOrder | None:
    """The order from the hash scan's run of the rows after ``since`` (None: not a run)."""
    source = tail(since, "log")
    _, run = hash_scan(con, source, bulk=bulk)
    return order_of_run(run, purge_anchor(con, source), start)


def checked(
    rows: list[Row], also: Callable[[duckdb.DuckDBPyConnection], None] | None = None
) -> tuple[int, str] | None:
    """The first break verify's chain check names in ``rows`` (stored in list order in a
    table ``log``); ``also``: more checks on that table."""
    con = _table(rows)
    _, _, found = verify_chain_rows(con, "log")
    if also is not None:
        also(con)
    return (found.seq, found.kind) if found else None


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    steps=st.integers(min_value=0, max_value=4),
)
def test_the_join_finds_the_break_a_sorted_walk_finds(n: int, seed: int, steps: int) -> None:
    """Also: where verify takes the order from the run the hash scan read (no second scan),
    it is the order scan's answer, on the same logs, whole or after a checkpoint, read in
    batches of 1, 3 or all rows, as Arrow or as rows; on an intact log the run is taken."""
    rng = random.Random(seed)
    original = chain(n)
    rows = damage(original, rng, steps)
    expected = {reference(rows, tie) for tie in range(3)}
    assert len(expected) == 1, expected  # the walk itself does not depend on tie order
    since, bulk, batch = rng.randrange(n + 1), rng.random() < 0.5, rng.choice([1, 3, 65_536])
    start = (since, original[since - 1].hash) if since else (0, GENESIS_HASH)

    def the_run_answers_as_the_order_scan(con: duckdb.DuckDBPyConnection) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(audit_chain, "_HASH_BATCH", batch)
            fast = _run_order(con, since, start, bulk=bulk)
        if fast is not None:
            assert fast == check_order(con, tail(since, "log"), start)
            assert first_chain_break(fast, None, None) is None
        if steps == 0:
            assert fast is not None
            assert fast.events == n - since
            assert fast.head_hash == (original[-1].hash if n > since else start[1])

    assert checked(rows, the_run_answers_as_the_order_scan) == expected.pop()


def test_an_intact_chain_has_no_break() -> None:
    assert checked(chain(5)) is None


@pytest.mark.parametrize("written", ["2.0", '" 2"', "2e0"])
def test_the_seq_inside_an_entry_must_be_written_as_the_store_writes_it(written: str) -> None:
    """A re-hashed entry whose seq reads as 2 only after a numeric cast is a seq-mismatch
    (the cast used before took it)."""
    rows = chain(3)
    text = rows[1].entry.replace('"seq":2,', f'"seq":{written},')
    assert text != rows[1].entry
    rows[1] = replace(rows[1], entry=text)
    rows = rechain_from(rows, 1)
    assert checked(rows) == (2, "seq-mismatch")


def _retention(seq: int, purged_through: int, anchor_hash: str) -> str:
    return AuditEntry(
        seq,
        "2030-01-01T00:00:00.000000Z",
        "dpo",
        "dpo",
        "retention.applied",
        "audit_log",
        "",
        {"audit": {"purged_through": purged_through, "anchor_hash": anchor_hash}},
    ).canonical()


def test_the_run_starts_where_retention_purged_the_log() -> None:
    """After a retention run that purged the head of the log, the rows must start right
    after its purge point and link to its anchor hash: then the run is the answer; where
    the purged rows are still there, the run is not taken and the order scan names the
    break (Arrow batches and rows alike)."""
    rows = chain(6)
    text = _retention(7, 3, rows[2].hash)
    rows.append(Row(7, text, rows[-1].hash, chain_hash(rows[-1].hash, text)))
    for kept, broken in ((rows[3:], False), (rows, True)):
        con = _table(kept)
        slow = check_order(con, "log")
        for bulk in (True, False):
            fast = _run_order(con, 0, (0, GENESIS_HASH), bulk=bulk)
            if broken:
                assert fast is None
                assert first_chain_break(slow, None, None) is not None
            else:
                assert fast == slow
                assert fast is not None
                assert (fast.events, fast.anchor_seq, fast.head_seq) == (4, 3, 7)


def _shifted(rows: list[Row], i: int) -> list[Row]:
    """Row ``i``'s prev_hash one character longer, its entry one shorter: the hashed bytes,
    and so its hash, unchanged."""
    r = rows[i]
    return [
        *rows[:i],
        replace(r, prev_hash=r.prev_hash + r.entry[0], entry=r.entry[1:]),
        *rows[i + 1 :],
    ]


def _swapped(rows: list[Row], i: int) -> list[Row]:
    a, b = rows[i], rows[i + 1]
    return [*rows[:i], replace(a, seq=b.seq), replace(b, seq=a.seq), *rows[i + 2 :]]


def test_the_run_is_not_taken_where_the_order_scan_finds_a_break() -> None:
    """Rows read out of seq order (each still linked to the row read before it), a doubled
    or missing seq, a changed link, and a prev_hash made longer by the first character of
    its entry (the hashed bytes unchanged): none is a run (Arrow batches and rows alike),
    and the order scan names each."""
    rows = chain(6)
    for damaged in (
        _swapped(rows, 2),
        [*rows[:3], *rows[2:]],
        [*rows[:3], *rows[4:]],
        [*rows[:3], replace(rows[3], prev_hash="f" * 64), *rows[4:]],
        _shifted(rows, 3),
    ):
        con = _table(damaged)
        for bulk in (True, False):
            assert _run_order(con, 0, (0, GENESIS_HASH), bulk=bulk) is None
        assert first_chain_break(check_order(con, "log"), None, None) is not None
