"""Training on Dask (``[training] engine = "dask"``): a 2-worker ``distributed.LocalCluster``
started here, the same executed notebook, MLflow run, gate and store registry as a local
training, a reproduction on the same cluster shape, and refusals that write nothing. The
runs are started by the CLI in this process (``hilt_here``; their kernels and the cluster's
workers are processes of their own); the one-line error runs in a `hilt` process of its own
(forked from one that imported hilt once: ``hilt_forked``), as a scheduler sees it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from hilt.pipelines.config import Training
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop import runner
from hilt.pipelines.loop.model import TrainParams
from hilt.pipelines.loop.model_dask import ClusterError
from hilt.pipelines.loop.steps import holdout, training, training_data
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.runs import run_info
from hilt.pipelines.loop.tracking.tags import (
    TAG_DASK_PARTITIONS,
    TAG_DASK_THREADS_PER_WORKER,
    TAG_DASK_WORKERS,
    TAG_ENGINE,
)
from hilt.pipelines.loop.tracking.training_log import equals_a_row
from hilt.pipelines.workspace import Workspace
from tests.cli_helpers import hilt_here
from tests.conftest import free_port, operator
from tests.loop_helpers import FAST, events_since, hilt_forked, loop_workspace, run_notebook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A 2-worker cluster of processes, one thread each, for this module."""
    from distributed import LocalCluster

    # Dask sets PYTHONHASHSEED in this process's environment to start its workers; put back
    # once they run, or every later run kernel of this test process would ask for another
    # hash seed than the suite's zygote has and start the usual way (pipelines/kernels/).
    seed = os.environ.get("PYTHONHASHSEED")
    try:
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    finally:
        if seed is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = seed
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return loop_workspace(tmp_path_factory.mktemp("dask-training"))


@pytest.fixture(scope="module")
def dask_run(ws: Workspace, scheduler: str) -> str:
    """`hilt retrain -p engine dask -p scheduler ADDRESS` (the CLI in this process): the
    run's id."""
    rounds = FAST["num_boost_round"]
    r = hilt_here(
        "retrain", "-w", ws.root, "-p", "engine", "dask", "-p", "scheduler", scheduler,
        "-p", "num_boost_round", rounds,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "gate passed" in r.stdout
    found = re.search(r"^run (\w+) \(retrain", r.stdout, re.MULTILINE)
    assert found, r.stdout
    return found.group(1)


def untouched(ws: Workspace, head: int, notebooks: int) -> None:
    assert operator(ws).audit_head().seq == head
    assert len(list(ws.runs_dir.glob("*.ipynb"))) == notebooks


def test_dask_and_local_training_pass_the_same_gate(
    ws: Workspace, dask_run: str, tmp_path: Path
) -> None:
    configure(ws)
    run = run_info(dask_run)
    assert run.tags[TAG_ENGINE] == "dask"
    assert (run.tags[TAG_DASK_WORKERS], run.tags[TAG_DASK_THREADS_PER_WORKER]) == ("2", "1")
    assert int(run.tags[TAG_DASK_PARTITIONS]) >= 1
    assert (run.params["engine"], run.params["workers"], run.params["nthread"]) == (
        "dask",
        "2",
        "1",
    )
    # The same store registry: the store applied its gate and made it the challenger.
    models = {m.run_id: m for m in operator(ws).models()}
    assert models[dask_run].state == "challenger"
    assert models[dask_run].model_sha256 == run.model_sha256
    started = next(
        e for e in events_since(ws, 0) if e.action == "run.started" and e.object_id == dask_run
    )
    parameters = started.payload["parameters"]
    assert (parameters["engine"], parameters["workers"], parameters["nthread"]) == ("dask", 2, 1)
    # The executed notebook says where it trained.
    text = run_notebook(ws, dask_run).read_text(encoding="utf-8")
    assert "Dask workers" in text and "partitions of the snapshot" in text

    # Local training on the very snapshot file, same parameters: the same gate, AUC within 0.01.
    settings = ws.settings()
    snapshot = training_data.reuse_snapshot(ws, run.snapshot_sha256 or "")
    dataset = training_data.load_dataset(snapshot, settings)
    params = TrainParams(num_boost_round=int(FAST["num_boost_round"]), nthread=1)
    model = training.train(dataset, params)
    evaluation = holdout.evaluate(model, dataset, settings)
    comparison = holdout.Comparison(None, None, None, dict(evaluation.metrics))
    assert holdout.apply_gate(evaluation, comparison, settings).passed
    assert abs(evaluation.metrics["auc"] - run.metrics["holdout_auc"]) <= 0.01
    assert model.train_rows == dataset.train_rows
    # MLflow's profile of the dataset counts the rows the workers trained on (not the
    # client's empty frame), and the input example copies none of them.
    import mlflow

    tracked = mlflow.get_run(dask_run)
    assert tracked.inputs is not None and tracked.outputs is not None
    (logged,) = tracked.inputs.dataset_inputs
    assert logged.dataset.profile is not None
    assert json.loads(logged.dataset.profile) == {
        "num_rows": dataset.train_rows,
        "num_elements": dataset.train_rows * dataset.X_train.width,
    }
    assert dataset.train_rows > 0
    (output,) = tracked.outputs.model_outputs
    folder = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{output.model_id}", dst_path=str(tmp_path)
    )
    stored = json.loads((Path(folder) / "input_example.json").read_text())
    example = pl.DataFrame([dict(zip(stored["columns"], stored["data"][0], strict=True))])
    assert example.columns == list(model.features)
    assert not equals_a_row(model, example, dataset.X_train)


