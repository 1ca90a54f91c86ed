"""The hash chain of the audit log: canonical entries, hashing, and verification.

Each audit row is stored as its canonical JSON text (``entry``) with ``prev_hash`` and
``hash``::

    hash = sha256(prev_hash_hex ‖ entry)      (both UTF-8; genesis prev_hash = "0" * 64)

Because every row carries its predecessor's hash, checking the chain needs no sequential
loop: each row is checked against itself (its hash, recomputed with hashlib, whose OpenSSL
uses the CPU's SHA extensions: ~3x DuckDB's sha256 here) and against its neighbour (its
prev_hash equals the stored hash of the row before, a join in DuckDB), so the hashing runs
beside DuckDB's scans (benchmarks/verify.py). The same checks run on the store's own file,
on a copy fetched from a service, or on the rows after a signed checkpoint only
(``tail``), starting from the checkpoint's (seq, hash) instead of the genesis.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from hilt.pipelines.store import sql

if TYPE_CHECKING:
    import duckdb

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, no NaN. Used for every hashed text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def utc_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a Z, the one time format of the audit log."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chain_hash(prev_hash: str, entry: str) -> str:
    return hashlib.sha256((prev_hash + entry).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One event, before it is chained."""

    seq: int
    ts: str
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    payload: dict[str, Any]

    def canonical(self) -> str:
        return canonical_json(
            {
                "seq": self.seq,
                "ts": self.ts,
                "actor": self.actor,
                "role": self.role,
                "action": self.action,
                "object_type": self.object_type,
                "object_id": self.object_id,
                "payload": self.payload,
            }
        )


@dataclass(frozen=True)
class Break:
    """The first place where the records stop proving themselves."""

    seq: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"BROKEN at seq {self.seq}: {self.kind}: {self.detail}"


# Two scans, each parallel in DuckDB: the order of the rows (seq and prev_hash against the
# row before) and the content of each row (its seq inside the entry, its hash). Each yields
# the earliest offending seq per kind; the earliest seq wins, and on a tie the kind listed
# first in KIND_ORDER is named.
#
# The order scan joins each row to the row at seq - 1 (a hash join, parallel) instead of
# sorting the log by seq for a window: a row without a row at seq - 1 is a gap (unless it is
# the first after the anchor), and its link is checked against the anchor. Where this and a
# sorted walk would judge a row differently (rows around a gap or a duplicate), the gap or
# the duplicate is named at that seq or earlier, so the first break is the same.
_ORDER_SQL = """
SELECT
    (SELECT min(seq) FROM (SELECT seq FROM {source} GROUP BY seq HAVING count(*) > 1)),
    min(a.seq) FILTER (WHERE b.seq IS NULL AND a.seq <> {anchor_seq} + 1),
    min(a.seq) FILTER (WHERE a.prev_hash IS DISTINCT FROM coalesce(b.hash, '{genesis}'))
FROM {source} a LEFT JOIN {source} b ON b.seq = a.seq - 1
"""


def kind_prefix(action: str) -> str:
    """The start of the canonical entry of every event of ``action``: canonical entries have
    sorted keys, so "action" always comes first, and an event's kind is read without
    parsing its entry."""
    return f'{{"action":"{action}",'


#: The characters the prefixes of ``picks`` may not hold: LIKE's wildcards, SQL's quote,
#: an escape. Without them ``entry LIKE 'p%'`` is ``entry.startswith(p)``.
_NOT_PLAIN = frozenset("%_'\\")


def picks(prefixes: Iterable[str]) -> str:
    """SQL that is true for an entry starting with one of ``prefixes`` (``kind_prefix``, or a
    shorter start such as that of every ``run.…``): what the checks by kind pick their
    events with."""
    listed = list(prefixes)
    for p in listed:
        if not p or _NOT_PLAIN & set(p):
            raise ValueError(f"not a plain prefix of an entry: {p!r}")
    return "(" + " OR ".join(f"entry LIKE '{p}%'" for p in listed) + ")"


#: The kind of event that moves the anchor (``purge_anchor``).
RETENTION_KINDS = (kind_prefix("retention.applied"),)

