"""The attack matrix: what a real insider could try, each row against a real store, each
refused with a clear error naming what is wrong, with nothing written but what the row says
the store records, and recorded where the row says.

Every part of issue 12 adds its rows in its own section below. The closing note quotes the
matrix as a table: attack → refused how → recorded where (``name``, ``refused``,
``recorded`` of each row).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from hilt.pipelines.errors import PermissionDeniedError
from hilt.pipelines.loop.promotion import promote, reject
from hilt.pipelines.loop.steps.retrain import Registration
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.pyfunc import DATA_DIR
from hilt.pipelines.loop.tracking.registry import aliases
from hilt.pipelines.loop.tracking.runs import list_runs
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import operator
from tests.loop_helpers import LABELLED, hilt_cli, loop_workspace, new_cases_file, train_in_process

# ---- registry: scoring and promotion through the loop
# The store's model registry decides which model scores and who approves it; MLflow only
# mirrors it. The victim: a champion v1 (trained by dana, approved by lena), v2 rejected by
# lena, v3 a challenger nobody approved, trained by max (a lead who also trains models). The
# insiders use the real `hilt` commands, MLflow's files and the notebook itself.

V1, V2, V3 = (f"hilt-german-credit/v{n}" for n in (1, 2, 3))


@dataclass
class RegistryVictim:
    ws: Workspace
    v1: Registration
    v2: Registration
    v3: Registration
    tmp: Path
    #: New cases for each row (rows that ingest must not meet each other's ids).
    next_case: int = LABELLED

    def new_cases(self, count: int = 5) -> Path:
        path = new_cases_file(self.tmp / f"new-{self.next_case}.csv", self.next_case, count)
        self.next_case += count
        return path

    def state(self) -> tuple[int, dict[str, int], dict[str, str], dict[str, str], int, int]:
        """The audit head, every table's count, the store's registry, MLflow's aliases, the
        MLflow runs and the executed notebooks."""
        settings = self.ws.settings()
        configure(self.ws, settings=settings)
        op = operator(self.ws)
        registry = {m.model: str(m.state) for m in op.models()}
        notebooks = len(list(self.ws.runs_dir.glob("*.ipynb")))
        runs = len(list_runs(settings, max_results=1000))
        return op.audit_head().seq, op.counts(), registry, aliases(settings), runs, notebooks

    def events_after(self, seq: int) -> list[tuple[str, str, dict[str, object]]]:
        return [
            (e.action, e.object_id, e.payload)
            for e in operator(self.ws).audit_events(after_seq=seq)
        ]


@pytest.fixture(scope="module")
def registry_victim(tmp_path_factory: pytest.TempPathFactory) -> RegistryVictim:
    root = tmp_path_factory.mktemp("registry-victim")
    ws = loop_workspace(root)
    operator(ws).add_user("max", "data-scientist")  # max: a lead who also trains models
    v1 = train_in_process(ws, "dana")
    promote(ws, v1.run_id, "lena")
    v2 = train_in_process(ws, "dana", seed=1)
    reject(ws, v2.run_id, "lena", "The age gap grew.")
    v3 = train_in_process(ws, "max", seed=2)
    assert (v1.model, v2.model, v3.model) == (V1, V2, V3)
    assert {m.model: m.state for m in operator(ws).models()} == {
        V1: "champion",
        V2: "rejected",
        V3: "challenger",
    }
    return RegistryVictim(ws, v1, v2, v3, root)


@dataclass(frozen=True)
class RegistryRecord:
    """What an attack leaves: audit events (action, object, payload items that must match)
    and rows added to the store's tables (besides the audit log), an MLflow run and an
    executed notebook (a run that started before it was refused)."""

    events: tuple[tuple[str, str, dict[str, object]], ...] = ()
    rows: dict[str, int] = field(default_factory=dict)
    mlflow_runs: int = 0
    notebooks: int = 0


@dataclass(frozen=True)
class RegistryAttack:
    name: str
    refused: str
    recorded: str
    run: Callable[[RegistryVictim], RegistryRecord]


def one_line_exit_2(r: object, message: str) -> None:
    """`hilt` refused: exit 2, exactly one line on stderr, ``message`` in it, no trace."""
    assert getattr(r, "returncode") == 2, getattr(r, "stderr")  # noqa: B009
    stderr = str(getattr(r, "stderr"))  # noqa: B009
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    assert message in stderr, stderr


def scoring_refused(model: str | None, state: str) -> tuple[str, str, dict[str, object]]:
    return ("run.refused", "", {"kind": "score", "reason": "model", "model": model, "state": state})


def score_with_a_rejected_version(v: RegistryVictim) -> RegistryRecord:
    r = hilt_cli(
        "score", v.new_cases(), "--workspace", v.ws.root, "--as", "dana", "--model-version", "2"
    )
    one_line_exit_2(
        r,
        f"scoring refused: {V2} is rejected: only the champion ({V1}) scores into the review "
        "queue, or a version a lead allowed for shadow scoring; nothing was ingested or scored",
    )
    return RegistryRecord((scoring_refused(V2, "rejected"),))


def score_with_a_never_promoted_version(v: RegistryVictim) -> RegistryRecord:
    r = hilt_cli(
        "score", v.new_cases(), "--workspace", v.ws.root, "--as", "dana", "--model-version", "3"
    )
    one_line_exit_2(r, f"scoring refused: {V3} is challenger: only the champion ({V1}) scores")
    r = hilt_cli(
        "score", v.new_cases(), "--workspace", v.ws.root, "--as", "dana", "--model-version", "9"
    )
    one_line_exit_2(
        r, "scoring refused: hilt-german-credit/v9 is not a model registered in this store"
    )
    return RegistryRecord(
        (
            scoring_refused(V3, "challenger"),
            scoring_refused("hilt-german-credit/v9", "unregistered"),
        )
    )


def model_files(ws: Workspace, version: str) -> Path:
    """Where MLflow keeps a registered version's model files (model.ubj and its sidecar)."""
    from mlflow import MlflowClient

    configure(ws, settings=ws.settings())
    client = MlflowClient()
    name = registered_model_name(ws.settings())
    model_id = str(client.get_model_version(name, version).source).removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location.removeprefix("file://")
    path = Path(location) / "data" / DATA_DIR
    assert (path / "model.ubj").is_file(), path
    return path


