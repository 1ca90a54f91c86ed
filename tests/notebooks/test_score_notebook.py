"""notebooks/score.ipynb executed by papermill on the real python3 kernel: new cases → the
champion → predictions with explanations → the review queue; refused while halted."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from hilt.pipelines.loop import runner
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.tracking.runs import run_info
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import operator
from tests.loop_helpers import (
    LABELLED,
    events_since,
    hilt_forked,
    kernels_without_mlflow,
    loop_workspace,
    mlflow_findings,
    new_cases_file,
    personal_findings,
    run_notebook,
    train_in_process,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace with a champion (version 1, trained by dana, approved by max)."""
    ws = loop_workspace(tmp_path_factory.mktemp("score-notebook"))
    registration = train_in_process(ws, "dana")
    promote(ws, registration.run_id, "max")
    return ws


@pytest.mark.obligation("GDPR 22")
def test_new_cases_are_scored_by_the_champion_into_the_queue(ws: Workspace, tmp_path: Path) -> None:
    cases = new_cases_file(tmp_path / "new.csv", LABELLED, 25)
    ids = [f"APP-{n:06d}" for n in range(LABELLED + 1, LABELLED + 26)]
    store = operator(ws)
    waiting = store.queue_status().waiting
    before = store.audit_head().seq
    # The kernel cannot import mlflow: the runner loads the champion and logs for it.
    with kernels_without_mlflow(tmp_path / "no-mlflow"):
        result = runner.execute(
            ws, runner.RunRequest("score", {"input_path": str(cases)}, author="dana")
        )
    nb = json.loads(result.notebook.read_text())
    meta = nb["metadata"]["papermill"]
    assert meta["parameters"] == {
        "input_path": str(cases),
        "workspace": str(ws.root),
        "run_id": result.run_id,
        "author": "dana",
    }
    assert meta["exception"] is None
    assert {
        c["metadata"]["papermill"]["status"] for c in nb["cells"] if c["cell_type"] == "code"
    } == {"completed"}
    # The predictions: the champion's, with explanations, in the queue.
    assert store.queue_status().waiting == waiting + 25
    case = store.get_case(ids[0])
    [prediction] = case.predictions
    assert prediction.model_version == "hilt-german-credit/v1"
    features = ws.settings().fields.features
    assert set(prediction.explanation) == {*features, "bias"}
    # MLflow: a scoring run with counts and the model version.
    info = run_info(result.run_id)
    assert info.status == "FINISHED"
    assert info.tags["hilt.kind"] == "score"
    assert info.params["model_version"] == "hilt-german-credit/v1"
    assert info.params["scored_into"] == "review queue"
    # The model's sha256, computed from the model loaded from MLflow, is the one the store
    # registered (the store took the predictions only because it is).
    [registered] = store.models()
    assert info.params["model_sha256"] == registered.model_sha256
    assert info.params["input_file"] == "new.csv"
    assert info.metrics["predictions_added"] == 25
    assert info.metrics["predicted_1"] + info.metrics["predicted_0"] == 25
    text = json.dumps(nb)
    assert "predicted good risk" in text and "predicted bad risk" in text
    # The audit log: the input file by name and sha256, not by path.
    events = events_since(ws, before)
    assert [e.action for e in events] == [
        "run.started",
        "cases.ingest",
        "predictions.ingest",
        "run.finished",
    ]
    started = events[0].payload["parameters"]
    assert started["input_file"] == "new.csv" and "input_path" not in started
    assert events[2].object_id == "hilt-german-credit/v1"
    # Counts only: no applicant, no sex value, no case id in the outputs or in MLflow.
    assert personal_findings(result.notebook) == []
    assert mlflow_findings([result.run_id]) == []