#: The latest retention run that purged the head of the log: through which seq, and the
#: hash at that seq, which the first remaining row must link to.
_ANCHOR_SQL = f"""
SELECT try_cast(json_extract(entry, '$.payload.audit.purged_through') AS BIGINT),
       json_extract_string(entry, '$.payload.audit.anchor_hash')
FROM __source__
WHERE {picks(RETENTION_KINDS)}
  AND json_extract(entry, '$.payload.audit.purged_through') IS NOT NULL
ORDER BY seq DESC LIMIT 1
"""

#: The seq inside a row's entry must be the row's seq, written as the store writes it (a JSON
#: integer; ``json_extract_string`` gives its digits): stricter than the numeric cast used
#: before, which also took 5.0, 4.5 (for 4), " 5" or true (for 1); as before, "5" is taken.
#: ``reconcile.CONTENT_AND_DECISIONS_SQL`` does the same check in the scan that reconciles
#: the decisions.
_CONTENT_SQL = """
SELECT
    min(seq) FILTER (WHERE json_extract_string(entry, '$.seq') IS DISTINCT FROM seq::VARCHAR)
FROM {source}
"""

#: Each row's hashed bytes, stored hash and prev_hash, fetched this many rows at a time:
#: a batch's buffers (~4.6 MB of 8,192 log rows) are reused by the allocator, where those of
#: 65,536 rows (~37 MB) were mapped afresh each time (on 1M events, ~0.3 s of system CPU in
#: page faults, 160,000-260,000 of them, against ~0.02 s and 2,000 now; the same user CPU).
_HASH_SQL = "SELECT seq, encode(prev_hash || entry), hash{prev} FROM {source}"
_HASH_BATCH = 8_192

KIND_ORDER = ("seq-duplicate", "seq-gap", "seq-mismatch", "link-broken", "hash-mismatch")

_DETAIL = {
    "seq-duplicate": "two rows carry this seq (a forged row was inserted)",
    "seq-mismatch": "the row's seq differs from the seq inside its hashed entry "
    "(rows were moved or swapped)",
    "link-broken": "prev_hash does not equal the hash of the row before "
    "(a row was inserted, removed or replaced)",
    "hash-mismatch": "the stored hash does not match the entry (the entry was changed)",
}


def tail(since: int, table: str = "audit_log") -> str:
    """The rows of ``table`` after seq ``since`` as a source for the scans here (the whole
    table for 0). The log is stored in seq order, so DuckDB skips the row groups before."""
    return table if since <= 0 else f"(SELECT * FROM {table} WHERE seq > {int(since)})"


def first_bad_hash(
    con: duckdb.DuckDBPyConnection, source: str = "audit_log", *, bulk: bool | None = None
) -> int | None:
    """The earliest seq whose stored hash is not sha256(prev_hash ‖ entry), or None.

    Hashed with hashlib (OpenSSL) in this thread, one row at a time: it holds the GIL, but
    DuckDB's scans in the other threads of verify do not need it, so the two share the
    cores. A row whose prev_hash or entry is NULL counts as a mismatch.

    ``bulk``: read the rows as Arrow batches (``_hash_scan_bulk``: no Python object
    per row but the slice hashed; a quarter less CPU on a million events) instead of as
    Python rows. Default: where pyarrow is loaded already, so that a verify from a
    checkpoint in a fresh process (the CLI's `--from latest`) starts without it.
    """
    return hash_scan(con, source, bulk=bulk, runs=False)[0]


@dataclass(frozen=True)
class Run:
    """The rows of a hash scan, in the order it read them, when they form one run: each
    seq one more than the one before, and each prev_hash the stored hash of the row before
    (byte for byte). ``first_prev``: the first row's prev_hash (what the run links to)."""

    rows: int
    first_seq: int
    first_prev: str
    last_seq: int
    last_hash: str


class _RunTracker:
    """Follows a hash scan's batches; ``run``: the Run they form, or None where they do not
    (a gap, a duplicate, rows out of order, a link that differs, a NULL)."""

    def __init__(self) -> None:
        self._rows = 0
        self._first: tuple[int, str] = (0, "")
        self._last: tuple[int, str] = (0, "")
        self._broken = False

    def add(self, seqs: list[Any], first_prev: Any, last_hash: Any, linked: bool) -> None:
        """A batch: its seqs in the order read, its first row's prev_hash, its last row's
        stored hash, and whether each of its other rows links to the row before it."""
        if self._broken or not seqs:
            return
        first = seqs[0]
        if (
            not linked
            or not isinstance(first, int)
            or not isinstance(first_prev, str)
            or not isinstance(last_hash, str)
            or seqs != list(range(first, first + len(seqs)))
            or (self._rows and (first, first_prev) != (self._last[0] + 1, self._last[1]))
        ):
            self._broken = True
            return
        if not self._rows:
            self._first = (first, first_prev)
        self._rows += len(seqs)
        self._last = (seqs[-1], last_hash)

    def run(self) -> Run | None:
        if self._broken:
            return None
        return Run(self._rows, *self._first, *self._last)


