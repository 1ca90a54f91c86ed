"""hilt.pipelines.loop.tracking against a real MLflow (sqlite store in a temporary workspace) with a
real xgboost model trained on the German credit demo data. No fakes."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import nbformat
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.features import training_frame
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.loop.notebook_render import remote_resources
from hilt.pipelines.loop.tracking.client import MLFLOW_SETS, TrackingError, configure
from hilt.pipelines.loop.tracking.environment import (
    DB_FILE,
    URI_ENV,
    artifact_location,
    child_environment,
    experiment_name,
    registered_model_name,
    tracking_uri,
)
from hilt.pipelines.loop.tracking.mirror import GATE_TAG
from hilt.pipelines.loop.tracking.notebooks import log_notebook
from hilt.pipelines.loop.tracking.provenance import xgboost_distribution
from hilt.pipelines.loop.tracking.pyfunc import load_model_version
from hilt.pipelines.loop.tracking.registry import (
    aliases,
    delete_version,
    mirror,
    register_version,
    registry_disagreements,
)
from hilt.pipelines.loop.tracking.runs import (
    create_run,
    finish_run,
    list_runs,
    mark_failed,
    run_info,
    start_run,
)
from hilt.pipelines.loop.tracking.training import LoggedTraining, log_training
from hilt.pipelines.loop.tracking.training_log import equals_a_row, synthetic_input_example
from hilt.pipelines.store.registry_records import ModelEvaluation, ModelRecord
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, REPO
from tests.loop_helpers import empty_tracking_store

SNAPSHOT_SHA = "5e" * 32


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


@pytest.fixture(scope="module")
def german(cases_frame: pl.DataFrame) -> pl.DataFrame:
    """The 1,000 demo cases (text columns, as `hilt ingest` reads them)."""
    return cases_frame


def train(german: pl.DataFrame, settings: Settings, seed: int = 0) -> TrainedModel:
    X, y = training_frame(german.head(700), settings, label_column=settings.target.column)
    return fit(X, y, TrainParams(num_boost_round=25, seed=seed))


@pytest.fixture(scope="module")
def model(german: pl.DataFrame, settings: Settings) -> TrainedModel:
    return train(german, settings)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Workspace:
    """A workspace folder with only MLflow in it (the store is not needed here), its MLflow
    tables as `hilt init` leaves them (``test_every_artifact_...`` has configure create
    them)."""
    ws = Workspace.at(tmp_path_factory.mktemp("tracking") / "ws")
    ws.root.mkdir(parents=True)
    shutil.copyfile(empty_tracking_store(), ws.root / DB_FILE)
    configure(ws, settings=settings)
    return ws


@pytest.fixture
def configured(ws: Workspace, settings: Settings) -> Iterator[MlflowClient]:
    """MLflow pointed at the module's workspace; no run left active afterwards."""
    client = configure(ws, settings=settings)
    yield client
    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")


def subgroups(settings: Settings) -> pl.DataFrame:
    """A subgroup table shaped like the evaluation's: group labels are aggregates' names."""
    return pl.DataFrame(
        {
            "attribute": [settings.fields.protected[0]] * 2,
            "group": settings.columns[settings.fields.protected[0]].levels or ["a", "b"],
            "n": [300, 400],
            "auc": [0.71, 0.74],
        }
    )


def log_a_run(
    ws: Workspace,
    settings: Settings,
    model: TrainedModel,
    german: pl.DataFrame,
    *,
    author: str = "dana",
    seq: int = 12,
) -> tuple[str, LoggedTraining]:
    with start_run(
        ws, settings, run_name=f"retrain-{seq}", author=author, tags={"hilt.kind": "retrain"}
    ) as run:
        logged = log_training(
            run,
            params=model.params.to_dict(),
            metrics={"holdout_auc": 0.77, "holdout_logloss": 0.52, "subgroup_auc_gap": 0.03},
            subgroup_table=subgroups(settings),
            dataset_frame=german,
            dataset_name=f"snapshot-{seq}",
            dataset_digest=SNAPSHOT_SHA,
            snapshot_seq=seq,
            model=model,
        )
    return run.info.run_id, logged


@pytest.fixture(scope="module")
def logged(
    ws: Workspace, settings: Settings, model: TrainedModel, german: pl.DataFrame
) -> tuple[str, LoggedTraining]:
    configure(ws, settings=settings)
    return log_a_run(ws, settings, model, german)


def artifact_dir(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(dst)))


