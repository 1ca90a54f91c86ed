"""Run and model events appended by callers (``Store.record_event``), in both modes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hilt.pipelines.errors import InputError, PermissionDeniedError
from hilt.pipelines.store import Store

StoreFactory = Callable[[str], Store]


def test_run_and_model_events_are_chained_with_the_callers_role(store_as: StoreFactory) -> None:
    dana, max_ = store_as("dana"), store_as("max")
    seq = dana.record_event("run.started", "run", "abc123", {"kind": "retrain", "n": 3})
    promoted = max_.record_event("model.promoted", "model", "hilt-german-credit/2", {})
    assert promoted == seq + 1
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
    assert (second.actor, second.role, second.action) == ("max", "lead", "model.promoted")
    assert second.prev_hash == first.hash
    assert store_as("otto").verify().ok


def test_only_run_and_model_events_by_allowed_roles(store_as: StoreFactory) -> None:
    dana = store_as("dana")
    head = dana.audit_head()
    for who in ("alice", "otto", "pia"):
        with pytest.raises(PermissionDeniedError):
            store_as(who).record_event("run.started", "run", "x", {})
    for action in ("decision.record", "snapshot.created", "run", "run.", "Run.started", "x.y"):
        with pytest.raises(InputError):
            dana.record_event(action, "run", "x", {})
    with pytest.raises(InputError):
        dana.record_event("run.started", "run", "two\nlines", {})
    with pytest.raises(InputError):
        dana.record_event("run.started", "", "x", {})
    with pytest.raises(InputError):
        dana.record_event("run.started", "run", "x", {"blob": "x" * 20_000})
    assert dana.audit_head() == head  # nothing was written
