"""Human approval of a challenger (promotion.promote): the store's model registry decides who
may approve and what must hold, a refusal changes nothing, and MLflow's aliases mirror the
store's decision. Real MLflow (sqlite) and a real DuckDB workspace; the retraining steps run
in-process (the notebook runs are tested in tests/notebooks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hilt.pipelines.loop.model_registry import champion
from hilt.pipelines.loop.promotion import PromotionRefused, promote
from hilt.pipelines.loop.tracking.registry import aliases
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


def states(ws: Workspace) -> dict[str, str]:
    """{model: state} of the store's registry."""
    return {m.model: m.state for m in operator(ws).models()}


@pytest.mark.obligation("AI Act 14", "AI Act 17")
def test_the_promotion_rules(ws: Workspace) -> None:
    settings = ws.settings()
    first = train_in_process(ws, "max")
    assert first.gate_passed and first.challenger and first.version == "1"
    v1 = "hilt-german-credit/v1"
    assert states(ws) == {v1: "challenger"}
    assert aliases(settings) == {"challenger": "1"}
    head = audit_head(ws)

    # The store refuses the author their own model, even holding the lead role.
    with pytest.raises(PromotionRefused, match=f"'max' trained {v1}; a lead who did not"):
        promote(ws, first.run_id, "max")
    # A reviewer, a data scientist, an auditor: not leads (the store's permission).
    for who in ("alice", "dana", "otto"):
        with pytest.raises(PromotionRefused, match="may not decide on models"):
            promote(ws, first.run_id, who)
    with pytest.raises(PromotionRefused, match="not a user"):
        promote(ws, first.run_id, "mallory")
    with pytest.raises(PromotionRefused, match="registered no model in this store"):
        promote(ws, "0" * 32, "lena")
    # Refusals change nothing and audit nothing, in the store or in MLflow.
    assert states(ws) == {v1: "challenger"}
    assert aliases(settings) == {"challenger": "1"}
    assert audit_head(ws) == head

    done = promote(ws, first.run_id, "lena")
    assert (done.version, done.previous_version, done.approver, done.author) == (
        "1",
        None,
        "lena",
        "max",
    )
    # The store decided (its registry, its audit row); MLflow's aliases followed.
    assert states(ws) == {v1: "champion"}
    assert aliases(settings) == {"champion": "1"}
    event = operator(ws).audit_events(after_seq=done.audit_seq - 1, limit=1)[0]
    assert (event.action, event.actor, event.role) == ("model.promoted", "lena", "lead")
    assert event.object_id == v1
    assert event.payload == {
        "run_id": first.run_id,
        "previous_champion": None,
        "model_sha256": first.model_sha256,
        "author": "max",
        "approver": "lena",
    }
    # Promoted once: it is no longer the challenger.
    with pytest.raises(PromotionRefused, match="is not the challenger \\(it is champion\\)"):
        promote(ws, first.run_id, "lena")

    # A second challenger, then a rejected one (label noise): the store's gate rejects it,
    # it cannot be promoted, the champion stays, and the pending challenger stays too.
    second = train_in_process(ws, "dana", seed=1)
    assert second.gate_passed and second.version == "2"
    noisy = train_in_process(ws, "dana", label_noise=0.4)
    assert not noisy.gate_passed and not noisy.challenger and noisy.version == "3"
    assert noisy.state == "rejected"
    assert states(ws) == {
        v1: "champion",
        "hilt-german-credit/v2": "challenger",
        "hilt-german-credit/v3": "rejected",
    }
    assert aliases(settings) == {"champion": "1", "challenger": "2"}
    with pytest.raises(PromotionRefused, match="is not the challenger \\(it is rejected\\)"):
        promote(ws, noisy.run_id, "max")
    assert aliases(settings) == {"champion": "1", "challenger": "2"}

    done = promote(ws, second.run_id, "max")  # max did not train this one
    assert (done.version, done.previous_version) == ("2", "1")
    assert states(ws)[v1] == "retired" and states(ws)["hilt-german-credit/v2"] == "champion"
    assert aliases(settings) == {"champion": "2"}


def test_the_oversight_dashboard_passes_its_own_store(ws: Workspace, tmp_path: Path) -> None:
    run = train_in_process(ws, "dana", seed=7)
    assert run.challenger
    lena = open_store_as(ws, Identity(name="lena"))
    with pytest.raises(PromotionRefused, match="acts as 'lena'"):
        promote(ws, run.run_id, "max", store=lena)
    done = promote(ws, run.run_id, "lena", store=lena)
    assert done.approver == "lena"
    current = champion(lena)
    assert current is not None and current.model == f"hilt-german-credit/v{done.version}"
    assert aliases(ws.settings())["champion"] == done.version