def test_a_dask_run_is_reproduced_on_the_same_cluster(
    ws: Workspace, dask_run: str, scheduler: str
) -> None:
    r = hilt_here("retrain", "-w", ws.root, "--reproduce", dask_run, "-p", "scheduler", scheduler)
    assert r.returncode == 0, r.stderr
    assert "identical: the run is reproducible" in r.stdout


def test_another_cluster_shape_or_no_scheduler_is_refused_and_nothing_written(
    ws: Workspace, dask_run: str, scheduler: str
) -> None:
    head = operator(ws).audit_head().seq
    notebooks = len(list(ws.runs_dir.glob("*.ipynb")))
    asks = {"engine": "dask", "scheduler": scheduler, "workers": "3", "nthread": "1"}
    with pytest.raises(
        ClusterError, match=re.escape("has 2 workers x 1 threads; this run needs 3")
    ):
        runner.execute(ws, runner.RunRequest("retrain", asks))
    with pytest.raises(InputError, match="engine dask needs a scheduler"):
        runner.reproduce(ws, dask_run)
    with pytest.raises(InputError, match="tcp://HOST:PORT"):
        runner.execute(ws, runner.RunRequest("retrain", {"engine": "dask", "scheduler": "x:1"}))
    with pytest.raises(InputError, match="workers is for engine dask"):
        runner.execute(ws, runner.RunRequest("retrain", {"workers": "2"}))
    untouched(ws, head, notebooks)


def test_a_bad_scheduler_address_is_a_one_line_cli_error(ws: Workspace, tmp_path: Path) -> None:
    head = operator(ws).audit_head().seq
    notebooks = len(list(ws.runs_dir.glob("*.ipynb")))
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    r = hilt_forked(
        "retrain", "-w", ws.root, "-p", "engine", "dask", "-p", "scheduler", nowhere,
        folder=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert f"no Dask scheduler at {nowhere}" in r.stderr and "Traceback" not in r.stderr
    untouched(ws, head, notebooks)


def test_the_config_takes_an_engine_and_a_scheduler_address() -> None:
    assert Training().engine == "local"
    assert Training(engine="dask", scheduler="tcp://10.0.0.5:8786").scheduler
    with pytest.raises(ValidationError):
        Training(engine="dask", scheduler="10.0.0.5:8786")
    with pytest.raises(ValidationError):
        Training(engine="spark")  # type: ignore[arg-type]


def test_local_training_never_imports_dask() -> None:
    code = (
        "import json, sys\n"
        "import hilt.pipelines.loop.runner, hilt.pipelines.loop.steps.retrain\n"
        "import hilt.pipelines.loop.steps.engine, hilt.pipelines.loop.model_dask\n"
        "print(json.dumps(sorted(m for m in ('dask', 'distributed') if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
