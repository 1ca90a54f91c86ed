"""Oversight against real runs: the dashboard backend compares challenger and champion from
the store's model registry (and MLflow's subgroup tables) and decides through the very
functions of `hilt promote` / `hilt reject`: the store decides (four eyes), MLflow's aliases
follow; `hilt gold add` scores holdout cases with the store's champion; a retraining run
already running when a lead halts registers nothing. Real MLflow (sqlite), real DuckDB,
real papermill."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from hilt.pipelines.dashboards.oversight import StoreOversightBackend, open_oversight_backend
from hilt.pipelines.loop.model_registry import champion, find_model
from hilt.pipelines.loop.promotion import PromotionRefused, promote
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.registry import aliases, version_run_id
from hilt.pipelines.loop.tracking.runs import run_info
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal
from tests.conftest import operator
from tests.loop_helpers import events_since, hilt_forked, loop_workspace, train_in_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A champion (version 1, trained by dana, approved by lena); max is a lead who also
    trains models, so that four eyes are tested on a person who holds both roles."""
    ws = loop_workspace(tmp_path_factory.mktemp("oversight-runs"))
    operator(ws).add_user("max", "data-scientist")
    first = train_in_process(ws, "dana")
    promote(ws, first.run_id, "lena")
    return ws


def backend_for(ws: Workspace, user: str) -> StoreOversightBackend:
    access = open_oversight_backend(str(ws.root), env={"HTTP_X_FORWARDED_USER": user})
    assert isinstance(access, StoreOversightBackend), access
    return access


def test_only_leads_get_the_backend(ws: Workspace) -> None:
    for user, title in (("alice", "Not an oversight lead here"), ("mallory", "Not an oversight")):
        refusal = open_oversight_backend(str(ws.root), env={"HTTP_X_FORWARDED_USER": user})
        assert isinstance(refusal, Refusal) and refusal.title.startswith(title)
    assert backend_for(ws, "lena").lead().name == "lena"