def joined(runs: Iterable[Run | None]) -> Run | None:
    """The Run that the rows of consecutive scans form together (the hash check's parts, in
    seq order): each non-empty run starts at the seq after the last row of the one before
    and links to its stored hash, byte for byte. None where one of them is no run or they
    do not follow one another; an empty run (a part with no rows) is left out."""
    found = Run(0, 0, "", 0, "")
    for run in runs:
        if run is None:
            return None
        if not run.rows:
            continue
        if not found.rows:
            found = run
        elif (run.first_seq, run.first_prev) != (found.last_seq + 1, found.last_hash):
            return None
        else:
            found = Run(
                found.rows + run.rows,
                found.first_seq,
                found.first_prev,
                run.last_seq,
                run.last_hash,
            )
    return found


def hash_scan(
    con: duckdb.DuckDBPyConnection,
    source: str = "audit_log",
    *,
    bulk: bool | None = None,
    runs: bool = True,
) -> tuple[int | None, Run | None]:
    """``first_bad_hash``, and the Run the rows form as read (None: they form none), which
    ``order_of_run`` turns into the order scan's answer without a second scan
    (``runs=False``: not followed, None)."""
    if bulk is None:
        bulk = "pyarrow" in sys.modules
    if bulk:
        return _hash_scan_bulk(con, source, runs)
    sha256 = hashlib.sha256
    bad: int | None = None
    tracker = _RunTracker()
    rows = con.execute(_HASH_SQL.format(source=source, prev=", prev_hash" if runs else ""))
    while batch := rows.fetchmany(_HASH_BATCH):
        bad = _min_bad(bad, batch, sha256)
        if runs:
            prevs = [r[3] for r in batch]
            stored = [r[2] for r in batch]
            linked = None not in prevs and None not in stored and prevs[1:] == stored[:-1]
            tracker.add([r[0] for r in batch], prevs[0], stored[-1], linked)
    return bad, tracker.run() if runs else None


def _min_bad(bad: int | None, rows: Iterable[tuple[Any, ...]], sha256: Any) -> int | None:
    """``bad`` or the earliest seq of ``rows`` (seq, hashed bytes, stored hash, ...) that does
    not match, whichever is earlier."""
    for seq, text, stored, *_ in rows:
        if (text is None or sha256(text).hexdigest() != stored) and (bad is None or seq < bad):
            bad = seq
    return bad


#: The same rows as ``_HASH_SQL``, as text: Arrow's string data is their UTF-8 bytes.
_HASH_BULK_SQL = "SELECT seq, prev_hash || entry AS hashed, hash{prev} FROM {source}"


def _hash_scan_bulk(
    con: duckdb.DuckDBPyConnection, source: str, runs: bool
) -> tuple[int | None, Run | None]:
    """``hash_scan`` over Arrow batches: each row's bytes are a slice of the batch's string
    buffer, hashed; the batch's digests, as one hex text, are compared with the stored
    hashes' buffer (each 64 characters) in one comparison. Only a batch where they differ
    (or that holds a NULL) is walked row by row, to name the earliest bad seq. The links
    are one comparison too: the prev_hash buffer against the stored hashes' buffer shifted
    by one row."""
    import pyarrow as pa

    sha256 = hashlib.sha256
    bad: int | None = None
    tracker = _RunTracker()
    query = _HASH_BULK_SQL.format(source=source, prev=", prev_hash" if runs else "")
    for batch in con.sql(query).to_arrow_reader(_HASH_BATCH):
        hashed, stored = batch.column(1), batch.column(2)
        texts, hexes = _string_spans(hashed, pa), _string_spans(stored, pa)
        regular = hexes is not None and not stored.null_count and _every_64(hexes[0])
        if runs:
            tracker.add(*_batch_links(batch, hexes if regular else None, pa))
        if texts is not None and regular and not hashed.null_count:
            assert hexes is not None
            (offsets, data), (hex_offsets, hex_data) = texts, hexes
            digests = b"".join([sha256(data[a:b]).digest() for a, b in pairwise(offsets)])
            # (as bytes: a memoryview compares byte by byte, ten times slower than a copy)
            if digests.hex().encode("ascii") == bytes(hex_data[hex_offsets[0] : hex_offsets[-1]]):
                continue
        rows = zip(
            batch.column(0).to_pylist(),
            [t.encode("utf-8") if t is not None else None for t in hashed.to_pylist()],
            stored.to_pylist(),
            strict=True,
        )
        bad = _min_bad(bad, rows, sha256)
    return bad, tracker.run() if runs else None


