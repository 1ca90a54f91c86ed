"""Human approval of a challenger (promotion.promote): who may approve, what must hold, and
that a refusal changes nothing. Real MLflow (sqlite) and a real DuckDB workspace; the
retraining steps run in-process (the notebook runs are tested in tests/notebooks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hilt.pipelines.loop.promotion import PromotionRefused, promote
from hilt.pipelines.loop.tracking.registry import aliases, champion_version
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import operator
from tests.loop_helpers import loop_workspace, train_in_process


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = loop_workspace(tmp_path_factory.mktemp("promotion"))
    # max is a lead who also trains models (data scientist): the four-eyes rule must hold
    # for such a person too.
    operator(ws).add_user("max", "data-scientist")
    return ws


def audit_head(ws: Workspace) -> int:
    return operator(ws).audit_head().seq


def test_the_promotion_rules(ws: Workspace) -> None:
    settings = ws.settings()
    first = train_in_process(ws, "max")
    assert first.gate_passed and first.challenger and first.version == "1"
    assert aliases(settings) == {"challenger": "1"}
    head = audit_head(ws)

    # The author may not approve their own run, even holding the lead role.
    with pytest.raises(PromotionRefused, match="trained run"):
        promote(ws, first.run_id, "max")
    # A reviewer, a data scientist, an auditor: not leads.
    for who in ("alice", "dana", "otto"):
        with pytest.raises(PromotionRefused, match="lead role"):
            promote(ws, first.run_id, who)
    with pytest.raises(PromotionRefused, match="not a user"):
        promote(ws, first.run_id, "mallory")
    with pytest.raises(PromotionRefused, match="no MLflow run"):
        promote(ws, "0" * 32, "lena")
    # Refusals change nothing and audit nothing.
    assert aliases(settings) == {"challenger": "1"}
    assert audit_head(ws) == head

    done = promote(ws, first.run_id, "lena")
    assert (done.version, done.previous_version, done.approver, done.author) == (
        "1",
        None,
        "lena",
        "max",
    )
    assert aliases(settings) == {"champion": "1"}
    event = operator(ws).audit_events(after_seq=done.audit_seq - 1, limit=1)[0]
    assert (event.action, event.actor, event.role) == ("model.promoted", "lena", "lead")
    assert event.payload == {
        "run_id": first.run_id,
        "version": "1",
        "previous_version": None,
        "model_sha256": first.model_sha256,
        "author": "max",
        "approver": "lena",
    }
    # Promoted once: it is no longer the challenger.
    with pytest.raises(PromotionRefused, match="not the current challenger"):
        promote(ws, first.run_id, "lena")

    # A second challenger, then a rejected one (label noise): the rejected run cannot be
    # promoted, the champion stays, and the pending challenger keeps its alias.
    second = train_in_process(ws, "dana", seed=1)
    assert second.gate_passed and second.version == "2"
    noisy = train_in_process(ws, "dana", label_noise=0.4)
    assert not noisy.gate_passed and not noisy.challenger and noisy.version == "3"
    assert noisy.restored_challenger == "2"
    assert aliases(settings) == {"champion": "1", "challenger": "2"}
    with pytest.raises(PromotionRefused, match="did not pass the gate"):
        promote(ws, noisy.run_id, "max")
    assert aliases(settings) == {"champion": "1", "challenger": "2"}

    done = promote(ws, second.run_id, "max")  # max did not train this one
    assert (done.version, done.previous_version) == ("2", "1")
    assert aliases(settings) == {"champion": "2"}


def test_the_oversight_dashboard_passes_its_own_store(ws: Workspace, tmp_path: Path) -> None:
    run = train_in_process(ws, "dana", seed=7)
    assert run.challenger
    lena = open_store_as(ws, Identity(name="lena"))
    with pytest.raises(PromotionRefused, match="acts as 'lena'"):
        promote(ws, run.run_id, "max", store=lena)
    done = promote(ws, run.run_id, "lena", store=lena)
    assert done.approver == "lena"
    assert champion_version(ws.settings()) == done.version
