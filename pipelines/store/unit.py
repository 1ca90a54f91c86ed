"""A unit of work: one store operation, acting as one user, on one open DuckDB connection.

Every operation in ``ops/`` receives a ``Unit``. It carries who acts and in which role (the
façade checked it), the settings and the workspace, and the means to change the store the
one way the law asks for: a change and its audit row in the same transaction
(``transaction()`` + ``append_audit()``; DuckDB has no triggers, so the store writes the row
itself). Every DuckDB error raised inside a unit's transaction, or anywhere in an operation
(``StoreCore.call`` wraps the whole call), reaches the caller as the project's own
``StoreError``, never as a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError, StoreError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import GENESIS_HASH, AuditEntry, chain_hash, utc_timestamp
from hilt.pipelines.store.authentication import UNPROVEN_KEY
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import duckdb

    from hilt.pipelines.store.group_rows import GroupRows
    from hilt.pipelines.store.live_queue import LiveQueue
    from hilt.pipelines.store.monitoring_kept import KeptRuns
    from hilt.pipelines.store.oversight_tally import KeptFigures
    from hilt.pipelines.store.subject_keys import KeyRing

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class HeadCache:
    """The audit head as last committed, kept by the one process that owns the store.

    Only the owner writes, so it need not ask the database for the head before each event.
    A fresh cache (embedded mode: one per operation) knows nothing and asks.
    """

    def __init__(self) -> None:
        self.committed: tuple[int, str] | None = None
        self.pending: tuple[int, str] | None = None
        #: The audit rows of an open group commit, inserted together (one statement) just
        #: before its COMMIT (``defer``, ``flush``); None: each row is inserted at once.
        self.deferred: list[tuple[int, str, str, str]] | None = None

    def commit(self) -> None:
        if self.pending is not None:
            self.committed = self.pending
        self.pending = None

    def forget(self) -> None:
        self.committed = None
        self.pending = None
        self.deferred = None

    def defer(self) -> None:
        """From now until ``flush``, hold the audit rows back (the caller owns the
        transaction, and nothing in it reads the log before its COMMIT)."""
        self.deferred = []

    def flush(self, con: duckdb.DuckDBPyConnection) -> None:
        """Insert the rows held back, in chain order, with one statement."""
        rows, self.deferred = self.deferred, None
        if rows:
            con.execute(
                "INSERT INTO audit_log VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(rows)),
                [value for row in rows for value in row],
            )


@dataclass
class Unit:
    """One operation's context: ``actor`` acts as ``role`` on ``con``. Not thread-safe."""

    con: duckdb.DuckDBPyConnection
    settings: Settings
    workspace: Workspace
    actor: User
    #: The role the actor acts in for this operation (audited with each event it writes).
    role: str
    keys: KeyRing
    clock: Clock = system_clock
    head: HeadCache = field(default_factory=HeadCache)
    #: The caller already owns an open transaction (a group commit): ``transaction()``
    #: neither begins nor commits.
    in_transaction: bool = False
    #: The operation reads on its own connection beside the service's writer (the
    #: service's read path): a bulk read then keeps to one core, leaving the others to
    #: the reviewers' decisions.
    beside_writer: bool = False
    #: Whether this operation has written anything (a failed one that has not can be
    #: dropped from a group commit without undoing the others).
    wrote: bool = False
    #: The service's live queue (``live_queue.py``): the queue operations read it and stage
    #: their changes to it. None in the embedded mode, which reads the queue with SQL.
    queue_index: LiveQueue | None = None
    #: A group commit's held review rows (``group_rows.py``); None: rows are written at once.
    rows: GroupRows | None = None
    #: The oversight figures the service keeps, read under its lock at a given time
    #: (``StoreService.kept_oversight``). None in the embedded mode: the report's SQL.
    kept_oversight: Callable[[datetime], KeptFigures] | None = None
    #: The newest monitoring runs the service keeps (``monitoring_kept.py``). None in the
    #: embedded mode: read from the log.
    kept_runs: KeptRuns | None = None
    #: The service's way to let its writer go while this operation reads at length before
    #: it writes (``writer_let_go``). None in the embedded mode: nobody else is waiting.
    release_writer: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]] | None = None
    _depth: int = field(default=0, init=False, repr=False)

    @contextmanager
    def writer_let_go(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the same database for a long read before the operation writes
        (a backup's copy): in the service, a cursor of its own, while the writer serves the
        other operations (reviewers never wait for it); embedded, this unit's own. Reads
        there see a snapshot of their own transaction. Never inside a transaction."""
        if self._depth or self.in_transaction:
            raise StoreError("internal: the writer cannot be let go inside a transaction")
        if self.release_writer is None:
            yield self.con
            return
        with self.release_writer() as con:
            yield con

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The change and its audit rows commit together or not at all. Nested use (an
        operation calling another) and a caller-owned transaction join the open one."""
        if self.in_transaction or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        import duckdb

        try:
            self.con.execute("BEGIN TRANSACTION")
        except duckdb.Error as e:
            raise StoreError(f"cannot start a transaction: {type(e).__name__}") from e
        self._depth = 1
        try:
            yield
            self.con.execute("COMMIT")
            self.head.commit()
        except HiltError:
            self._rollback()
            raise
        except duckdb.Error as e:
            self._rollback()
            raise StoreError(f"the store rejected the write ({type(e).__name__}): {e}") from e
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0

    def queue_caught_up(self) -> None:
        """Apply what this operation staged in the service's live queue so far, before its
        transaction commits: the rest of the operation reads the queue as the transaction
        stands (as the next operation of a group commit does). Only after a write: should
        the transaction then not commit, the service builds the queue again, as after any
        failed operation that wrote (``StoreService``)."""
        if self.queue_index is not None and self.wrote:
            self.queue_index.apply(self.con)

    def _rollback(self) -> None:
        self.head.forget()
        self.con.execute("ROLLBACK")

    def insert_row(self, table: str, row: dict[str, Any]) -> None:
        """Insert ``row`` (column → value) into ``table``: at once, or held by the group
        commit for its one INSERT per table (``group_rows.py``)."""
        if self.rows is not None:
            self.rows.insert(table, row)
            return
        self.con.execute(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(['?'] * len(row))})",
            list(row.values()),
        )

    def delete_rows(self, table: str, where: dict[str, Any]) -> None:
        """Delete the rows of ``table`` where any of ``where``'s columns has its value: at
        once, or held by the group commit (``group_rows.py``)."""
        if self.rows is not None:
            self.rows.delete(table, where)
            return
        clause = " OR ".join(f"{column} = ?" for column in where)
        self.con.execute(f"DELETE FROM {table} WHERE {clause}", list(where.values()))

    def head_now(self) -> tuple[int, str]:
        """(seq, hash) of the log's last event, including one written in this transaction."""
        known = self.head.pending or self.head.committed
        if known is not None:
            return known
        row = sql.one(
            self.con,
            "SELECT seq, hash FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)",
        )
        found = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
        self.head.committed = found
        return found

    def next_seq(self) -> int:
        """The seq the next audit event will get (inside the writing transaction)."""
        return self.head_now()[0] + 1

    def append_audit(
        self,
        action: str,
        object_type: str,
        object_id: str,
        payload: dict[str, Any],
        now: datetime,
        expect_seq: int | None = None,
        *,
        role: str | None = None,
    ) -> int:
        """Chain one event onto the log, as this unit's actor and role (or ``role``). Call
        it inside the change's ``transaction()``; returns the event's seq. When nobody proved
        who the actor is (``User.unproven``), the payload says so (``UNPROVEN_KEY``)."""
        if self.actor.unproven is not None:
            payload = {**payload, UNPROVEN_KEY: self.actor.unproven}
        last_seq, prev = self.head_now()
        seq = last_seq + 1
        if expect_seq is not None and seq != expect_seq:
            raise StoreError("the audit log moved during a write; nothing was written")
        entry = AuditEntry(
            seq=seq,
            ts=utc_timestamp(now),
            actor=self.actor.name,
            role=role or self.role,
            action=action,
            object_type=object_type,
            object_id=object_id,
            payload=payload,
        ).canonical()
        digest = chain_hash(prev, entry)
        self.wrote = True
        if self.head.deferred is not None:
            self.head.deferred.append((seq, entry, prev, digest))
        else:
            self.con.execute(
                "INSERT INTO audit_log VALUES (?, ?, ?, ?)", [seq, entry, prev, digest]
            )
        self.head.pending = (seq, digest)
        return seq
