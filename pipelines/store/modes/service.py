"""The service mode's owning process: one connection to the DuckDB file, one lock around
it, the audit head, the live review queue, the identities it authenticated, and the group
committer of the review path (``StoreService``). It runs the very same ``StoreCore``
operations as the embedded mode; ``service_http.py`` serves it over HTTP.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import AuthenticationError, HiltError
from hilt.pipelines.store.authentication import (
    authenticate,
    demo_session_user,
    lookup_user,
    token_hash,
    token_id,
)
from hilt.pipelines.store.case_records import Decision, DecisionRequest
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.core import StoreCore
from hilt.pipelines.store.group_rows import GroupRows, held_connection
from hilt.pipelines.store.live_queue import LiveQueue
from hilt.pipelines.store.monitoring_kept import KeptRuns
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.oversight_tally import KeptFigures
from hilt.pipelines.store.unit import Clock, HeadCache, Unit, system_clock
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace

log = logging.getLogger("hilt.store.service")
#: Who the service itself is in the log, for the work it does on its own (start-up).
SERVICE_USER = User(name="hilt-store", roles=["system"])
T = TypeVar("T")
#: An operation waiting for the group committer: who asks, what, with which arguments, and
#: the future its caller waits on.
Queued = tuple[User, Operation[Any, Any], dict[str, Any], Future[Any]]

#: DuckDB threads for bulk operations in the owning process (see StoreService.run_bulk).
BULK_THREADS = max(1, os.cpu_count() or 1)


class StoreService:
    """The owning process's state: one connection, one lock around it, the audit head, and
    a group committer for the review path (leases and decisions).

    Group commit: the operations marked ``group_commit`` (a lease, a decision) that arrive
    while one is being written wait in a queue; the writer takes them all and runs them in
    one transaction, each with its own chained audit row, and acknowledges none before the
    COMMIT. One commit's cost is shared, which is what lets one process take a burst of
    reviewers. Each operation's changes to the live queue are applied as soon as it has
    run (the next one in the group sees them, as it sees its rows in the transaction); an
    operation refused before it wrote anything is simply left out of its group; should
    anything fail after writing, the whole group is rolled back, the live queue is built
    again from the database, and each operation is retried on its own.
    """

    MAX_GROUP = 64

    def __init__(
        self,
        workspace: Workspace,
        settings: Settings,
        con: duckdb.DuckDBPyConnection,
        clock: Clock = system_clock,
        config: ConfigWatch | None = None,
    ) -> None:
        self.workspace = workspace
        self._settings = settings
        #: The config in force, and hilt.toml compared with it at each request.
        self.config = config
        self.con = con
        self.clock = clock
        self.mutex = threading.Lock()
        self.head = HeadCache()
        self._queue: queue.SimpleQueue[Queued] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_started = threading.Lock()
        #: token hash → (owner, expires at); user name → user. See ``authenticate``.
        self._tokens: dict[str, tuple[User, datetime]] = {}
        self._users: dict[str, User] = {}
        #: demo session sha256 → the user it was issued for (``demo_session``).
        self._sessions: dict[str, str] = {}
        #: The master key and subject keys, opened once for the life of the service.
        self.keys = workspace.key_ring()
        #: Per worker thread: a read connection (a cursor on the same database) and its own
        #: key ring, for the operations that only read (``read``).
        self._reader = threading.local()
        #: The live review queue (``live_queue.py``), built on first use under the lock.
        self.queue_index = LiveQueue()
        #: The newest monitoring runs (``monitoring_kept.py``), caught up at each read.
        self.kept_runs = KeptRuns()
        #: Group commit so far: groups committed, decision requests in them, the largest
        #: group (counts only; ``/health`` shows them).
        self.group_stats = {"groups": 0, "requests": 0, "largest": 0}

    @property
    def settings(self) -> Settings:
        """The settings in force (read again after each change of the config)."""
        return self.config.settings if self.config is not None else self._settings

    def core(self, actor: User, *, in_group: GroupRows | None = None) -> StoreCore:
        """A core on the writer's connection, with the live queue (call under the lock);
        ``in_group``: inside a group commit, which holds these rows back."""
        con = self.con if in_group is None else held_connection(self.con, in_group)
        if not self.queue_index.loaded:
            self.queue_index.load(con, self.settings)
        return StoreCore(
            con,
            self.settings,
            self.workspace,
            actor,
            self.keys,
            self.clock,
            head=self.head,
            in_transaction=in_group is not None,
            config=self.config,
            queue_index=self.queue_index,
            rows=in_group,
            # Not inside a group: its events are not committed yet.
            kept_runs=self.kept_runs if in_group is None else None,
            release_writer=self._writer_released if in_group is None else None,
        )

    @contextmanager
    def _writer_released(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """``Unit.writer_let_go`` here: a cursor of its own for the operation that holds the
        lock, which lets the lock go meanwhile (other operations, reviewers' among them, run
        on the writer) and takes it back before the operation goes on. DuckDB keeps to one
        thread meanwhile (the setting is the database's): the interactive operations stay
        as fast as they are without the long read."""
        cursor = self.con.cursor()
        self.con.execute("SET threads = 1")
        self.mutex.release()
        try:
            yield cursor
        finally:
            self.mutex.acquire()
            cursor.close()

    def _call(self, actor: User, operation: Operation[Any, T], arguments: dict[str, Any]) -> T:
        """Run an operation on the writer (under the lock) and bring the live queue up to
        date: what it staged once it committed; the whole queue again after an operation
        that changes many cases, or one that failed after writing."""
        core = self.core(actor)
        try:
            result = core.call(operation, arguments)
        except BaseException:
            self._after_failure(core.wrote)
            raise
        if operation.changes_queue:
            self.queue_index.load(self.con, self.settings)
        else:
            self.queue_index.apply(self.con)
            if not operation.group_commit:
                # Only the review path keeps the rows read ahead up to date itself; any
                # other write may have touched them, even one not marked changes_queue.
                self.queue_index.forget_case_rows()
        return result

    def _after_failure(self, wrote: bool) -> None:
        if wrote:
            self.queue_index.loaded = False  # built again before the next use
        else:
            self.queue_index.discard()

    def run(self, actor: User, operation: Operation[Any, T], arguments: dict[str, Any]) -> T:
        with self.mutex:
            try:
                return self._call(actor, operation, arguments)
            finally:
                if operation.changes_identities:
                    self.forget_identities()

    def run_bulk(self, actor: User, operation: Operation[Any, T], arguments: dict[str, Any]) -> T:
        """Like ``run``, with DuckDB on every core. The owning process otherwise keeps DuckDB
        to one thread: the interactive operations (lease, decide, queue status) are small
        queries that two threads make slower, not faster (measured: the review round trip
        22 % faster in process), while the bulk ones (ingest, snapshots, verify, erasure,
        retention, reports) scan whole tables."""
        with self.mutex:
            self.con.execute(f"SET threads = {BULK_THREADS}")
            try:
                return self._call(actor, operation, arguments)
            finally:
                self.con.execute("SET threads = 1")
                if operation.changes_identities:
                    self.forget_identities()

    def read(self, actor: User, operation: Operation[Any, T], arguments: dict[str, Any]) -> T:
        """Run an operation that only reads on this thread's own read connection, without
        the lock: an auditor's verify or a report never makes a reviewer wait (DuckDB reads
        a consistent snapshot while the writer commits)."""
        reader = self._reader
        if getattr(reader, "con", None) is None:
            reader.con = self.con.cursor()
            reader.keys = self.workspace.key_ring()
        core = StoreCore(
            reader.con,
            self.settings,
            self.workspace,
            actor,
            reader.keys,
            self.clock,
            config=self.config,
            beside_writer=True,
            kept_oversight=self.kept_oversight,
            kept_runs=self.kept_runs,
        )
        return core.call(operation, arguments)

    @contextmanager
    def _threads(self, n: int) -> Iterator[None]:
        """DuckDB on ``n`` threads meanwhile (call under the lock; see ``run_bulk``)."""
        if n != 1:
            self.con.execute(f"SET threads = {n}")
        try:
            yield
        finally:
            if n != 1:
                self.con.execute("SET threads = 1")

    def warm(self) -> None:
        """Build the live queue, the oversight figures, the filter of the decisions' request
        ids and the newest monitoring runs before the first request that needs them (``hilt
        store serve`` runs it in a thread of its own at start). A failure is logged: they
        are built on first use then."""
        try:
            with self.mutex, self._threads(BULK_THREADS):
                if not self.queue_index.loaded:
                    self.queue_index.load(self.con, self.settings)
                self.queue_index.tally.ready(self.con)
                self.queue_index.request_ids.ensure(self.con)
                self.kept_runs.newest(self.con, 1)
        except Exception:
            log.exception("building the live queue at start failed; it is built on first use")

    def kept_oversight(self, now: datetime) -> KeptFigures:
        """The oversight report's figures this process keeps (the live queue and the
        decisions' tally, ``oversight_tally.py``), at ``now``, read under the lock: every
        committed operation is in them, none half."""
        with self.mutex:
            index = self.queue_index
            if not index.loaded:
                index.load(self.con, self.settings)
            window = self.settings.oversight.window_days
            with self._threads(BULK_THREADS if index.tally.due else 1):
                reviewers, reasons, today, total = index.tally.figures(self.con, now, window)
            waiting, leased, oldest, second, manual = index.queue_figures(now)
            return KeptFigures(
                waiting=waiting,
                leased=leased,
                oldest_waiting_at=oldest,
                awaiting_second_review=second,
                manual_waiting=manual,
                done_today=today,
                done_total=total,
                adjudicated=index.tally.adjudicated,
                gold_cases=len(index.tally.gold),
                reviewers=reviewers,
                reasons=reasons,
            )

    def run_system(self, task: Callable[[Unit], T]) -> T:
        """Run a task of the service itself (start-up), as its own system user."""
        with self.mutex:
            try:
                return task(self.core(SERVICE_USER).unit("system"))
            finally:
                self.queue_index.loaded = False  # it may have changed any case

    def submit(
        self, actor: User, operation: Operation[Any, T], arguments: dict[str, Any]
    ) -> Future[T]:
        """Queue an operation for the group committer; the future resolves after its
        COMMIT (or with its refusal)."""
        with self._writer_started:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_groups, name="hilt-group-commit", daemon=True
                )
                self._writer.start()
        done: Future[T] = Future()
        self._queue.put((actor, operation, arguments, done))
        return done

    def submit_decision(self, actor: User, request: DecisionRequest) -> Future[Decision]:
        """Queue a decision for the group committer; the future resolves after its COMMIT."""
        return self.submit(actor, Store.record_decision, {"request": request})

    def record_decision(self, actor: User, request: DecisionRequest) -> Decision:
        return self.submit_decision(actor, request).result()

    def _write_groups(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self.MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self.mutex:
                self._commit_group(group)

    def _commit_group(self, group: list[Queued]) -> None:
        """Run the group's operations in one transaction (call under the lock)."""
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        index = self.queue_index
        # The group's decision and lease rows: one statement per table before the COMMIT.
        rows = GroupRows(self.con)
        try:
            self.con.execute("BEGIN TRANSACTION")
            self.head.defer()  # the group's audit rows: one INSERT before the COMMIT
            for actor, operation, arguments, done in group:
                core = self.core(actor, in_group=rows)
                try:
                    result = core.call(operation, arguments)
                except HiltError as e:
                    if core.wrote or rows.failed is not None:
                        raise
                    index.discard()
                    outcomes.append((done, None, e))
                    continue
                # What it changed in the live queue, at once: the next operation of the
                # group reads the queue as the transaction stands (the whole index is
                # built again should the group roll back).
                index.apply(held_connection(self.con, rows))
                if rows.failed is not None:
                    raise rows.failed
                outcomes.append((done, result, None))
            rows.flush()
            self.head.flush(self.con)
            self.con.execute("COMMIT")
            self.head.commit()
            stats = self.group_stats
            stats["groups"] += 1
            stats["requests"] += len(group)
            stats["largest"] = max(stats["largest"], len(group))
        except BaseException:
            self.head.forget()
            index.discard()
            index.loaded = False  # it may hold what the rollback undid
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                log.warning("rollback of a group commit failed")
            for actor, operation, arguments, done in group:  # each in its own transaction
                try:
                    # Under the mutex already: run directly, in its own transaction.
                    done.set_result(self._call(actor, operation, arguments))
                except BaseException as e:
                    done.set_exception(e)
            return
        for done, result, error in outcomes:
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

    def authenticate(self, token: str) -> User:
        """The token's owner (AuthenticationError saying why not, logged with the token's
        id only). Cached with the token's expiry, which every use checks: only this process
        changes users and tokens, and it forgets the cache, under the same lock as the
        change, whenever it does (``forget_identities``), so a revocation, a disabled user
        or a changed role counts from the next request on."""
        known = self.known_token(token)
        if known is not None:
            return known
        hashed = token_hash(token)
        with self.mutex:
            try:
                user, expires = authenticate(self.con, token, self.clock())
            except AuthenticationError as e:
                log.warning("refused a token (id %s): %s", token_id(hashed), e)
                raise
            self._tokens[hashed] = (user, expires)
        return user

    def known_token(self, token: str) -> User | None:
        """The owner of a cached token that has not expired (None: ask the store)."""
        known = self._tokens.get(token_hash(token))
        if known is None or known[1] <= self.clock():
            return None
        return known[0]

    def demo_session(self, session: str) -> str:
        """The user a demo session was issued for (``authentication.demo_session_user``),
        cached with its sha256; the sessions expire long after the service is restarted
        for anything else, so the cache is kept for the life of the service."""
        with self.mutex:
            name = demo_session_user(self.con, session, self.clock())
            self._sessions[token_hash(session)] = name
        return name

    def known_session(self, session: str) -> str | None:
        return self._sessions.get(token_hash(session))

    def known_user(self, name: str) -> User | None:
        return self._users.get(name)

    def lookup(self, name: str) -> User:
        known = self._users.get(name)
        if known is not None:
            return known
        with self.mutex:
            user = lookup_user(self.con, name)
            self._users[name] = user
        return user

    def forget_identities(self) -> None:
        self._tokens.clear()
        self._users.clear()