def served_input(model: TrainedModel, cases: pl.DataFrame) -> Any:
    """What a client of the served model sends: numbers as numbers, categories as text."""
    return model.matrix(cases).with_columns(pl.col(pl.Enum).cast(pl.String)).to_pandas()


def model_dir(logged: LoggedTraining, dst: Path) -> Path:
    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=logged.model_uri, dst_path=str(dst))
    )


# ------------------------------------------------------------------ configuration
def test_the_tracking_uri_is_the_workspace_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    w = Workspace.at(tmp_path / "w")
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # local: ignored
    assert tracking_uri(w) == f"sqlite:///{w.root}/mlflow.db"
    assert tracking_uri(w, "http://mlflow:5000") == "http://mlflow:5000"
    monkeypatch.setenv(URI_ENV, "http://tracking.internal")
    assert tracking_uri(w) == "http://tracking.internal"
    assert artifact_location(w, "http://tracking.internal") is None
    assert artifact_location(w, "sqlite:///x.db") == (w.root / "mlartifacts").as_uri()
    assert registered_model_name(settings) == f"hilt-{settings.use_case.name}"
    odd = settings.model_copy(
        update={"use_case": settings.use_case.model_copy(update={"name": "a/b:c"})}
    )
    assert registered_model_name(odd) == "hilt-a-b-c"