@pytest.fixture
def tampered_champion(registry_victim: RegistryVictim) -> Iterator[None]:
    """The champion's model files in MLflow's artifact store replaced by another real model
    (v2's booster and sidecar: they agree with each other, so it loads)."""
    v = registry_victim
    champion, other = model_files(v.ws, "1"), model_files(v.ws, "2")
    backup = v.tmp / "champion-files"
    shutil.copytree(champion, backup, dirs_exist_ok=True)
    for f in ("model.ubj", "model.json"):
        shutil.copyfile(other / f, champion / f)
    try:
        yield
    finally:
        for f in ("model.ubj", "model.json"):
            shutil.copyfile(backup / f, champion / f)


def score_with_a_tampered_model_file(v: RegistryVictim) -> RegistryRecord:
    r = hilt_cli("score", v.new_cases(), "--workspace", v.ws.root, "--as", "dana")
    one_line_exit_2(
        r,
        f"scoring refused: the model MLflow holds as {V1} is not the one the store registered "
        "(its sha256 differs): a tampered or another model; nothing was ingested or scored",
    )
    return RegistryRecord((scoring_refused(V1, "sha256-mismatch"),))


def score_with_a_tampered_model_bypassing_hilt_score(v: RegistryVictim) -> RegistryRecord:
    """The scoring notebook run by hand (papermill), so hilt score's own check is skipped:
    the store itself refuses the predictions, whose model's sha256 is not the registered
    one, and records the refusal."""
    cases = v.new_cases()
    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(NOTEBOOKS_DIR / "score.ipynb"),
            str(v.tmp / "by-hand.ipynb"),
            parameters={"workspace": str(v.ws.root), "input_path": str(cases), "author": "dana"},
            kernel_name="python3",
            progress_bar=False,
        )
    assert caught.value.ename == "PermissionDeniedError"
    assert (
        f"predictions refused, nothing was written: the model presented as {V1} is not the one "
        "registered (its sha256 differs): a tampered or another model"
    ) in caught.value.evalue
    return RegistryRecord(
        (
            ("cases.ingest", "", {"rows": 5}),
            ("model.use_refused", V1, {"reason": "sha256-mismatch", "rows": 5}),
        ),
        rows={"cases": 5, "identity": 5, "case_features": 5, "case_personal": 5},
        mlflow_runs=1,
    )


def promote_own_run(v: RegistryVictim) -> RegistryRecord:
    r = hilt_cli("promote", v.v3.run_id, "--as", "max", "--workspace", v.ws.root)
    one_line_exit_2(
        r, f"run {v.v3.run_id}: 'max' trained {V3}; a lead who did not train it must approve it"
    )
    # Nor through the store directly, nor may the author reject it.
    with pytest.raises(PermissionDeniedError, match=f"'max' trained {V3}"):
        open_store_as(v.ws, Identity(name="max")).promote_model(V3)
    r = hilt_cli("reject", v.v3.run_id, "--as", "max", "--reason", "x", "--workspace", v.ws.root)
    one_line_exit_2(r, f"'max' trained {V3}; a lead who did not train it must reject it")
    return RegistryRecord()


