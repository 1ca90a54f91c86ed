"""The hash check of a full walk of the store's file, on every core: one process per part.

``chain.first_bad_hash`` recomputes every row's sha256 with hashlib in one thread, holding
the GIL: on a million events it is the longest of verify's checks. A row's hash depends
only on the row (its prev_hash is stored beside it), so the log splits into seq ranges
that separate processes check at the same time, each reading its own range from the file
(read-only; DuckDB lets several processes read one file) and returning the earliest seq
whose stored hash does not match (the earliest of theirs is the log's), and the run its
rows form (``chain.Run``). Where the parts' runs join into one run of every row of the
log, that is the order check's answer (``chain.order_of_run``), and the order scan does
not read the log again; else it names the break (``chain.check_order``).

Each process then runs its part of the scan that parses every entry and reconciles the
decisions (``reconcile.CONTENT_AND_DECISIONS_SQL`` of its seq range of the log and of the
decision rows: a decision row and its event share a seq, so they are in the same part),
on the entries it has just read (in its own buffers: not read from the file a second time
by the caller); the earliest of each kind over the parts is the log's. Where a part's scan
fails (a table or column it needs is gone), the caller runs the scan itself, which names
the failure as before.

The processes are forked before the caller opens the file, while the process has no DuckDB
database open and no other Python thread (``start``); each opens the file itself, so no
connection, buffer or lock crosses a fork. Only the CLI's walk of a workspace's file
(``verify_file(..., processes=True)``, under the store's lock) does this: a service
verifies on its own connection, beside its writer.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import duckdb

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit import reconcile
from hilt.pipelines.store.audit.chain import Run, hash_scan, joined
from hilt.pipelines.store.modes.connection import DUCKDB_CONFIG

#: The earliest (seq-mismatch, decision record-mismatch) seqs of a part, or None each
#: (``reconcile.CONTENT_AND_DECISIONS_SQL``).
Content = tuple[int | None, int | None]


class PartResult(NamedTuple):
    """What a part returns."""

    #: The earliest seq whose stored hash does not match, or None.
    bad: int | None
    #: A DuckDB error's kind and message when the hash check's query failed (raised again
    #: in the caller, as the same kind).
    error: str | None
    message: str | None
    #: The run the part's rows form (None: none).
    run: Run | None
    #: The part's scan that reconciles the decisions (None: its query failed).
    content: Content | None


#: A part's kind when its process could not open the file: the caller hashes in a thread.
UNAVAILABLE = "unavailable"

#: Below this file size the walk hashes in a thread (``start`` forks nothing): the workers'
#: fork and pool cost ~0.2 s of CPU, more than hashing the few tens of thousands of events
#: such a file holds (a new workspace's file is 8-14 MB, most of it empty blocks).
MIN_FILE_BYTES = 32 << 20


def part_source(lo: int, hi: int, part: int, parts: int, table: str = "audit_log") -> str:
    """The rows of ``table`` (``audit_log``, or ``decisions``) in part ``part`` of ``parts``
    of the seqs [lo, hi]: equal seq ranges, the first open below and the last open above,
    so every row whose seq is not NULL is in one."""
    width = (hi - lo + 1) / parts
    lower = lo + round(part * width) - 1 if part > 0 else None
    upper = lo + round((part + 1) * width) - 1 if part < parts - 1 else None
    where = [
        f"seq > {lower}" if lower is not None else "",
        f"seq <= {upper}" if upper is not None else "",
    ]
    clause = " AND ".join(w for w in where if w)
    return f"(SELECT * FROM {table} WHERE {clause})" if clause else table


def _check_part(db_path: str, part: int, parts: int) -> PartResult:
    """In a worker process: the earliest bad hash of part ``part`` of the log, the run its
    rows form, and its part of the scan that reconciles the decisions."""
    try:
        con = duckdb.connect(db_path, read_only=True, config=DUCKDB_CONFIG)
    except duckdb.Error as e:
        return PartResult(None, UNAVAILABLE, type(e).__name__, None, None)
    try:
        con.execute("SET threads = 1")  # one core's share: the others are busy too
        lo, hi = con.execute("SELECT min(seq), max(seq) FROM audit_log").fetchall()[0]
        if lo is None:
            return PartResult(None, None, None, Run(0, 0, "", 0, ""), None)
        source = part_source(int(lo), int(hi), part, parts)
        bad, run = hash_scan(con, source, bulk=True)
        decisions = part_source(int(lo), int(hi), part, parts, "decisions")
        return PartResult(bad, None, None, run, _content(con, source, decisions))
    except duckdb.Error as e:
        return PartResult(None, type(e).__name__, str(e), None, None)
    finally:
        con.close()


def _content(con: duckdb.DuckDBPyConnection, log: str, decisions: str) -> Content | None:
    """The scan that reconciles the decisions (``reconcile.CONTENT_AND_DECISIONS_SQL``) of
    the rows of ``log`` and ``decisions``, read right after the hash check read the same
    entries (in this process's buffers): None where DuckDB refuses a query (verify then
    runs the scan itself, which names the failure)."""
    try:
        purged = reconcile.decisions_purged_through(con)
        found = sql.one(
            con,
            reconcile.content_and_decisions_sql(log, decisions),
            {"decisions_purged_through": purged, "since": 0},
        )
    except duckdb.Error:
        return None
    return (found[0], found[1]) if found is not None else None


class PartedHashCheck:
    """The hash check running in worker processes; ``result`` waits for them."""

    def __init__(self, pool: ProcessPoolExecutor, futures: list[Future[PartResult]]) -> None:
        self._pool = pool
        self._futures = futures
        self._found: list[PartResult] | None = None
        self._lock = threading.Lock()

    def result(self, con: duckdb.DuckDBPyConnection) -> int | None:
        """The earliest seq whose stored hash does not match (None: every row matches).
        A part whose query DuckDB refused raises that error (as ``chain.first_bad_hash``
        would); where a process could not open the file, the whole log is hashed here, on
        ``con``, instead."""
        return self.scan(con)[0]

    def scan(self, con: duckdb.DuckDBPyConnection) -> tuple[int | None, Run | None]:
        """``result``, and the run every row of the log forms, as ``chain.hash_scan`` of the
        whole log in one thread gives it: the parts' runs joined (``chain.joined``), where
        they hold as many rows as the log (a row whose seq is NULL is in no part)."""
        found = self._parts()
        if any(p.error == UNAVAILABLE for p in found):
            return hash_scan(con, bulk=True)
        for p in found:
            if p.error is not None:
                error = getattr(duckdb, p.error, duckdb.Error)
                raise error(p.message or p.error)
        bad = [p.bad for p in found if p.bad is not None]
        run = joined(p.run for p in found)
        if run is not None and run.rows != sql.scalar(con, "SELECT count(*) FROM audit_log"):
            run = None
        return min(bad) if bad else None, run

    def content(self, con: duckdb.DuckDBPyConnection) -> Content | None:
        """The scan that reconciles the decisions, of the whole log: the earliest of each
        part's (each row and each decision row is in one part, with its event). None where
        a part has none (a query failed, the log is empty): the caller runs it itself."""
        found = self._parts()
        if any(p.content is None for p in found):
            return None
        contents = [p.content for p in found if p.content is not None]
        return _earliest(c[0] for c in contents), _earliest(c[1] for c in contents)

    def _parts(self) -> list[PartResult]:
        """Each part's result, waiting for the workers (once: the hash check and the scan
        ask from two threads)."""
        with self._lock:
            if self._found is None:
                try:
                    self._found = [f.result() for f in self._futures]
                finally:
                    self.close()
            return self._found

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _earliest(seqs: Iterable[int | None]) -> int | None:
    found = [s for s in seqs if s is not None]
    return min(found) if found else None


def start(db_path: Path, parts: int | None = None) -> PartedHashCheck | None:
    """Fork ``parts`` workers (default: one per core) that check the hashes of the file at
    ``db_path``. None (the caller hashes in a thread, as before) where there is one core,
    or this process runs other Python threads: a fork copies the locks they hold, held,
    with no thread to release them. (The threads numpy's OpenBLAS and pyarrow's jemalloc
    start at import are made to survive a fork.) The caller forks before it opens the
    file, with no DuckDB database open in the process (the CLI). None too for a file
    smaller than ``MIN_FILE_BYTES``."""
    parts = parts or os.cpu_count() or 1
    if parts < 2 or threading.active_count() != 1:
        return None
    try:
        if db_path.stat().st_size < MIN_FILE_BYTES:
            return None
    except OSError:
        return None  # opening it names what is wrong
    # The workers read their rows as Arrow batches (``chain.hash_scan(bulk=True)``):
    # imported once here, not once per worker (the walk's batch digests need it anyway).
    import pyarrow  # noqa: F401

    pool = ProcessPoolExecutor(max_workers=parts, mp_context=multiprocessing.get_context("fork"))
    futures = [pool.submit(_check_part, str(db_path), k, parts) for k in range(parts)]
    return PartedHashCheck(pool, futures)