def test_a_lead_compares_and_decides_but_not_on_their_own_run(
    ws: Workspace, tmp_path: Path
) -> None:
    settings = ws.settings()
    second = train_in_process(ws, "max", seed=1)
    assert second.challenger and second.version == "2"
    # max trained it: he sees it, but may not decide.
    mine = backend_for(ws, "max").comparison()
    assert mine is not None and mine.run_id == second.run_id
    assert not mine.can_decide and mine.why_not and "four eyes" in mine.why_not
    with pytest.raises(PromotionRefused, match="'max' trained hilt-german-credit/v2"):
        backend_for(ws, "max").approve(second.run_id)
    lena = backend_for(ws, "lena")
    c = lena.comparison()
    assert c is not None and c.can_decide
    assert (c.challenger_version, c.champion_version, c.author, c.gate) == (
        "2",
        "1",
        "max",
        "passed",
    )
    info = run_info(second.run_id)
    auc = next(m for m in c.metrics if m.name == "auc")
    assert auc.challenger == pytest.approx(info.metrics["holdout_auc"])
    champion_run = version_run_id(settings, "1")
    assert champion_run is not None
    # The champion on the same holdout, as the store recorded it with the challenger; the
    # holdout is fixed, so it is also what the champion's own run logged.
    registered = find_model(operator(ws), "hilt-german-credit/v2")
    assert registered is not None and registered.evaluation.champion_metrics is not None
    assert auc.champion == registered.evaluation.champion_metrics["auc"]
    assert auc.champion == pytest.approx(run_info(champion_run).metrics["holdout_auc"])
    # The gate's checks are the store's own.
    assert [(g.name, g.passed) for g in c.checks] == [(x.name, x.passed) for x in registered.checks]
    assert {g.name for g in c.checks} >= {"floor", "champion"}
    assert {s.attribute for s in c.subgroups} == set(settings.fields.protected)
    assert c.figure is not None and c.figure.startswith(b"\x89PNG")
    # Reject, with a reason that the audit log keeps as its hash only.
    before = operator(ws).audit_head().seq
    reason = "The age gap grew; retrain after the data fix."
    done = lena.reject(second.run_id, reason)
    assert (done.action, done.version) == ("rejected", "2")
    rejected = find_model(operator(ws), "hilt-german-credit/v2")
    assert rejected is not None and (rejected.state, rejected.decided_by) == ("rejected", "lena")
    assert aliases(settings) == {"champion": "1"}
    [event] = events_since(ws, before)
    assert (event.action, event.actor, event.object_id) == (
        "model.rejected",
        "lena",
        f"{registered_model_name(settings)}/v2",
    )
    assert event.payload["reason_sha256"] == hashlib.sha256(reason.encode()).hexdigest()
    assert "age gap" not in str(event.payload)
    assert lena.comparison() is None  # no challenger any more
    # A third run; approved on the dashboard by a lead who did not train it.
    third = train_in_process(ws, "max", seed=2)
    approved = lena.approve(third.run_id)
    assert approved.action == "approved"
    current = champion(operator(ws))
    assert current is not None and current.model == f"hilt-german-credit/v{third.version}"
    assert aliases(settings)["champion"] == third.version
    assert events_since(ws, approved.audit_seq - 1)[0].action == "model.promoted"
    # The CLI refuses the same rules (the store's).
    r = hilt_forked(
        "reject", third.run_id, "--as", "lena", "--reason", "x", "--workspace", ws.root,
        folder=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2 and "is not the challenger (it is champion)" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_gold_add_scores_holdout_cases_with_the_champion(ws: Workspace, tmp_path: Path) -> None:
    before = operator(ws).audit_head().seq
    r = hilt_forked("gold", "add", "--count", "8", "--workspace", ws.root, folder=tmp_path)
    assert r.returncode == 0, r.stderr
    gold_event = next(e for e in events_since(ws, before) if e.action == "gold.added")
    current = champion(operator(ws))
    assert current is not None
    assert gold_event.payload["model_version"] == current.model
    assert gold_event.payload["cases"] == 8
    assert operator(ws).counts()["gold_cases"] == 8
    # The champion is wrong on half of them (oversight.gold_error_share), counted anew here.
    con = duckdb.connect(str(ws.db_path), read_only=True)
    try:
        ids = [str(r[0]) for r in con.execute("SELECT case_id FROM gold_cases").fetchall()]
    finally:
        con.close()
    admin = open_store_as(ws, Identity(name="dana"))
    seed = dict(admin.case_frame(ids).select("case_id", "seed_label").iter_rows())
    wrong = sum(1 for c in ids if admin.get_case(c).predictions[-1].label != seed[c])
    assert wrong == gold_event.payload["model_wrong"] == 4
    assert f"wrong on {wrong} of them" in r.stdout
    r = hilt_forked("gold", "add", "--count", "100000", "--workspace", ws.root, folder=tmp_path)
    assert r.returncode == 2 and "can become gold cases" in r.stderr


def test_a_run_that_was_training_when_the_lead_halted_registers_nothing(
    ws: Workspace, tmp_path: Path
) -> None:
    settings = ws.settings()
    before = aliases(settings)
    registered = [m.model for m in operator(ws).models()]
    open_store_as(ws, Identity(name="lena")).halt("Investigating complaints")
    try:
        with pytest.raises(PapermillExecutionError) as caught:
            papermill.execute_notebook(
                str(NOTEBOOKS_DIR / "retrain.ipynb"),
                str(tmp_path / "retrain.ipynb"),
                parameters={"workspace": str(ws.root), "author": "dana", "num_boost_round": 20},
                kernel_name="python3",
                progress_bar=False,
            )
        assert caught.value.ename == "SystemHalted"
        assert "registering the model refused" in caught.value.evalue
        assert aliases(settings) == before
        assert [m.model for m in operator(ws).models()] == registered
    finally:
        open_store_as(ws, Identity(name="max")).resume()