def _batch_links(
    batch: Any, hexes: tuple[list[int], memoryview] | None, pa: Any
) -> tuple[list[Any], str | None, str | None, bool]:
    """What ``_RunTracker.add`` takes, for an Arrow batch of ``_HASH_BULK_SQL`` with the
    prev_hash column: each prev_hash and stored hash 64 bytes (``hexes``: the stored hashes'
    spans, None where they are not), the prev_hashes after the first equal to the stored
    hashes before the last, as one comparison of the two buffers."""
    prevs = _string_spans(batch.column(3), pa)
    if hexes is None or prevs is None or batch.column(3).null_count or not _every_64(prevs[0]):
        return [None], None, None, False
    (hex_offsets, hex_data), (prev_offsets, prev_data) = hexes, prevs
    at, end, first, last = hex_offsets[0], hex_offsets[-1], prev_offsets[0], prev_offsets[-1]
    return (
        batch.column(0).to_pylist(),
        bytes(prev_data[first : first + 64]).decode("utf-8"),
        bytes(hex_data[end - 64 : end]).decode("utf-8"),
        bytes(prev_data[first + 64 : last]) == bytes(hex_data[at : end - 64]),
    )


def _string_spans(array: Any, pa: Any) -> tuple[list[int], memoryview] | None:
    """A string array's offsets (as ints) and data buffer, or None for another layout."""
    if pa.types.is_string(array.type):
        width = 4
    elif pa.types.is_large_string(array.type):
        width = 8
    else:
        return None
    _, offsets_buf, data_buf = array.buffers()
    raw = memoryview(offsets_buf).cast("B").cast("i" if width == 4 else "q")
    spans = raw[array.offset : array.offset + len(array) + 1].tolist()
    return spans, memoryview(data_buf).cast("B") if data_buf is not None else memoryview(b"")


def _every_64(offsets: list[int]) -> bool:
    """Whether string offsets are those of values of 64 bytes each."""
    first = offsets[0]
    return offsets == list(range(first, first + 64 * len(offsets), 64))


def purge_anchor(con: duckdb.DuckDBPyConnection, source: str = "audit_log") -> tuple[int, str]:
    """(seq, hash) the log starts after: (0, genesis), or where retention purged it to.

    Retention may delete the oldest rows once they are older than the configured period
    (never younger than six months, EU AI Act Arts. 19, 26(6)); the retention event that did
    it records the last purged seq and its hash, and is itself part of the chain.
    """
    row = sql.one(con, _ANCHOR_SQL.replace("__source__", source))
    if row is None or row[0] is None or not row[1]:
        return 0, GENESIS_HASH
    return int(row[0]), str(row[1])


@dataclass(frozen=True)
class ChainOrder:
    """What the order scan found: the size and head of the log, and per kind of order
    break the earliest offending seq (None: no such break)."""

    events: int
    head_seq: int
    head_hash: str
    anchor_seq: int
    duplicate: int | None
    gap_seq: int | None
    #: The seq before the first gap (the missing seq is the one after it).
    gap_prev: int | None
    link: int | None


