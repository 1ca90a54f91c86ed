"""The embedded store's fixed cost, and that cutting it weakens nothing (issue 13).

An opening of an unchanged file (same committed state, read under the lock) is answered
from what this process read before, without starting DuckDB; any write to the file, by this
process or another, makes the next opening read it again. ``holding`` keeps one connection
under the lock for a loop of operations, each still its own transaction with every check.
Real workspaces, real DuckDB files; the only stand-in is a counter around ``connect``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest

from hilt.pipelines.errors import (
    AuthenticationError,
    ConfigDrift,
    ConflictError,
    StoreBusyError,
)
from hilt.pipelines.store import Identity, holding, open_store_as
from hilt.pipelines.store.case_records import DecisionRequest
from hilt.pipelines.store.modes import embedded, locking
from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of, issue_tokens, leased, operator, start_service


@pytest.fixture
def ws(tmp_path: Path, loaded_template: Workspace) -> Workspace:
    return copy_of(loaded_template, tmp_path / "ws")


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the embedded mode starts DuckDB on (the real ``connect``, counted)."""
    seen: list[Path] = []
    real = embedded.connect

    def counted(workspace: Workspace, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        seen.append(workspace.db_path)
        return real(workspace, read_only=read_only)

    monkeypatch.setattr(embedded, "connect", counted)
    return seen


def test_an_unchanged_file_is_opened_once_and_every_change_is_seen_at_once(
    ws: Workspace, connects: list[Path]
) -> None:
    alice = open_store_as(ws, Identity(name="alice"))
    assert len(connects) == 1
    again = open_store_as(ws, Identity(name="alice"))
    assert len(connects) == 1  # the same unchanged file: nothing new to read
    assert again.whoami().roles == ["reviewer"]
    # A write by this process that changes no user and not the config in force (a lease
    # and its audit event): what the opening read still holds.
    alice.next_case()
    connects.clear()
    open_store_as(ws, Identity(name="alice"))
    assert connects == []
    # The attack: alice is disabled, then opens the store again; and a store she opened
    # before may not act either (each operation looks her up in its own connection).
    operator(ws).disable_user("alice")
    with pytest.raises(AuthenticationError, match="disabled"):
        open_store_as(ws, Identity(name="alice"))
    with pytest.raises(AuthenticationError, match="disabled"):
        again.queue_status()


def test_a_change_by_another_writer_is_seen_by_the_next_opening(ws: Workspace) -> None:
    assert open_store_as(ws, Identity(name="alice")).whoami().roles == ["reviewer"]
    # Another process writes the file directly (not through hilt): alice loses her role.
    con = duckdb.connect(str(ws.db_path))
    try:
        con.execute("UPDATE users SET roles = ['auditor'] WHERE name = 'alice'")
    finally:
        con.close()
    assert open_store_as(ws, Identity(name="alice")).whoami().roles == ["auditor"]


def test_an_edit_of_hilt_toml_is_refused_at_an_opening_answered_from_before(
    ws: Workspace, connects: list[Path]
) -> None:
    open_store_as(ws, Identity(name="alice"))
    ws.config_path.write_text(
        ws.config_path.read_text().replace("hilt", "hilt ", 1), encoding="utf-8"
    )
    connects.clear()
    with pytest.raises(ConfigDrift, match="hilt config apply"):
        open_store_as(ws, Identity(name="alice"))
    assert connects == []  # refused on what it knew, the file compared as ever


def test_holding_runs_a_loop_on_one_connection_with_every_check(
    ws: Workspace, connects: list[Path]
) -> None:
    alice = open_store_as(ws, Identity(name="alice"))
    bob = open_store_as(ws, Identity(name="bob"))
    head = operator(ws).audit_head()
    connects.clear()
    decided = []
    with holding(ws):
        # Nobody else takes the store meanwhile.
        with (
            pytest.raises(StoreBusyError),
            locking.exclusive(ws.lock_path, ws.service_file, timeout_s=0.05),
        ):
            pass
        for _ in range(5):
            leased = alice.next_case()
            assert leased is not None
            alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
            decided.append(leased.case.case_id)
        # Each operation is checked and is its own transaction: bob may not decide a case
        # alice holds, and his refusal writes nothing while hers still land.
        held = alice.next_case()
        assert held is not None
        before = operator(ws).audit_head()
        with pytest.raises(ConflictError):
            bob.record_decision(DecisionRequest(case_id=held.case.case_id, action="accept"))
        assert operator(ws).audit_head() == before
        alice.record_decision(DecisionRequest(case_id=held.case.case_id, action="accept"))
        # The same file named another way (a link to the folder) is the same held file.
        (ws.root.parent / "link").symlink_to(ws.root)
        otto = open_store_as(Workspace(ws.root.parent / "link"), Identity(name="otto"))
        assert otto.queue_status().waiting >= 0
        # Removed from the store meanwhile: the next operation sees it.
        operator(ws).disable_user("bob")
        with pytest.raises(AuthenticationError, match="disabled"):
            bob.queue_status()
    assert connects == [ws.db_path]  # one connection for the whole loop
    with locking.exclusive(ws.lock_path, ws.service_file, timeout_s=1):
        pass  # let go at the end of the block
    otto = open_store_as(ws, Identity(name="otto"))
    assert otto.verify().ok
    assert otto.audit_head().seq > head.seq + 2 * len(decided)
    assert {d.case_id for d in otto.decisions() if d.case_id in decided} == set(decided)


def test_a_stopped_service_ends_at_once_with_everything_it_acknowledged_on_disk(
    ws: Workspace,
) -> None:
    """`hilt store serve` skips the interpreter's teardown after a clean stop (SIGTERM):
    only once its database is closed, its lock released and its service file removed."""
    tokens = issue_tokens(ws, ws.settings())
    svc = start_service(ws)
    try:
        alice = open_store_as(svc.url, Identity(token=tokens["alice"]))
        case = leased(alice)
        alice.record_decision(DecisionRequest(case_id=case, action="accept"))
        alice.close()
    finally:
        svc.stop()
    assert svc.process.returncode == 0
    assert not ws.service_file.exists()
    with locking.exclusive(ws.lock_path, ws.service_file, timeout_s=0):
        pass
    otto = open_store_as(ws, Identity(name="otto"))
    assert [d.case_id for d in otto.decisions()] == [case]
    assert otto.verify().ok


@pytest.mark.parametrize("waits_in", ["opening", "operation"])
def test_a_thread_waiting_for_the_lock_when_a_block_begins_joins_the_block(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, waits_in: str
) -> None:
    """Another thread of this process that was already waiting for the store's lock when a
    ``holding`` block took it uses the block's connection, rather than waiting for the
    block to end (which, when the block waits for that thread, was never: it failed after
    30 s with "held by another process")."""
    alice = open_store_as(ws, Identity(name="alice"))
    parked, block_began = threading.Event(), threading.Event()
    answers: list[int] = []
    real_sleep = time.sleep

    def waiter() -> None:
        store = open_store_as(ws, Identity(name="bob")) if waits_in == "opening" else alice
        answers.append(store.queue_status().waiting)

    thread = threading.Thread(target=waiter, daemon=True)

    def sleep(seconds: float) -> None:
        # The waiter's first wait for the lock is held until the block has begun, so that
        # the block takes the lock while the waiter is inside its wait.
        if threading.current_thread() is thread and not block_began.is_set():
            parked.set()
            block_began.wait(10)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)  # the module locking waits with
    with locking.exclusive(ws.lock_path, ws.service_file, timeout_s=5):
        thread.start()
        assert parked.wait(10), "the waiter never waited for the lock"
    with holding(ws):
        block_began.set()
        thread.join(10)
        assert not thread.is_alive(), "the waiter still waits for the block's lock"
        assert answers and answers[0] > 0