def test_parquet_by_the_cli_and_duplicate_ids_fail_the_run(ws: Workspace, tmp_path: Path) -> None:
    cases = new_cases_file(tmp_path / "more.parquet", LABELLED + 100, 10, fmt="parquet")
    r = hilt_forked("score", cases, "--workspace", ws.root, "--as", "dana", folder=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("run ")
    assert "10 cases ingested, 10 scored by hilt-german-credit/v1 into the review queue" in r.stdout
    counts = operator(ws).counts()
    before = operator(ws).audit_head().seq
    # The same cases again: their ids exist, an input error inside the run.
    r = hilt_forked("score", cases, "--workspace", ws.root, "--as", "dana", folder=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "ConflictError" in r.stderr and "already exist" in r.stderr
    after = operator(ws).counts()
    assert {k: v for k, v in after.items() if k != "audit_log"} == {
        k: v for k, v in counts.items() if k != "audit_log"
    }
    events = events_since(ws, before)
    assert [e.action for e in events] == ["run.started", "run.failed"]
    assert events[1].payload["error"] == "ConflictError"
    notebook = run_notebook(ws, events[1].object_id)
    assert personal_findings(notebook) == []


def test_a_version_a_lead_allowed_for_shadow_scoring_scores_apart(
    ws: Workspace, tmp_path: Path
) -> None:
    """A challenger is not the champion: the store takes its predictions only once a lead
    allowed it for shadow scoring, and then keeps them apart, never queued for review."""
    second = train_in_process(ws, "dana", seed=3)
    assert second.challenger and second.version == "2"
    v2 = "hilt-german-credit/v2"
    lena = open_store_as(ws, Identity(name="lena"))
    lena.allow_shadow(v2, True)
    try:
        cases = new_cases_file(tmp_path / "shadow.csv", LABELLED + 250, 12)
        waiting = operator(ws).queue_status().waiting
        before = operator(ws).audit_head().seq
        r = hilt_forked(
            "score", cases, "--workspace", ws.root, "--as", "dana", "--model-version", "2",
            folder=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert (
            f"12 cases ingested, 12 scored by {v2} as shadow predictions (kept apart, never "
            "queued for review)"
        ) in r.stdout
        assert operator(ws).queue_status().waiting == waiting
        ingests = [e for e in events_since(ws, before) if e.action.startswith("predictions.")]
        assert [(e.action, e.object_id, e.payload["rows"]) for e in ingests] == [
            ("predictions.shadow", v2, 12)
        ]
        case = operator(ws).get_case(f"APP-{LABELLED + 251:06d}")
        assert case.predictions == []  # nothing a reviewer would see
        run_id = events_since(ws, before)[0].object_id
        assert run_info(run_id).params["scored_into"] == "shadow"
        assert personal_findings(run_notebook(ws, run_id)) == []
    finally:
        lena.allow_shadow(v2, False)


def test_halted_refuses_scoring_and_retraining(ws: Workspace, tmp_path: Path) -> None:
    """`hilt halt`: scoring and retraining exit 4 with a clear message and are audited as
    refused; the lead who halted cannot resume, a second lead can; all in the audit log."""
    cases = new_cases_file(tmp_path / "halted.csv", LABELLED + 200, 5)
    before = operator(ws).audit_head().seq
    logs = tmp_path / "hilt"
    r = hilt_forked(
        "halt", "--as", "lena", "--reason", "model drift under investigation",
        "--workspace", ws.root, folder=logs,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "halted by lena" in r.stdout
    resumed = False
    try:
        runs = len(list(ws.runs_dir.iterdir()))
        # Taken before the refused runs: only their run.refused audit rows may follow.
        counts = {t: n for t, n in operator(ws).counts().items() if t != "audit_log"}
        for args, what in ((("score", cases), "scoring"), (("retrain",), "retraining")):
            r = hilt_forked(*args, "--workspace", ws.root, folder=logs)
            assert r.returncode == 4, r.stderr
            [line] = r.stderr.strip().splitlines()
            assert line.startswith(f"error: {what} refused: the system is halted (by lena at ")
            assert "hilt resume --as LEAD" in line
            assert "drift" not in line  # the reason is free text: it stays in the store
        assert len(list(ws.runs_dir.iterdir())) == runs
        # The notebook refuses on its own too (run directly, not through the runner).
        out = tmp_path / "direct.ipynb"
        with pytest.raises(PapermillExecutionError) as caught:
            papermill.execute_notebook(
                str(NOTEBOOKS_DIR / "score.ipynb"),
                str(out),
                parameters={"workspace": str(ws.root), "input_path": str(cases)},
                kernel_name="python3",
                progress_bar=False,
            )
        assert caught.value.ename == "SystemHalted"
        assert "halted (by lena" in caught.value.evalue
        assert {t: n for t, n in operator(ws).counts().items() if t != "audit_log"} == counts
        # Four eyes on the resume.
        r = hilt_forked("resume", "--as", "lena", "--workspace", ws.root, folder=logs)
        assert r.returncode == 2 and "a second lead must" in r.stderr, r.stderr
        r = hilt_forked("resume", "--as", "alice", "--workspace", ws.root, folder=logs)
        assert r.returncode == 2 and "may not halt" in r.stderr, r.stderr
        r = hilt_forked("resume", "--as", "max", "--workspace", ws.root, folder=logs)
        assert r.returncode == 0 and "resumed by max" in r.stdout, r.stderr
        resumed = True
    finally:
        if not resumed:
            open_store_as(ws, Identity(name="max")).resume()
    events = events_since(ws, before)
    assert [(e.action, e.actor) for e in events] == [
        ("system.halted", "lena"),
        ("run.refused", "os:" + getpass.getuser()),
        ("run.refused", "os:" + getpass.getuser()),
        ("system.resumed", "max"),
    ]
    assert [e.payload["kind"] for e in events[1:3]] == ["score", "retrain"]
    assert {e.payload["halt_seq"] for e in events[1:3]} == {events[0].seq}
    assert "drift" not in json.dumps([e.payload for e in events])
    assert operator(ws).verify().ok
