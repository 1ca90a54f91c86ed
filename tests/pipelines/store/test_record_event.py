"""Run events reported by callers (``Store.record_event``), in both modes; events that carry
authority (model.*, system.*, ...) are refused: only the store's own operations write them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hilt.pipelines.errors import InputError, PermissionDeniedError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import RunningService, copy_of, start_service, stores_of

StoreFactory = Callable[[str], Store]


@pytest.fixture(scope="module")
def shared_service(
    tmp_path_factory: pytest.TempPathFactory,
    served_template: tuple[Workspace, dict[str, str]],
) -> Iterator[RunningService]:
    """One store service for the module's service-mode tests: each compares only with the
    audit head it read first (what it wrote after that, never what the store held before),
    so the events an earlier test left change nothing a later one asserts."""
    template, tokens = served_template
    svc = start_service(copy_of(template, tmp_path_factory.mktemp("record-event") / "ws"))
    svc.tokens = tokens
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(params=["embedded", "service"])
def store_as(
    request: pytest.FixtureRequest, tmp_path: Path, loaded_template: Workspace
) -> Iterator[StoreFactory]:
    """The store in either mode (``store_as("dana")`` acts as dana): embedded, a copy of the
    session's loaded workspace for this test alone; service, the module's ``shared_service``."""
    if request.param == "embedded":
        ws = copy_of(loaded_template, tmp_path / "ws")
        yield lambda name: open_store_as(ws, Identity(name=name))
        return
    svc: RunningService = request.getfixturevalue("shared_service")
    with stores_of(svc.url, svc.tokens) as factory:
        yield factory


def test_run_events_are_chained_with_the_callers_role(store_as: StoreFactory) -> None:
    dana, max_ = store_as("dana"), store_as("max")
    seq = dana.record_event("run.started", "run", "abc123", {"kind": "retrain", "n": 3})
    finished = max_.record_event("run.finished", "run", "abc123", {})
    assert finished == seq + 1
    events = store_as("otto").audit_events(after_seq=seq - 1, limit=10)
    first, second = events[0], events[1]
    assert (first.seq, first.action, first.actor, first.role) == (
        seq,
        "run.started",
        "dana",
        "data-scientist",
    )
    assert (first.object_type, first.object_id, first.payload) == (
        "run",
        "abc123",
        {"kind": "retrain", "n": 3},
    )
    assert (second.actor, second.role, second.action) == ("max", "lead", "run.finished")
    assert second.prev_hash == first.hash
    assert store_as("otto").verify().ok


def test_only_run_events_by_allowed_roles(store_as: StoreFactory) -> None:
    dana = store_as("dana")
    head = dana.audit_head()
    for who in ("alice", "otto", "pia"):
        with pytest.raises(PermissionDeniedError):
            store_as(who).record_event("run.started", "run", "x", {})
    for action in ("run", "run.", "Run.started", "x.y1", "run.a b"):
        with pytest.raises(InputError):
            dana.record_event(action, "run", "x", {})
    with pytest.raises(InputError):
        dana.record_event("run.started", "run", "two\nlines", {})
    with pytest.raises(InputError):
        dana.record_event("run.started", "", "x", {})
    with pytest.raises(InputError):
        dana.record_event("run.started", "run", "x", {"blob": "x" * 20_000})
    assert dana.audit_head() == head  # nothing was written


@pytest.mark.parametrize(
    "action", ["model.promoted", "model.trained", "retention.applied", "subject.erased"]
)
def test_an_event_that_carries_authority_is_refused_and_the_attempt_recorded(
    store_as: StoreFactory, action: str
) -> None:
    dana = store_as("dana")
    head = dana.audit_head()
    with pytest.raises(PermissionDeniedError, match="written only by the store's own operation"):
        dana.record_event(action, "model", "hilt-german-credit/v2", {"approver": "max"})
    attempt = store_as("otto").audit_events(after_seq=head.seq)
    assert [(e.action, e.actor, e.object_id, e.payload) for e in attempt] == [
        ("audit.event_refused", "dana", action, {"action": action})
    ]
    with pytest.raises(InputError):
        dana.record_event("run.started", "run", "r1", {"notebook": "../store.duckdb"})
    assert store_as("otto").verify().ok