def python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (nothing configured, nothing imported yet)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_configure_is_idempotent_and_keeps_everything_in_the_workspace(
    ws: Workspace, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = configure(ws, settings=settings)
    exp = first.get_experiment_by_name(f"hilt-{settings.use_case.name}")
    assert exp is not None
    second = configure(ws, settings=settings)
    again = second.get_experiment_by_name(f"hilt-{settings.use_case.name}")
    assert again is not None and again.experiment_id == exp.experiment_id
    assert exp.artifact_location == (ws.root / "mlartifacts").as_uri()
    assert mlflow.get_tracking_uri() == f"sqlite:///{ws.root}/mlflow.db"
    assert mlflow.get_registry_uri() == f"sqlite:///{ws.root}/mlflow.db"
    assert (ws.root / "mlflow.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no ./mlflow.db, no ./mlruns


def test_new_workspaces_copy_mlflow_s_empty_tables_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """`hilt init` (``configure``) copies MLflow's empty tables, made once per user and MLflow
    version, instead of running MLflow's migrations for every new workspace; the template
    never receives a workspace's experiment, and a copy never replaces a store that exists."""
    from hilt.pipelines.loop.tracking.client import copy_new, tracking_store_template

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(URI_ENV, raising=False)
    template = tracking_store_template()
    assert template is not None and template.parent == tmp_path / "cache" / "hilt"
    assert sorted(p.name for p in template.parent.iterdir()) == [template.name]  # no half file
    made = template.stat()
    for name in ("a", "b"):
        ws = Workspace.at(tmp_path / name)
        client = configure(ws, settings=settings)
        assert client.get_experiment_by_name(experiment_name(settings)) is not None
        assert (ws.root / DB_FILE).is_file()
        assert [p.name for p in ws.root.iterdir()] == [DB_FILE]  # no copy left beside it
    assert tracking_store_template() == template
    now = template.stat()
    assert (now.st_ino, now.st_mtime_ns, now.st_size) == (
        made.st_ino,
        made.st_mtime_ns,
        made.st_size,
    )
    names = [e.name for e in MlflowClient(f"sqlite:///{template}").search_experiments()]
    assert names == ["Default"]
    # A store made meanwhile by another process is kept, not replaced.
    theirs = tmp_path / "theirs.db"
    theirs.write_bytes(b"theirs")
    copy_new(template, theirs)
    assert theirs.read_bytes() == b"theirs"
    # No cache folder to write to: nothing copied, MLflow makes the tables itself.
    monkeypatch.setenv("XDG_CACHE_HOME", str(theirs))
    assert tracking_store_template() is None
    copy_new(None, tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


def test_every_artifact_and_the_model_files_land_in_the_workspace(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    model: TrainedModel,
    german: pl.DataFrame,
) -> None:
    """As the retraining notebook logs (a run id, no active run), from an unrelated current
    directory: nothing lands there, and the logged model belongs to the workspace's experiment
    with its files under <ws>/mlartifacts (MLflow would otherwise put a LoggedModel into its
    Default experiment, id 0, whose artifacts go to ./mlruns)."""
    ws = Workspace.at(tmp_path / "ws")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(URI_ENV, raising=False)
    client = configure(ws, settings=settings)
    assert (ws.root / DB_FILE).is_file()  # made by configure, in the workspace
    run_id = create_run(ws, settings, run_name="retrain-7", author="dana")
    assert mlflow.active_run() is None
    logged = log_training(
        run_id,
        params=model.params.to_dict(),
        metrics={"holdout_auc": 0.77},
        subgroup_table=subgroups(settings),
        dataset_frame=german,
        dataset_name="snapshot-7",
        dataset_digest=SNAPSHOT_SHA,
        snapshot_seq=7,
        model=model,
    )
    finish_run(run_id)
    assert sorted(p.name for p in cwd.iterdir()) == []  # no ./mlruns, no ./mlflow.db

    exp = client.get_experiment_by_name(experiment_name(settings))
    assert exp is not None
    logged_model = client.get_logged_model(logged.model_id)
    assert logged_model.experiment_id == exp.experiment_id != "0"
    artifacts = (ws.root / "mlartifacts").as_uri()
    assert logged_model.artifact_location.startswith(artifacts + "/"), (
        logged_model.artifact_location
    )
    assert client.get_run(run_id).info.artifact_uri.startswith(artifacts + "/")
    files = [p for p in (ws.root / "mlartifacts").rglob("*") if p.is_file()]
    assert any(p.name == "model.ubj" for p in files)

    # Registered and loaded from yet another directory: the workspace alone holds the model.
    version = register_version(settings, run_id)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert load_model_version(settings, version).model_sha256() == model.model_sha256()
    assert sorted(p.name for p in other.iterdir()) == []


TRACKING_MODULES = sorted(
    f"hilt.pipelines.loop.tracking.{p.stem}"
    for p in (REPO / "pipelines" / "loop" / "tracking").glob("*.py")
    if p.stem != "__init__"
)


def test_importing_tracking_changes_nothing_and_configuring_it_switches_telemetry_off(
    tmp_path: Path,
) -> None:
    """In a fresh interpreter (nothing configured, nothing imported yet): importing hilt's
    tracking modules changes no environment variable; nothing works before ``configure``
    (one error naming it); ``configure`` switches telemetry and progress bars off and leaves
    the variables MLflow would set for child processes as they were."""
    quiet = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY"}
    quiet |= {"DO_NOT_TRACK", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", URI_ENV}
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    # What mlflow and polars do to the environment when imported is theirs; hilt's modules
    # add nothing to it.
    code = (
        "import os\n"
        "import mlflow, polars\n"
        "before = dict(os.environ)\n"
        + "".join(f"import {m}\n" for m in TRACKING_MODULES)
        + f"print(dict(os.environ) == before and not os.environ.keys() & {quiet!r})\n"
        "from hilt.pipelines.loop.tracking.client import TrackingError\n"
        "from hilt.pipelines.loop.tracking.runs import run_info\n"
        "try:\n"
        "    run_info('0' * 32)\n"
        "except TrackingError as e:\n"
        "    print(e)\n"
        "from hilt.pipelines.config import load_settings\n"
        "from hilt.pipelines.loop.tracking.client import configure\n"
        "from hilt.pipelines.workspace import Workspace\n"
        f"ws = Workspace.at({str(tmp_path / 'ws')!r})\n"
        f"kept = {MLFLOW_SETS!r}\n"
        "where = {k: os.environ.get(k) for k in kept}\n"
        f"configure(ws, settings=load_settings({str(CONFIG)!r}))\n"
        "from mlflow.telemetry.client import get_telemetry_client\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "print(get_telemetry_client() is None, is_telemetry_disabled())\n"
        "print(os.environ['MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR'])\n"
        # MLflow's set_tracking_uri / set_experiment write these for child processes:
        # configure keeps them as they were (a later command would read them as the user's).
        "print({k: os.environ.get(k) for k in kept} == where)\n"
        "print(mlflow.get_tracking_uri().endswith('/ws/mlflow.db'))\n"
    )
    # MLflow's tables as `hilt init` leaves them (its migrations are not the subject here).
    (tmp_path / "ws").mkdir()
    shutil.copyfile(empty_tracking_store(), tmp_path / "ws" / DB_FILE)
    out = python(code, env)
    assert out.returncode == 0, out.stderr[-2000:]
    first, before_configure, *rest = out.stdout.splitlines()
    assert re.search(r"call hilt\.pipelines\.loop\.tracking\.client\.configure", before_configure)
    assert " ".join([first, *rest]).split() == ["True", "True", "True", "false", "True", "True"]


def test_a_kernel_starts_with_mlflow_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the runner adds to a papermill kernel's environment: the kernel's own
    ``import mlflow`` starts no telemetry client and MLflow draws no progress bars."""
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.setenv(URI_ENV, "http://mlflow.internal")
    env = child_environment()
    assert env["MLFLOW_DISABLE_TELEMETRY"] == env["DO_NOT_TRACK"] == "true"
    assert env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert env[URI_ENV] == "http://mlflow.internal"


def test_no_other_module_imports_mlflow_at_import_time() -> None:
    """mlflow costs ~1-2 s to import: only the modules of tracking/ import it (or import
    such a module) at module level; everything else does so inside the functions that need
    it. tracking's tags and environment import no mlflow, so anything may import them."""

    def top_level_imports(tree: ast.Module) -> Iterator[str]:
        stack: list[ast.stmt] = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield node.module
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    stack.extend(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                stack.extend(node.body + node.orelse + node.finalbody)
                for handler in node.handlers:
                    stack.extend(handler.body)

    mlflow_free = {
        "hilt.pipelines.loop.tracking.tags",
        "hilt.pipelines.loop.tracking.environment",
        "hilt.pipelines.loop.tracking.mirror",
    }
    offenders = []
    for path in sorted((REPO / "pipelines").rglob("*.py")):
        if path.parent.name == "tracking" and path.name != "__init__.py":
            continue
        for mod in top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                mod == "mlflow"
                or mod.startswith("mlflow.")
                or (mod.startswith("hilt.pipelines.loop.tracking") and mod not in mlflow_free)
            ):
                offenders.append(f"{path.relative_to(REPO)} imports {mod}")
    assert offenders == []
    # ...and importing what the runner, the notebooks and the documents import pulls no mlflow.
    light = [
        "hilt.pipelines.loop.tracking",
        *sorted(mlflow_free),
        "hilt.pipelines.loop.runner",
        "hilt.pipelines.loop.promotion",
        "hilt.pipelines.loop.model_registry",
        "hilt.pipelines.loop.steps.start",
        "hilt.pipelines.loop.steps.training_data",
        "hilt.pipelines.loop.steps.training",
        "hilt.pipelines.loop.steps.holdout",
        "hilt.pipelines.loop.steps.retrain",
        "hilt.pipelines.loop.steps.score",
        "hilt.pipelines.compliance.lineage",
        "hilt.pipelines.compliance.model_docs",
        "hilt.pipelines.compliance.privacy",
    ]
    out = python(
        "".join(f"import {m}\n" for m in light) + "import sys\nprint('mlflow' in sys.modules)\n"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False"]


# ------------------------------------------------------------------ a training run
def test_a_training_run_logs_params_metrics_dataset_model_and_provenance(
    configured: MlflowClient,
    logged: tuple[str, LoggedTraining],
    model: TrainedModel,
    german: pl.DataFrame,
    settings: Settings,
    tmp_path: Path,
) -> None:
    run_id, info = logged
    run = configured.get_run(run_id)
    assert run.info.status == "FINISHED"
    # params: the training parameters as given, and the snapshot
    params = run.data.params
    for k, v in model.params.to_dict().items():
        assert params[k] == str(v)
    assert params["hilt.snapshot_seq"] == "12"
    assert params["hilt.snapshot_sha256"] == SNAPSHOT_SHA
    assert params["hilt.dataset_name"] == "snapshot-12"
    assert run.data.metrics == {
        "holdout_auc": 0.77,
        "holdout_logloss": 0.52,
        "subgroup_auc_gap": 0.03,
    }
    # tags: author, git, versions, model and snapshot
    tags = run.data.tags
    assert tags["hilt.author"] == tags["mlflow.user"] == "dana"
    assert tags["hilt.kind"] == "retrain"
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    expected_commit = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert tags["hilt.git_commit"] == expected_commit
    assert tags["hilt.git_dirty"] in ("true", "false", "unknown")
    for pkg in ("hilt", "xgboost", "polars", "duckdb", "mlflow", "papermill", "python"):
        assert tags[f"hilt.version.{pkg}"] not in ("", "not installed"), pkg
    assert tags["hilt.version.mlflow"] == mlflow.__version__
    # XGBoost as its distribution installed it (xgboost-cpu here): the version of the module
    # that trained, in the tags and pinned in the model's requirements (MLflow imports a
    # requirement it cannot find installed: xgboost with scikit-learn, in the runner).
    xgboost_version = sys.modules["xgboost"].__version__
    assert tags["hilt.version.xgboost"] == xgboost_version
    dist = xgboost_distribution()
    assert importlib.metadata.version(dist) == xgboost_version
    requirements = Path(mlflow.pyfunc.get_model_dependencies(info.model_uri)).read_text()
    assert f"{dist}=={xgboost_version}" in requirements.split()
    assert tags["hilt.model_sha256"] == model.model_sha256() == info.model_sha256
    assert tags["hilt.snapshot_seq"] == "12"
    assert tags["hilt.snapshot_sha256"] == SNAPSHOT_SHA
    # the dataset input: our digest (MLflow allows 36 characters), the full one as a tag
    assert run.inputs is not None
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == SNAPSHOT_SHA[:32] == info.dataset_digest
    assert inp.dataset.name == "snapshot-12"
    input_tags = {t.key: t.value for t in inp.tags}
    assert input_tags == {"mlflow.data.context": "training", "hilt.sha256": SNAPSHOT_SHA}
    assert inp.dataset.profile is not None and inp.dataset.schema is not None
    assert json.loads(inp.dataset.profile) == {
        "num_rows": german.height,
        "num_elements": german.height * german.width,
    }
    schema = json.loads(inp.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == german.columns
    # the model: pyfunc with a signature, scoring like the TrainedModel
    assert info.model_uri == f"models:/{info.model_id}"
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    sig = pyfunc.metadata.get_input_schema()
    assert sig is not None and sig.input_names() == list(model.features)
    out_schema = pyfunc.metadata.get_output_schema()
    assert out_schema is not None and out_schema.input_names() == ["score"]
    cases = german.slice(700, 300)
    served = pyfunc.predict(served_input(model, cases))
    np.testing.assert_allclose(served["score"].to_numpy(), model.predict(cases), rtol=1e-6)
    # the subgroup table, an artifact of the run
    table = artifact_dir(configured, run_id, "evaluation", tmp_path) / "subgroup_metrics.csv"
    assert pl.read_csv(table).equals(subgroups(settings))


def _scan_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def test_nothing_personal_reaches_mlflow(
    configured: MlflowClient,
    logged: tuple[str, LoggedTraining],
    model: TrainedModel,
    german: pl.DataFrame,
    settings: Settings,
    tmp_path: Path,
) -> None:
    run_id, info = logged
    run = configured.get_run(run_id)
    assert run.inputs is not None
    ds = run.inputs.dataset_inputs[0].dataset
    # Text values of the personal columns (e.g. sex), and the subjects' and cases' ids.
    personal_text = {
        v
        for col in settings.fields.personal
        for v in german[col].unique().to_list()
        if v is not None and not re.fullmatch(r"[\d.]+", v)
    }
    ids = [settings.use_case.id_column, settings.use_case.subject_column]
    identifiers = set(german.select(c for c in ids if c).unpivot()["value"].to_list())
    assert personal_text  # the demo has some (sex), else this test proves nothing
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(v) for v in sorted(personal_text | identifiers)) + r")\b"
    )

    example_dir = model_dir(info, tmp_path / "model")
    scanned = {
        "params": _scan_text(run.data.params),
        "tags": _scan_text(run.data.tags),
        "metrics": _scan_text(run.data.metrics),
        "dataset": _scan_text([ds.name, ds.digest, ds.source, ds.schema, ds.profile]),
        "input_example": (example_dir / "input_example.json").read_text(),
        "serving_input_example": (example_dir / "serving_input_example.json").read_text(),
        "MLmodel": (example_dir / "MLmodel").read_text(),
        "sidecar": (example_dir / "data" / "hilt_model" / "model.json").read_text(),
    }
    found = {where: pattern.findall(text) for where, text in scanned.items()}
    assert {k: v for k, v in found.items() if v} == {}

    # Every other text artifact of the run, except the subgroup table (group-level aggregates
    # named by the protected attribute's levels, by design).
    run_files = artifact_dir(configured, run_id, "", tmp_path / "run")
    for path in run_files.rglob("*"):
        if path.is_file() and path.name != "subgroup_metrics.csv":
            assert not pattern.findall(path.read_text(errors="replace")), path.name

    # The input example is made up: not one of the real rows, as the model sees them.
    stored = json.loads(scanned["input_example"])
    example = pl.DataFrame([dict(zip(stored["columns"], stored["data"][0], strict=True))])
    assert example.columns == list(model.features)
    real = model.matrix(german)
    mine = model.matrix(example)
    same = pl.all_horizontal(pl.col(f).eq_missing(mine[f][0]) for f in model.features)
    assert real.filter(same).height == 0
    assert info.input_example.equals(example.select(info.input_example.columns))


def test_the_input_example_never_copies_a_real_row(
    model: TrainedModel, german: pl.DataFrame, settings: Settings
) -> None:
    example = synthetic_input_example(model)
    assert example.height == 1 and example.columns == list(model.features)
    # Data that happens to contain the default example: the numbers move off its grid.
    extra = {c: None for c in german.columns if c not in model.features}
    base = example.to_dicts()[0]
    colliding = pl.concat(
        [german, pl.DataFrame([{**base, **extra}]).cast(pl.String)], how="diagonal"
    )
    moved = synthetic_input_example(model, colliding)
    assert not moved.equals(example)
    assert not equals_a_row(model, moved, colliding)
    # ...and if that collides as well, every value is left missing.
    moved_row = {**moved.to_dicts()[0], **extra}
    both = pl.concat([colliding, pl.DataFrame([moved_row]).cast(pl.String)], how="diagonal")
    blank = synthetic_input_example(model, both)
    assert blank.null_count().row(0) == (1,) * len(model.features)

    # The same when the rows come a batch at a time (a training on a cluster left them on
    # the snapshot file): the colliding rows are in the last batches.
    def batches() -> Iterator[pl.DataFrame]:
        return both.iter_slices(100)

    assert synthetic_input_example(model, batches).equals(blank)
    assert equals_a_row(model, example, batches) and equals_a_row(model, moved, batches)
    assert not equals_a_row(model, moved, lambda: german.iter_slices(100))

    # A caller's example that is a real row is refused before anything is logged.
    with pytest.raises(InputError, match="equals a row of the training data"):
        log_training(
            "no-run-needed",
            params={},
            metrics={},
            subgroup_table=None,
            dataset_frame=german,
            dataset_name="s",
            dataset_digest=SNAPSHOT_SHA,
            snapshot_seq=1,
            model=model,
            model_input_example=german.slice(3, 1),
        )


def test_log_training_refuses_bad_input_before_logging(
    configured: MlflowClient, model: TrainedModel, german: pl.DataFrame
) -> None:
    def call(**over: Any) -> None:
        kwargs: dict[str, Any] = {
            "params": {},
            "metrics": {},
            "subgroup_table": None,
            "dataset_frame": german,
            "dataset_name": "s",
            "dataset_digest": SNAPSHOT_SHA,
            "snapshot_seq": 1,
            "model": model,
        }
        log_training("no-run-needed", **{**kwargs, **over})

    with pytest.raises(InputError, match="sha256"):
        call(dataset_digest="abc")
    with pytest.raises(InputError, match="snapshot_seq"):
        call(snapshot_seq=-1)
    with pytest.raises(InputError, match="reserved"):
        call(params={"hilt.snapshot_seq": 3})
    with pytest.raises(InputError, match="not a number"):
        call(metrics={"auc": "high"})


# ------------------------------------------------------------------ run status
def test_runs_end_finished_or_failed(
    configured: MlflowClient, ws: Workspace, settings: Settings
) -> None:
    # A runner creates the run, the notebook resumes it; a dead kernel is marked failed.
    run_id = create_run(ws, settings, run_name="retrain-x", author="dana")
    assert run_info(run_id).status == "RUNNING"
    mark_failed(run_id)
    assert run_info(run_id).status == "FAILED"
    with pytest.raises(TrackingError, match="FAILED"):
        register_version(settings, run_id)

    # Resumed in-process, then finished.
    other = create_run(ws, settings, run_name="retrain-y", author="dana")
    run = start_run(ws, settings, run_name="ignored", author="dana", run_id=other)
    assert mlflow.active_run() is not None and run.info.run_id == other
    finish_run(run)
    assert mlflow.active_run() is None
    assert run_info(other).status == "FINISHED"

    # An exception inside the context manager fails the run; so does mark_failed on the
    # active run.
    with (
        pytest.raises(RuntimeError),
        start_run(ws, settings, run_name="boom", author="dana") as failing,
    ):
        raise RuntimeError("cell failed")
    assert run_info(failing.info.run_id).status == "FAILED"
    active = start_run(ws, settings, run_name="killed", author="dana")
    mark_failed(active.info.run_id)
    assert mlflow.active_run() is None
    assert run_info(active.info.run_id).status == "FAILED"

    with pytest.raises(InputError, match="author"):
        start_run(ws, settings, run_name="anon", author=" ")


def test_run_info_has_what_runs_list_and_reproduce_need(
    configured: MlflowClient,
    logged: tuple[str, LoggedTraining],
    model: TrainedModel,
    settings: Settings,
) -> None:
    run_id, _ = logged
    rec = run_info(run_id)
    assert rec.run_id == run_id and rec.run_name == "retrain-12"
    assert rec.status == "FINISHED" and rec.author == "dana"
    assert rec.params == {k: str(v) for k, v in model.params.to_dict().items()}
    assert TrainParams.from_mapping(rec.params) == model.params
    assert rec.snapshot_seq == 12 and rec.snapshot_sha256 == SNAPSHOT_SHA
    assert rec.model_sha256 == model.model_sha256()
    assert rec.metrics["holdout_auc"] == 0.77
    assert rec.start_time.tzinfo is not None and rec.end_time is not None
    assert rec.start_time <= rec.end_time
    listed = list_runs(settings)
    assert run_id in [r.run_id for r in listed]
    starts = [r.start_time for r in listed]
    assert starts == sorted(starts, reverse=True)


# ------------------------------------------------------------------ the registry
@pytest.fixture
def registry_case(
    configured: MlflowClient, settings: Settings, request: pytest.FixtureRequest
) -> Settings:
    """Settings of a use case of its own, so each registry test starts with no versions."""
    use_case = settings.use_case.model_copy(update={"name": f"reg-{request.node.name[-20:]}"})
    return settings.model_copy(update={"use_case": use_case})


def record(name: str, version: str, run_id: str, sha: str, state: str) -> ModelRecord:
    """A version as the store's registry would hold it (what ``mirror`` is given)."""
    return ModelRecord(
        model=f"{name}/v{version}",
        model_sha256=sha,
        run_id=run_id,
        author="dana",
        gate="rejected" if state == "rejected" else "passed",
        checks=[],
        evaluation=ModelEvaluation(snapshot_sha256=SNAPSHOT_SHA, metrics={}, gaps={}),
        state=state,  # type: ignore[arg-type]
        shadow=False,
        registered_at="2026-01-01T00:00:00.000000Z",
        registered_seq=int(version),
        decided_by=None,
        decided_seq=None,
    )


def test_mlflow_mirrors_the_stores_registry_aliases_and_tags(
    ws: Workspace,
    registry_case: Settings,
    model: TrainedModel,
    german: pl.DataFrame,
    settings: Settings,
) -> None:
    """MLflow gives a run's model a version and no alias; the store's registry decides what
    it becomes, and ``mirror`` makes MLflow's aliases and version tags say the same."""
    s = registry_case
    configure(ws, settings=s)
    name = registered_model_name(s)
    client = MlflowClient()
    assert aliases(s) == {}

    run1, _ = log_a_run(ws, s, model, german, seq=1)
    v1 = register_version(s, run1)
    assert register_version(s, run1) == v1  # again: the same version
    assert aliases(s) == {}  # no alias until the store has decided
    sha1 = model.model_sha256()
    store = [record(name, v1, run1, sha1, "challenger")]
    # Before the mirror, MLflow disagrees with the store on the alias and the state tag.
    assert [d.item for d in registry_disagreements(s, store)] == [
        "alias challenger",
        f"{name}/v{v1} hilt.gate",
    ]
    mirror(s, store)
    assert aliases(s) == {"challenger": v1}
    assert registry_disagreements(s, store) == []
    store = [record(name, v1, run1, sha1, "champion")]
    mirror(s, store)
    assert aliases(s) == {"champion": v1}
    assert client.get_model_version(name, v1).tags["hilt.gate"] == "promoted"

    challenger = train(german, settings, seed=1)
    run2, _ = log_a_run(ws, s, challenger, german, seq=2)
    v2 = register_version(s, run2)
    assert v2 != v1
    sha2 = challenger.model_sha256()
    store.append(record(name, v2, run2, sha2, "challenger"))
    mirror(s, store)
    assert aliases(s) == {"champion": v1, "challenger": v2}
    store[1] = record(name, v2, run2, sha2, "rejected")
    mirror(s, store)
    assert aliases(s) == {"champion": v1}
    mv2 = client.get_model_version(name, v2)
    assert mv2.tags["hilt.gate"] == "rejected"
    assert mv2.tags["hilt.model_sha256"] == sha2

    run3, _ = log_a_run(ws, s, challenger, german, seq=3)
    v3 = register_version(s, run3)
    store[0] = record(name, v1, run1, sha1, "retired")
    store.append(record(name, v3, run3, sha2, "champion"))
    mirror(s, store)
    assert aliases(s) == {"champion": v3}
    tags = {v: client.get_model_version(name, v).tags["hilt.gate"] for v in (v1, v2, v3)}
    assert tags == {v1: GATE_TAG["retired"], v2: "rejected", v3: "promoted"}
    rec = run_info(run3)
    assert rec.versions == (v3,) and rec.aliases == ("champion",)
    # Aliases only: no version ever got a (deprecated) stage.
    for v in (v1, v2, v3):
        assert client.get_model_version(name, v).current_stage == "None"

    # Someone edits MLflow by hand: each fact it now states otherwise is named.
    client.set_registered_model_alias(name, "champion", v1)
    client.set_model_version_tag(name, v2, "hilt.model_sha256", "0" * 64)
    found = {d.item: (d.store, d.mlflow) for d in registry_disagreements(s, store)}
    assert found == {
        "alias champion": (v3, v1),
        f"{name}/v{v2} hilt.model_sha256": (sha2, "0" * 64),
    }
    # The mirror puts both right; a version the store never registered stays a
    # disagreement until it is removed.
    run4, _ = log_a_run(ws, s, challenger, german, seq=4)
    v4 = register_version(s, run4)
    mirror(s, store)
    assert aliases(s) == {"champion": v3}
    assert [(d.item, d.store) for d in registry_disagreements(s, store)] == [
        (f"{name}/v{v4}", None)
    ]
    delete_version(s, v4)
    assert registry_disagreements(s, store) == []


def test_a_registered_version_loads_as_the_same_model(
    ws: Workspace, registry_case: Settings, model: TrainedModel, german: pl.DataFrame
) -> None:
    s = registry_case
    configure(ws, settings=s)
    run_id, _ = log_a_run(ws, s, model, german, seq=5)
    version = register_version(s, run_id)
    name = registered_model_name(s)
    mirror(s, [record(name, version, run_id, model.model_sha256(), "challenger")])
    loaded = load_model_version(s, version)
    assert loaded.model_sha256() == model.model_sha256()
    assert loaded.features == model.features and loaded.params == model.params
    cases = german.slice(700, 300)
    np.testing.assert_array_equal(loaded.predict(cases), model.predict(cases))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@challenger")
    served = pyfunc.predict(served_input(model, cases))["score"].to_numpy()
    np.testing.assert_allclose(served, model.predict(cases), rtol=1e-6)
    with pytest.raises(TrackingError):
        load_model_version(s, 99)


# ------------------------------------------------------------------ notebooks
def executed_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["title"] = "retrain"
    nb.cells.append(nbformat.v4.new_markdown_cell("# Retrain\nThe loss is $\\ell(y, p)$."))
    code = nbformat.v4.new_code_cell("print('auc', 0.77)")
    code.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="auc 0.77\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgY"
                "GD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==",
                "text/plain": "<Figure>",
            },
        ),
    ]
    nb.cells.append(code)
    # Widget state makes nbconvert add the widget manager from unpkg unless told not to.
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {},
            "version_major": 2,
            "version_minor": 0,
        }
    }
    nbformat.write(nb, str(path))
    return path


