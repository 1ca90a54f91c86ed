"""notebooks/retrain.ipynb executed by papermill on the real python3 kernel, through the runner
and the `hilt` command, on a small real workspace with a real MLflow (sqlite) store.

Asserts on the executed notebook (metadata.papermill, outputs), on MLflow (params, metrics,
tags, aliases, artifacts) and on the audit log."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import click
import pytest
from mlflow import MlflowClient
from papermill import cli as papermill_cli
from papermill.inspection import display_notebook_help

from hilt.pipelines.kernels.source import SWITCH_ENV
from hilt.pipelines.loop import runner
from hilt.pipelines.loop.model import TrainParams
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.scoring import score_into_queue
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import tracking_uri
from hilt.pipelines.loop.tracking.pyfunc import load_model_version
from hilt.pipelines.loop.tracking.registry import aliases
from hilt.pipelines.loop.tracking.runs import list_runs, run_info
from hilt.pipelines.loop.tracking.tags import GATE_ARTIFACT
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import operator
from tests.loop_helpers import (
    FAST,
    LABELLED,
    all_cases,
    events_since,
    hilt_forked,
    kernels_without_mlflow,
    loop_workspace,
    mlflow_findings,
    personal_findings,
    review_some,
    run_notebook,
)

pytestmark = pytest.mark.slow
TEMPLATE = NOTEBOOKS_DIR / "retrain.ipynb"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return loop_workspace(tmp_path_factory.mktemp("retrain-notebook"))


#: The first run, the audit seq before it, and how often papermill wrote its notebook.
FirstRun = tuple[runner.RunResult, int, int]


@pytest.fixture(scope="module")
def first(ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """The first retraining run (as dana), the audit seq before it and the number of times
    papermill wrote the executed notebook while it ran. Its kernel cannot import mlflow (a
    sitecustomize refuses it): the runner logs, registers and mirrors what the kernel
    prepared (``tracking.relay``), so every test on this run also proves that the kernel
    never needed mlflow."""
    import papermill.engines

    before = operator(ws).audit_head().seq
    write = papermill.engines.write_ipynb
    writes: list[str] = []

    def counted(nb: object, path: str) -> None:
        writes.append(path)
        write(nb, path)

    with (
        kernels_without_mlflow(tmp_path_factory.mktemp("no-mlflow")),
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(papermill.engines, "write_ipynb", counted)
        result = runner.execute(ws, runner.RunRequest("retrain", FAST, author="dana"))
    assert set(writes) == {str(result.notebook)}
    return result, before, len(writes)


@pytest.fixture(scope="module")
def promoted(ws: Workspace, first: FirstRun) -> FirstRun:
    """The first run's model promoted to champion by a lead (max), once per module: the tests
    that need a champion ask for it instead of relying on the order they run in."""
    promote(ws, first[0].run_id, "max")
    return first


def test_help_notebook_documents_every_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    """What `papermill --help-notebook` prints (the function it calls, in process)."""
    with click.Context(papermill_cli.papermill) as ctx:
        assert display_notebook_help(ctx, str(TEMPLATE), {}) == 0
    out = capsys.readouterr().out
    for name in [f for f in TrainParams.__dataclass_fields__] + [
        "workspace",
        "run_id",
        "author",
        "as_of_seq",
        "label_noise",
    ]:
        line = re.search(rf"^\s+{name}: (int|float|str|bool) \(default .*?\)(.*)$", out, re.M)
        assert line is not None, name
    assert "depth of each tree" in out
    assert "robustness check only" in out


def test_the_template_is_thin_and_has_no_outputs() -> None:
    nb = json.loads(TEMPLATE.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code[0]["metadata"]["tags"] == ["parameters"]
    for cell in code:
        source = "".join(cell["source"])
        assert cell["outputs"] == [] and cell["execution_count"] is None
        assert not re.search(r"^\s*(def|class) ", source, re.M), source


def test_a_run_leaves_its_notebook_mlflow_records_and_audit_events(
    ws: Workspace, first: FirstRun
) -> None:
    result, before, writes = first
    run_id = result.run_id
    # The executed notebook: stable name, papermill metadata, every cell completed.
    assert result.notebook.parent == ws.runs_dir
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z-retrain-{run_id}\.ipynb", result.notebook.name)
    assert sha256(result.notebook) == result.notebook_sha256
    nb = json.loads(result.notebook.read_text())
    meta = nb["metadata"]["papermill"]
    assert meta["parameters"] == {
        "num_boost_round": 60,
        "nthread": os.cpu_count(),  # not given: every core, fixed by the runner
        "engine": "local",  # not given: hilt.toml's [training] engine, fixed by the runner
        "workspace": str(ws.root),
        "run_id": run_id,
        "author": "dana",
        "reproduces": "",
    }
    assert meta["exception"] is None
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert {c["metadata"]["papermill"]["status"] for c in code} == {"completed"}
    # Written when the run started and ended (and at most every 30 s between), not before
    # and after every cell as papermill's own engine writes it (2 per cell, 2 more).
    assert 2 <= writes < len(nb["cells"])
    # The kernel's warm-up (``run_kernel``) took no execution count: cells count from 1.
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    pngs = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(pngs) == 4  # subgroups, calibration, feature importance, ROC
    text = json.dumps(nb)
    for shown in ("reviewer-accepted", "reviewer-corrected", "gap:sex", "holdout"):
        assert shown in text
    assert not [o for c in code for o in c["outputs"] if o.get("name") == "stderr"], (
        "the notebook's outputs carry no warnings or log lines"
    )

    # MLflow.
    info = run_info(run_id)
    assert info.status == "FINISHED"
    assert info.author == "dana"
    assert info.params["num_boost_round"] == "60"
    assert info.params["max_depth"] == "3"
    assert info.params["label_noise"] == "0.0"
    assert info.params["nthread"] == str(os.cpu_count())
    assert info.metrics["holdout_auc"] > 0.65
    assert {"gap_sex", "gap_age"} <= set(info.metrics)
    assert info.tags["hilt.kind"] == "retrain"
    assert info.tags["hilt.gate"] == "passed"
    assert info.tags["hilt.template_sha256"] == sha256(TEMPLATE)
    assert info.tags["hilt.notebook"] == result.notebook.name
    assert info.model_sha256 == result.model_sha256
    assert info.snapshot_sha256 is not None
    assert (result.gate, result.version) == ("passed", "1")
    assert info.versions == ("1",) and info.aliases == ("challenger",)
    client = MlflowClient(tracking_uri(ws), tracking_uri(ws))
    artifacts = {a.path for a in client.list_artifacts(run_id, "notebook")}
    assert artifacts == {
        f"notebook/{result.notebook.name}",
        f"notebook/{result.notebook.stem}.html",
    }
    assert {a.path for a in client.list_artifacts(run_id, "evaluation")} == {
        "evaluation/gate.json",
        "evaluation/subgroup_metrics.csv",
    }

    # The audit log: start, snapshot, the store's registration (its gate), the run's
    # training record, finish.
    events = events_since(ws, before)
    assert [e.action for e in events] == [
        "run.started",
        "snapshot.created",
        "model.registered",
        "run.trained",
        "run.finished",
    ]
    started, snap, registered, trained, finished = events
    assert started.actor == "dana" and started.object_id == run_id
    assert started.payload["parameters"] == {
        "num_boost_round": 60,
        "nthread": os.cpu_count(),
        "engine": "local",
    }
    assert started.payload["template_sha256"] == sha256(TEMPLATE)
    assert snap.payload["sha256"] == info.snapshot_sha256
    assert trained.payload["model_sha256"] == result.model_sha256
    assert trained.payload["label_sources"] == {
        "original": snap.payload["train_rows"],
        "reviewer-accepted": 0,
        "reviewer-corrected": 0,
    }
    assert registered.object_id == trained.payload["model"] == "hilt-german-credit/v1"
    assert (registered.actor, registered.payload["run_id"]) == ("dana", run_id)
    assert registered.payload["model_sha256"] == result.model_sha256
    assert (registered.payload["gate"], registered.payload["state"]) == ("passed", "challenger")
    assert registered.payload["snapshot_sha256"] == info.snapshot_sha256
    # The store decided; MLflow's gate artifact and aliases mirror it.
    [record] = operator(ws).models()
    assert (record.model, record.state, record.gate) == (
        "hilt-german-credit/v1",
        "challenger",
        "passed",
    )
    with tempfile.TemporaryDirectory() as tmp:
        gate = json.loads(Path(client.download_artifacts(run_id, GATE_ARTIFACT, tmp)).read_text())
    assert gate["passed"] is True
    assert [c["name"] for c in gate["checks"]] == [c.name for c in record.checks]
    assert finished.payload["notebook_sha256"] == result.notebook_sha256
    assert operator(ws).verify().ok

    # Nothing personal in the notebook's outputs or in MLflow.
    assert personal_findings(result.notebook) == []
    assert mlflow_findings([run_id]) == []


def test_the_gate_rejects_label_noise_and_the_champion_stays(
    ws: Workspace, promoted: FirstRun, tmp_path: Path
) -> None:
    settings = ws.settings()
    assert aliases(settings) == {"champion": "1"}
    before = operator(ws).audit_head().seq
    r = hilt_forked(
        "retrain", "--workspace", ws.root, "--as", "dana", "-p", "label_noise", "0.4",
        "-p", "num_boost_round", "60", folder=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "gate rejected" in r.stdout and "exit 0" in r.stdout
    assert r.stderr == ""
    configure(ws, settings=settings)
    assert aliases(settings) == {"champion": "1"}
    run_id = re.search(r"^run ([0-9a-f]{32})", r.stdout, re.M)
    assert run_id is not None
    info = run_info(run_id.group(1))
    assert info.tags["hilt.gate"] == "rejected" and info.params["label_noise"] == "0.4"
    actions = [e.action for e in events_since(ws, before)]
    assert actions[-3:] == ["model.registered", "run.trained", "run.finished"]
    registered = events_since(ws, before)[-3]
    assert (registered.payload["gate"], registered.payload["state"]) == ("rejected", "rejected")
    assert any(not c["passed"] for c in registered.payload["checks"])
    # The store rejected it; its champion is unchanged.
    states = {m.model: m.state for m in operator(ws).models()}
    assert states == {"hilt-german-credit/v1": "champion", "hilt-german-credit/v2": "rejected"}
    assert personal_findings(run_notebook(ws, run_id.group(1))) == []


def test_a_failing_run_exits_1_keeps_its_notebook_and_is_marked_failed(
    ws: Workspace, tmp_path: Path
) -> None:
    before = operator(ws).audit_head().seq
    # Seq 1 is the workspace's creation: no labelled case yet, so the snapshot step raises.
    r = hilt_forked("retrain", "--workspace", ws.root, "-p", "as_of_seq", "1", folder=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "no labelled cases as of that seq" in r.stderr
    # (the store's state, not the request: a conflict, HTTP 409)
    m = re.search(r"retrain run ([0-9a-f]{32}) failed in cell \d+: ConflictError", r.stderr)
    assert m is not None, r.stderr
    run_id = m.group(1)
    notebook = run_notebook(ws, run_id)
    assert str(notebook) in r.stderr
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["papermill"]["exception"] is True
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ConflictError"]
    configure(ws)
    assert run_info(run_id).status == "FAILED"
    events = events_since(ws, before)
    assert [e.action for e in events] == ["run.started", "run.failed"]
    failed = events[-1]
    assert failed.payload["error"] == "ConflictError"
    assert failed.payload["notebook_sha256"] == sha256(notebook)
    assert failed.payload["notebook"] == notebook.name
    assert personal_findings(notebook) == []


def test_reproduce_gives_the_same_model_even_after_new_feedback_and_on_two_threads(
    ws: Workspace, promoted: FirstRun, tmp_path: Path
) -> None:
    """Reproduction, twice over: the champion's run reproduces (CLI) before and after new
    feedback, and a new run on the new snapshot, on two threads (``nthread`` 2, not
    registered), reproduces bit-identically on two. One test, so that the new run serves
    both (one papermill run fewer); every assertion of the two tests it was is kept."""
    original = promoted[0]
    # The original run's kernel was forked from the suite's zygote (pipelines/kernels/);
    # this reproduction's is launched the usual way: the same model, byte for byte.
    r = hilt_forked(
        "retrain",
        "--workspace",
        ws.root,
        "--reproduce",
        original.run_id,
        folder=tmp_path,
        env={SWITCH_ENV: "0"},
    )
    assert r.returncode == 0, r.stderr
    assert "identical" in r.stdout
    assert r.stdout.count(original.model_sha256 or "missing") == 2

    # New cases, scored by the champion and reviewed: the store's training view changes.
    settings = ws.settings()
    configure(ws, settings=settings)
    dana = open_store_as(ws, Identity(name="dana"))
    new = all_cases().slice(LABELLED, 40).drop("risk")
    dana.ingest_cases(new)
    champion = load_model_version(settings, "1")
    ids = new["application_id"].to_list()
    score_into_queue(dana, champion, ids, settings, "hilt-german-credit/v1")
    assert review_some(ws, "alice", 20) == 20

    # The old run still reproduces: it trains on its own snapshot file.
    r = hilt_forked(
        "retrain", "--workspace", ws.root, "--reproduce", original.run_id, folder=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "identical" in r.stdout
    # A new run on a new snapshot gives another snapshot and another model. It runs on two
    # threads and is logged only (not registered): the run the two-thread reproduction
    # below reproduces.
    fresh = runner.execute(
        ws,
        runner.RunRequest("retrain", {**FAST, "nthread": "2", "register": "false"}, "dana"),
    )
    info = run_info(fresh.run_id)
    assert info.snapshot_sha256 != run_info(original.run_id).snapshot_sha256
    assert fresh.model_sha256 != original.model_sha256
    trained = [e for e in events_since(ws, 0) if e.action == "run.trained"]
    assert trained[-1].object_id == fresh.run_id
    assert trained[-1].payload["label_sources"]["reviewer-accepted"] > 0
    # Reproductions are logged, not registered (in MLflow or the store), and say what they
    # reproduce (in MLflow and in the audit log).
    reproductions = [run for run in list_runs(settings) if run.tags.get("hilt.reproduces")]
    assert len(reproductions) == 2
    assert {run.tags["hilt.reproduces"] for run in reproductions} == {original.run_id}
    assert all(run.versions == () for run in reproductions)
    ids_of = {run.run_id for run in reproductions}
    assert not ids_of & {m.run_id for m in operator(ws).models()}
    said = [e.payload for e in trained if e.object_id in ids_of]
    assert [(p["reproduces"], p["model"]) for p in said] == [(original.run_id, None)] * 2
    assert {p["model_sha256"] for p in said} == {original.model_sha256}

    # A run on two threads reproduces bit-identically on two.
    two = fresh
    assert info.params["nthread"] == "2"
    copy = runner.reproduce(ws, two.run_id)
    assert copy.matches and copy.result.model_sha256 == two.model_sha256
    # The reproduction ran with the recorded nthread, and says so in MLflow and the log.
    assert run_info(copy.result.run_id).params["nthread"] == "2"
    [started] = [
        e
        for e in events_since(ws, 0)
        if e.action == "run.started" and e.object_id == copy.result.run_id
    ]
    assert started.payload["parameters"]["nthread"] == 2


def test_reproduce_refuses_a_run_whose_snapshot_file_is_gone(
    ws: Workspace, first: FirstRun, tmp_path: Path
) -> None:
    configure(ws)
    info = run_info(first[0].run_id)
    assert info.snapshot_sha256 is not None
    # (Later snapshots of unchanged data have the same bytes under another seq's name.)
    paths = sorted(ws.snapshots_dir.glob(f"*-{info.snapshot_sha256[:12]}.parquet"))
    assert paths
    for path in paths:
        path.rename(tmp_path / path.name)
    try:
        before = operator(ws).audit_head().seq
        r = hilt_forked(
            "retrain", "--workspace", ws.root, "--reproduce", first[0].run_id, folder=tmp_path
        )
        assert r.returncode == 2, r.stderr
        assert "no snapshot file with sha256" in r.stderr
        assert operator(ws).audit_head().seq == before
    finally:
        for path in paths:
            (tmp_path / path.name).rename(path)