def approve_as_a_non_lead(v: RegistryVictim) -> RegistryRecord:
    for who, roles in (("alice", "reviewer"), ("dana", "data-scientist, admin")):
        r = hilt_cli("promote", v.v3.run_id, "--as", who, "--workspace", v.ws.root)
        one_line_exit_2(r, f"user '{who}' (roles: {roles}) may not decide on models")
    with pytest.raises(PermissionDeniedError, match="may not decide on models"):
        open_store_as(v.ws, Identity(name="otto")).promote_model(V3)
    return RegistryRecord()


REGISTRY_ATTACKS = [
    RegistryAttack(
        "score with a version a lead rejected (`hilt score --model-version 2`)",
        "exit 2 before anything runs: scoring refused: …/v2 is rejected: only the champion "
        "(…/v1) scores into the review queue (the store's registry); the store refuses such "
        "predictions itself too (PermissionDeniedError)",
        "run.refused (kind score, model, state rejected) in the audit log; no MLflow run, no "
        "notebook, nothing ingested",
        score_with_a_rejected_version,
    ),
    RegistryAttack(
        "score with a version never promoted (a challenger) or never registered",
        "exit 2 before anything runs: …/v3 is challenger: only the champion scores …; …/v9 is "
        "not a model registered in this store",
        "run.refused (state challenger / unregistered) in the audit log; nothing else",
        score_with_a_never_promoted_version,
    ),
    RegistryAttack(
        "score with the champion's model file in MLflow replaced by another model",
        "exit 2 before anything runs: the model MLflow holds as …/v1 is not the one the store "
        "registered (its sha256 differs)",
        "run.refused (state sha256-mismatch) in the audit log; nothing else",
        score_with_a_tampered_model_file,
    ),
    RegistryAttack(
        "the same tampered model, the scoring notebook run by hand (skipping hilt score's check)",
        "the store refuses the predictions: PermissionDeniedError, predictions refused, "
        "nothing was written: the model presented as …/v1 is not the one registered (its "
        "sha256 differs)",
        "model.use_refused (reason sha256-mismatch, rows) in the audit log; the notebook had "
        "ingested the new cases first (cases.ingest): they wait without a prediction",
        score_with_a_tampered_model_bypassing_hilt_score,
    ),
    RegistryAttack(
        "a lead promotes (or rejects) the model they trained (`hilt promote RUN --as max`)",
        "exit 2: run …: 'max' trained …/v3; a lead who did not train it must approve it (the "
        "store's four eyes, PermissionDeniedError through the API too)",
        "nowhere: nothing changed (the store's registry and MLflow's aliases as they were)",
        promote_own_run,
    ),
    RegistryAttack(
        "approve a challenger as a reviewer, a data scientist/admin or an auditor",
        "exit 2: user 'alice' (roles: reviewer) may not decide on models (the store's "
        "permission, PermissionDeniedError through the API too)",
        "nowhere: nothing changed",
        approve_as_a_non_lead,
    ),
]
#: The rows that need the champion's model file tampered with first.
TAMPERING = {score_with_a_tampered_model_file, score_with_a_tampered_model_bypassing_hilt_score}


@pytest.mark.slow
@pytest.mark.parametrize("attack", REGISTRY_ATTACKS, ids=[a.run.__name__ for a in REGISTRY_ATTACKS])
def test_registry_attack_is_refused_and_nothing_else_is_written(
    attack: RegistryAttack, registry_victim: RegistryVictim, request: pytest.FixtureRequest
) -> None:
    v = registry_victim
    if attack.run in TAMPERING:
        request.getfixturevalue("tampered_champion")
    seq, counts, registry, held, runs, notebooks = v.state()
    recorded = attack.run(v)
    after_seq, after_counts, after_registry, after_held, after_runs, after_notebooks = v.state()
    events = v.events_after(seq)
    assert [e[0] for e in events] == [e[0] for e in recorded.events]
    for (action, obj, payload), (_, want_obj, want) in zip(events, recorded.events, strict=True):
        assert not want_obj or obj == want_obj, action
        assert {k: payload.get(k) for k in want} == want, action
    assert after_seq == seq + len(recorded.events)
    expected = dict(counts)
    expected["audit_log"] += len(recorded.events)
    for table, added in recorded.rows.items():
        expected[table] += added
    assert after_counts == expected
    # The store's registry and MLflow's mirror of it are as they were.
    assert (
        (after_registry, after_held)
        == (registry, held)
        == (
            {V1: "champion", V2: "rejected", V3: "challenger"},
            {"champion": "1", "challenger": "3"},
        )
    )
    assert (after_runs, after_notebooks) == (
        runs + recorded.mlflow_runs,
        notebooks + recorded.notebooks,
    )
    assert operator(v.ws).verify().ok


def test_the_registry_rows_name_what_is_refused_and_where_it_is_recorded() -> None:
    for attack in REGISTRY_ATTACKS:
        assert attack.name and attack.refused and attack.recorded, attack
        assert re.fullmatch(r"[a-z_]+", attack.run.__name__)