def test_the_executed_notebook_and_an_offline_html_are_logged(
    configured: MlflowClient, logged: tuple[str, LoggedTraining], tmp_path: Path
) -> None:
    run_id, _ = logged
    ipynb = executed_notebook(tmp_path / "2026-01-01T00-00-00_retrain_abc.ipynb")
    paths = log_notebook(run_id, ipynb)
    assert paths == (f"notebook/{ipynb.name}", f"notebook/{ipynb.stem}.html")
    got = artifact_dir(configured, run_id, "notebook", tmp_path / "dl")
    assert (got / ipynb.name).read_bytes() == ipynb.read_bytes()
    html = (got / f"{ipynb.stem}.html").read_text(encoding="utf-8")
    assert "auc 0.77" in html and "data:image/png;base64," in html
    assert "https://" not in html and "http://" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"<link[^>]*\bhref=", html)
    assert remote_resources(html) == []


def test_remote_resources_finds_fetches_not_links() -> None:
    found = remote_resources(
        '<script src="https://cdn.example/x.js"></script>'
        "<link rel=stylesheet href='//cdn.example/x.css'>"
        '<style>@import url("https://fonts.example/f.css"); a{background:url(http://x/y.png)}'
        "</style><script>import('https://esm.example/m.js')</script>"
        '<a href="https://eur-lex.europa.eu">AI Act</a><img src="data:image/png;base64,AAAA">'
    )
    assert len(found) == 5
    assert all("eur-lex" not in f for f in found)