def check_order(
    con: duckdb.DuckDBPyConnection,
    source: str = "audit_log",
    start: tuple[int, str] = (0, GENESIS_HASH),
    purged: tuple[int, str] | None = None,
) -> ChainOrder:
    """The order scan of the chain in ``source`` (a table, view or ``read_parquet(...)``).

    ``start``: the (seq, hash) the rows follow when no retention purged beyond it: the
    genesis, or a signed checkpoint for a ``tail``. ``purged``: ``purge_anchor(con,
    source)`` when the caller read it already."""
    # The size, the head and its hash in one scan (the row at the highest seq; with two rows
    # at that seq the log is broken there anyway: seq-duplicate).
    row = sql.one(con, f"SELECT count(*), coalesce(max(seq), 0), arg_max(hash, seq) FROM {source}")
    n, head_seq = (int(row[0]), int(row[1])) if row else (0, 0)
    head = row[2] if row else None
    anchor_seq, anchor_hash = _anchor(purged or purge_anchor(con, source), start)
    order = sql.one(
        con, _ORDER_SQL.format(source=source, genesis=anchor_hash, anchor_seq=int(anchor_seq))
    )
    assert order is not None
    duplicate, gap_seq, link = order
    gap_prev = None
    if gap_seq is not None:
        gap_prev = sql.scalar(con, f"SELECT max(seq) FROM {source} WHERE seq < ?", [gap_seq])
    return ChainOrder(
        events=n,
        head_seq=head_seq,
        head_hash=str(head) if n else start[1],
        anchor_seq=anchor_seq,
        duplicate=duplicate,
        gap_seq=gap_seq,
        gap_prev=gap_prev,
        link=link,
    )


def _anchor(purged: tuple[int, str], start: tuple[int, str]) -> tuple[int, str]:
    """What the first row must follow: the later of the purge anchor and the start."""
    return max(purged, start, key=lambda a: a[0])


def order_of_run(
    run: Run | None, purged: tuple[int, str], start: tuple[int, str] = (0, GENESIS_HASH)
) -> ChainOrder | None:
    """``check_order``'s answer from the Run a hash scan of the same rows saw, where it
    finds no break: the rows are one run that starts right after the anchor and links to
    its hash (then no seq is missing or doubled and every link holds, so the order scan
    finds nothing either). None otherwise: the order scan names the break (or, for rows
    merely read out of order, finds none).

    ``purged``: ``purge_anchor`` of the same rows; ``start`` as for ``check_order``."""
    if run is None:
        return None
    anchor_seq, anchor_hash = _anchor(purged, start)
    if not run.rows:
        return ChainOrder(0, 0, start[1], anchor_seq, None, None, None, None)
    if (run.first_seq, run.first_prev) != (anchor_seq + 1, anchor_hash):
        return None
    return ChainOrder(
        events=run.rows,
        head_seq=run.last_seq,
        head_hash=run.last_hash,
        anchor_seq=anchor_seq,
        duplicate=None,
        gap_seq=None,
        gap_prev=None,
        link=None,
    )


def check_content(
    con: duckdb.DuckDBPyConnection, source: str = "audit_log"
) -> tuple[int | None, int | None]:
    """The content scan: the earliest (seq-mismatch, hash-mismatch) seqs, or None each."""
    content = sql.one(con, _CONTENT_SQL.format(source=source))
    assert content is not None
    return content[0], first_bad_hash(con, source)


def first_chain_break(
    order: ChainOrder, mismatch: int | None, bad_hash: int | None
) -> Break | None:
    """The first break of the chain, from the order scan and the content scan."""
    found = {
        "seq-duplicate": order.duplicate,
        "seq-gap": order.gap_seq,
        "seq-mismatch": mismatch,
        "link-broken": order.link,
        "hash-mismatch": bad_hash,
    }
    candidates = [(int(v), KIND_ORDER.index(k), k) for k, v in found.items() if v is not None]
    if not candidates:
        return None
    seq, _, kind = min(candidates)
    if kind == "seq-gap":
        prev = int(order.gap_prev) if order.gap_prev is not None else order.anchor_seq
        missing = prev + 1
        return Break(missing, kind, f"seq {missing} is missing (next present: {seq})")
    return Break(seq, kind, _DETAIL[kind])


def verify_chain_rows(
    con: duckdb.DuckDBPyConnection, source: str = "audit_log"
) -> tuple[int, str, Break | None]:
    """Check the chain in ``source`` (a table, view or ``read_parquet(...)``).

    Returns (number of rows, head hash, first break or None).
    """
    order = check_order(con, source)
    mismatch, bad_hash = check_content(con, source)
    return order.events, order.head_hash, first_chain_break(order, mismatch, bad_hash)


def hash_at(
    con: duckdb.DuckDBPyConnection, seqs: list[int], source: str = "audit_log"
) -> dict[int, str]:
    if not seqs:
        return {}
    rows = con.execute(
        f"SELECT seq, hash FROM {source} WHERE seq IN (SELECT unnest($1))",
        [seqs],
    ).fetchall()
    return {int(s): str(h) for s, h in rows}
