"""The store's façade: check the caller's role, then run the operation in a unit of work.

Both modes run exactly this: the embedded mode opens a short-lived connection under a
cross-process lock for each call; the service keeps one connection and one ``StoreCore`` per
request. Roles are enforced here, inside the store, so they hold in both modes whatever a
client sends. Every DuckDB error an operation raises, reads included, leaves as the
project's own ``StoreError``. With a ``ConfigWatch``, every operation acts on the settings
in force and is refused while hilt.toml differs from them (``config_watch.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import PermissionDeniedError, StoreError
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.group_rows import GroupRows
from hilt.pipelines.store.live_queue import LiveQueue
from hilt.pipelines.store.monitoring_kept import KeptRuns
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.store.oversight_tally import KeptFigures
from hilt.pipelines.store.permissions import Permission
from hilt.pipelines.store.sql import describe
from hilt.pipelines.store.subject_keys import KeyRing
from hilt.pipelines.store.unit import Clock, HeadCache, Unit, system_clock
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace

R = TypeVar("R")


class StoreCore:
    """Operations on ``con`` for ``actor``. Not thread-safe; one per connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: Settings,
        workspace: Workspace,
        actor: User,
        keys: KeyRing,
        clock: Clock = system_clock,
        head: HeadCache | None = None,
        in_transaction: bool = False,
        config: ConfigWatch | None = None,
        beside_writer: bool = False,
        queue_index: LiveQueue | None = None,
        rows: GroupRows | None = None,
        kept_oversight: Callable[[datetime], KeptFigures] | None = None,
        kept_runs: KeptRuns | None = None,
        release_writer: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
        | None = None,
    ) -> None:
        self.con = con
        self.settings = settings
        self.workspace = workspace
        self.actor = actor
        self.keys = keys
        self.clock = clock
        self.head = head or HeadCache()
        #: Part of a group commit: the caller owns the transaction (see the service).
        self.in_transaction = in_transaction
        #: Whether the last operation wrote anything (a refused decision that wrote
        #: nothing can be left out of its group without undoing the others).
        self.wrote = False
        #: The config in force and the file compared with it (None: not checked).
        self.config = config
        #: On a read connection beside the service's writer (see ``Unit.beside_writer``).
        self.beside_writer = beside_writer
        #: The service's live queue (None: the queue is read with SQL).
        self.queue_index = queue_index
        #: A group commit's held review rows (None: written at once).
        self.rows = rows
        #: The oversight figures the service keeps (see ``Unit.kept_oversight``).
        self.kept_oversight = kept_oversight
        #: The newest monitoring runs the service keeps (see ``Unit.kept_runs``).
        self.kept_runs = kept_runs
        #: The service's way to let its writer go meanwhile (see ``Unit.writer_let_go``).
        self.release_writer = release_writer

    def role_for(self, permission: Permission) -> str:
        """The actor's first role that ``permission`` allows (PermissionDeniedError if none)."""
        return role_for(self.actor, permission)

    def unit(self, role: str) -> Unit:
        return Unit(
            con=self.con,
            settings=self.settings,
            workspace=self.workspace,
            actor=self.actor,
            role=role,
            keys=self.keys,
            clock=self.clock,
            head=self.head,
            in_transaction=self.in_transaction,
            beside_writer=self.beside_writer,
            queue_index=self.queue_index,
            rows=self.rows,
            kept_oversight=self.kept_oversight,
            kept_runs=self.kept_runs,
            release_writer=self.release_writer,
        )

    def call(self, operation: Operation[Any, R], arguments: dict[str, Any]) -> R:
        """Run ``operation`` as the actor, after checking its permission."""
        unit = self.unit(self.role_for(operation.permission))
        try:
            if self.config is not None:
                unit.settings = self.settings = self.config.admit(self.con, operation.despite_drift)
            result = operation.run(unit, arguments)
            if self.config is not None and operation.changes_config:
                self.config.refresh(self.con)
            return result
        except duckdb.Error as e:
            raise StoreError(f"the store failed ({describe(e)})") from e
        finally:
            self.wrote = unit.wrote


def role_for(actor: User, permission: Permission) -> str:
    """``actor``'s first role that ``permission`` allows (PermissionDeniedError if none)."""
    for role in actor.roles:
        if role in permission.roles:
            return role
    raise PermissionDeniedError(
        f"user {actor.name!r} (roles: {', '.join(actor.roles) or 'none'}) may not {permission.what}"
    )
