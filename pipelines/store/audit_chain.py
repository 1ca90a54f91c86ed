"""The hash chain of the audit log: canonical entries, hashing, and verification.

Each audit row is stored as its canonical JSON text (``entry``) with ``prev_hash`` and
``hash``::

    hash = sha256(prev_hash_hex ‖ entry)      (both UTF-8; genesis prev_hash = "0" * 64)

Because every row carries its predecessor's hash, checking the chain needs no sequential
loop: each row is checked against itself and against its neighbour, which DuckDB does for a
million rows in well under a second (benchmarks/verify.py). The same SQL runs on the store's
own file or on an exported copy (Parquet), so an auditor can verify without the operator.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from hilt.pipelines.store import sql

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
_ORDER_SQL = """
WITH ordered AS (
    SELECT seq, prev_hash,
           lag(seq) OVER (ORDER BY seq) AS prev_seq,
           lag(hash) OVER (ORDER BY seq) AS prev_row_hash
    FROM {source}
)
SELECT
    min(seq) FILTER (WHERE prev_seq IS NOT NULL AND seq = prev_seq),
    arg_min(coalesce(prev_seq, {anchor_seq}), seq)
        FILTER (WHERE seq <> coalesce(prev_seq, {anchor_seq}) + 1
                AND (prev_seq IS NULL OR seq <> prev_seq)),
    min(seq) FILTER (WHERE seq <> coalesce(prev_seq, {anchor_seq}) + 1
                     AND (prev_seq IS NULL OR seq <> prev_seq)),
    min(seq) FILTER (WHERE prev_hash IS DISTINCT FROM coalesce(prev_row_hash, '{genesis}'))
FROM ordered
"""

#: The latest retention run that purged the head of the log: through which seq, and the
#: hash at that seq, which the first remaining row must link to.
_ANCHOR_SQL = """
SELECT try_cast(json_extract(entry, '$.payload.audit.purged_through') AS BIGINT),
       json_extract_string(entry, '$.payload.audit.anchor_hash')
FROM {source}
WHERE entry LIKE '{{"action":"retention.applied",%'
  AND json_extract(entry, '$.payload.audit.purged_through') IS NOT NULL
ORDER BY seq DESC LIMIT 1
"""

_CONTENT_SQL = """
SELECT
    min(seq) FILTER (WHERE try_cast(json_extract(entry, '$.seq') AS BIGINT)
                           IS DISTINCT FROM seq),
    min(seq) FILTER (WHERE hash IS DISTINCT FROM sha256(prev_hash || entry))
FROM {source}
"""

KIND_ORDER = ("seq-duplicate", "seq-gap", "seq-mismatch", "link-broken", "hash-mismatch")

_DETAIL = {
    "seq-duplicate": "two rows carry this seq (a forged row was inserted)",
    "seq-mismatch": "the row's seq differs from the seq inside its hashed entry "
    "(rows were moved or swapped)",
    "link-broken": "prev_hash does not equal the hash of the row before "
    "(a row was inserted, removed or replaced)",
    "hash-mismatch": "the stored hash does not match the entry (the entry was changed)",
}


def purge_anchor(con: duckdb.DuckDBPyConnection, source: str = "audit_log") -> tuple[int, str]:
    """(seq, hash) the log starts after: (0, genesis), or where retention purged it to.

    Retention may delete the oldest rows once they are older than the configured period
    (never younger than six months, EU AI Act Arts. 19, 26(6)); the retention event that did
    it records the last purged seq and its hash, and is itself part of the chain.
    """
    row = sql.one(con, _ANCHOR_SQL.format(source=source))
    if row is None or row[0] is None or not row[1]:
        return 0, GENESIS_HASH
    return int(row[0]), str(row[1])


def verify_chain_rows(
    con: duckdb.DuckDBPyConnection, source: str = "audit_log"
) -> tuple[int, str, Break | None]:
    """Check the chain in ``source`` (a table, view or ``read_parquet(...)``).

    Returns (number of rows, head hash, first break or None).
    """
    row = sql.one(
        con,
        f"SELECT count(*), max(seq) FROM {source}",
    )
    n = int(row[0]) if row else 0
    anchor_seq, anchor_hash = purge_anchor(con, source)
    order = sql.one(
        con, _ORDER_SQL.format(source=source, genesis=anchor_hash, anchor_seq=int(anchor_seq))
    )
    content = sql.one(con, _CONTENT_SQL.format(source=source))
    head = sql.one(con, f"SELECT hash FROM {source} ORDER BY seq DESC LIMIT 1")
    head_hash = str(head[0]) if head else GENESIS_HASH
    assert order is not None and content is not None
    duplicate, gap_prev, gap_seq, link = order
    mismatch, bad_hash = content
    found = {
        "seq-duplicate": duplicate,
        "seq-gap": gap_seq,
        "seq-mismatch": mismatch,
        "link-broken": link,
        "hash-mismatch": bad_hash,
    }
    candidates = [(int(v), KIND_ORDER.index(k), k) for k, v in found.items() if v is not None]
    if not candidates:
        return n, head_hash, None
    seq, _, kind = min(candidates)
    if kind == "seq-gap":
        missing = (int(gap_prev) if gap_prev is not None else anchor_seq) + 1
        return n, head_hash, Break(missing, kind, f"seq {missing} is missing (next present: {seq})")
    return n, head_hash, Break(seq, kind, _DETAIL[kind])


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
