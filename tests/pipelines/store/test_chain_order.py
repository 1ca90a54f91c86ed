"""The chain check against a plain walk over the sorted log (the window query it replaced).

``audit_chain.verify_chain_rows`` finds gaps, duplicates and broken links by joining each
row to the row at seq - 1 instead of sorting the log; its comment argues that the first
break it names is the one a walk over the rows in seq order names. Here a reference walk,
written from the old query's definition, and the real check judge the same randomly
damaged logs (rows deleted, duplicated, renumbered, swapped, edited with or without
re-hashing, forged and chained in), and must name the same (seq, kind).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hilt.pipelines.store.audit.chain import (
    GENESIS_HASH,
    KIND_ORDER,
    AuditEntry,
    chain_hash,
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


def checked(rows: list[Row]) -> tuple[int, str] | None:
    con = duckdb.connect()
    try:
        frame = pl.DataFrame(
            [(r.seq, r.entry, r.prev_hash, r.hash) for r in rows],
            schema={"seq": pl.Int64, "entry": pl.String, "prev_hash": pl.String, "hash": pl.String},
            orient="row",
        )
        con.register("log_frame", frame)
        con.execute("CREATE TABLE log AS SELECT * FROM log_frame")
        _, _, found = verify_chain_rows(con, "log")
    finally:
        con.close()
    return (found.seq, found.kind) if found else None


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    steps=st.integers(min_value=0, max_value=4),
)
def test_the_join_finds_the_break_a_sorted_walk_finds(n: int, seed: int, steps: int) -> None:
    rows = damage(chain(n), random.Random(seed), steps)
    expected = {reference(rows, tie) for tie in range(3)}
    assert len(expected) == 1, expected  # the walk itself does not depend on tie order
    assert checked(rows) == expected.pop()


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
