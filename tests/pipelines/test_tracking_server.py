"""A shared MLflow server (``[tracking] uri``): a real ``mlflow server`` (SQLite backend and
artifact folder in tmp, loopback, one worker) started once for the module. A retraining,
its promotion and a scoring run go through it: no MLflow file appears in the workspace (or
the current folder), the run's notebook (with its figures), model and dataset are read back
through the server, and MLflow's registry mirrors the store's. A server that is down is one
line and nothing is written. Also: which URI wins, credentials kept out of hilt.toml, and a
change of the server needing a second lead."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from hilt.pipelines.config import Settings, parse_settings
from hilt.pipelines.errors import ConfigError
from hilt.pipelines.loop import runner
from hilt.pipelines.loop.tracking.environment import (
    MLFLOW_URI_ENV,
    URI_ENV,
    TrackingUnavailable,
    child_environment,
    tracking_choice,
)
from hilt.pipelines.loop.tracking.tags import TAG_SNAPSHOT_SHA256
from hilt.pipelines.loop.tracking.ui import SERVER_ENVIRONMENT
from hilt.pipelines.store.config_rules import loosened, shown_values
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, free_port, operator
from tests.loop_helpers import (
    LABELLED,
    empty_tracking_store,
    hilt_forked,
    loop_workspace,
    new_cases_file,
)

MLFLOW = str(Path(sys.executable).parent / "mlflow")
#: What a local MLflow store leaves behind (in the workspace, or in the current folder).
LOCAL_STORE = ("mlflow.db", "mlartifacts", "mlruns")
STARTUP_DEADLINE_S = 90.0


@dataclass
class Server:
    url: str
    artifacts: Path
    process: subprocess.Popen[bytes]
    log: Path

    def wait_healthy(self) -> None:
        """Poll /health until it answers 200, with a deadline."""
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"mlflow server did not become healthy: {tail}")

    def stop(self) -> None:
        """Stop the server and the worker it started (its own process group)."""
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                return
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``mlflow server`` started (not yet waited for: ``ws`` builds the workspace meanwhile)
    and stopped at the end of the module, whatever happened."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = folder / "server.log"
    # MLflow's tables made once per test process (its migrations take seconds), as a server
    # restarted on its database finds them.
    shutil.copyfile(empty_tracking_store(), folder / "backend.db")
    # Without MLflow's job runner (its seven huey consumers), as `hilt tracking ui` starts it.
    env = {**os.environ, **child_environment(), **SERVER_ENVIRONMENT}
    with log.open("wb") as out:
        # fmt: off
        command = [
            MLFLOW, "server",
            "--backend-store-uri", f"sqlite:///{(folder / 'backend.db').as_posix()}",
            "--artifacts-destination", str(folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]
        # fmt: on
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
    running = Server(f"http://127.0.0.1:{port}", folder / "artifacts", process, log)
    try:
        yield running
    finally:
        running.stop()


def config_naming(folder: Path, uri: str) -> Path:
    """The demo hilt.toml with ``[tracking] uri = uri``."""
    path = folder / "hilt.toml"
    path.write_text(CONFIG.read_text() + f'\n[tracking]\nuri = "{uri}"\n')
    return path


@pytest.fixture(scope="module")
def ws(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("tracking-server")
    made = loop_workspace(root, config=config_naming(root, server.url), tracking=False)
    server.wait_healthy()
    return made


def local_store_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for n in LOCAL_STORE for p in folder.rglob(n))


@pytest.mark.slow
def test_retrain_promote_and_score_go_through_the_server(
    ws: Workspace,
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow.artifacts
    from mlflow import MlflowClient

    from hilt.pipelines.cli.workspace import init
    from hilt.pipelines.loop.model_registry import mlflow_disagreements
    from hilt.pipelines.loop.promotion import promote
    from hilt.pipelines.loop.tracking.environment import registered_model_name

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MLFLOW_URI_ENV, raising=False)
    settings = ws.settings()
    trained = runner.execute(
        ws, runner.RunRequest("retrain", {"num_boost_round": "60"}, author="dana")
    )
    assert trained.gate == "passed" and trained.version == "1"
    promoted = promote(ws, trained.run_id, "max")
    assert promoted.mirror_problem is None
    cases = new_cases_file(tmp_path / "new.csv", LABELLED, 8)
    scored = runner.execute(ws, runner.RunRequest("score", {"input_path": str(cases)}, "dana"))
    assert scored.metrics["predictions_added"] == 8

    # `hilt init` of another workspace on the same server: its experiment is there already.
    fresh = tmp_path / "fresh"
    init(config_naming(tmp_path, server.url), fresh)
    assert f"MLflow tracking store: {server.url}\n" in capsys.readouterr().out
    # No local MLflow store: not in the workspaces, not in the current folder.
    assert local_store_files(fresh) == []
    assert local_store_files(ws.root) == []
    assert sorted(cwd.iterdir()) == []
    # Everything went through the server, into its artifact folder.
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    run = client.get_run(trained.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    names = {a.path for a in client.list_artifacts(trained.run_id, "notebook")}
    assert names == {f"notebook/{trained.notebook.name}", f"notebook/{trained.notebook.stem}.html"}
    local = client.download_artifacts(
        trained.run_id, f"notebook/{trained.notebook.name}", str(tmp_path)
    )
    notebook = json.loads(Path(local).read_text())
    figures = [
        o
        for c in notebook["cells"]
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert figures, "the executed notebook holds the run's figures"
    assert run.inputs is not None
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.digest == run.data.tags[TAG_SNAPSHOT_SHA256][:32]
    version = client.get_model_version_by_alias(registered_model_name(settings), "champion")
    assert (version.version, version.run_id) == ("1", trained.run_id)
    model_uri = client.get_model_version_download_uri(version.name, version.version)
    assert model_uri.startswith("mlflow-artifacts:/")
    listed = mlflow.artifacts.list_artifacts(artifact_uri=model_uri)
    model_files = {a.path.rpartition("/")[2] for a in listed}
    assert {"MLmodel", "data"} <= model_files
    stored = {p.name for p in server.artifacts.rglob("*") if p.is_file()}
    assert {trained.notebook.name, "MLmodel", "model.ubj"} <= stored
    # The registry mirror reads back as the store's, through the server.
    with closing(operator(ws)) as store:
        assert mlflow_disagreements(ws, store) == []
        assert store.models()[0].model_sha256 == trained.model_sha256


@pytest.mark.slow
def test_a_server_that_is_down_is_one_line_and_nothing_is_written(
    ws: Workspace, server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hilt.pipelines.cli.workspace import init
    from hilt.pipelines.loop.promotion import promote

    server.stop()
    with closing(operator(ws)) as store:
        head = store.audit_head().seq
    notebooks = sorted(ws.runs_dir.glob("*")) if ws.runs_dir.exists() else []
    r = hilt_forked("retrain", "-w", ws.root, "--as", "dana", folder=tmp_path / "hilt")
    assert r.returncode == 2, r.stderr
    assert r.stderr == (
        f"error: the MLflow tracking server {server.url} (from [tracking] uri) does not "
        "answer (connection refused): start it, or fix [tracking] uri\n"
    )
    with pytest.raises(TrackingUnavailable, match="does not answer"):
        promote(ws, "0" * 32, "max")
    fresh = tmp_path / "fresh"
    with pytest.raises(typer.Exit) as exited:
        init(config_naming(tmp_path, server.url), fresh)
    assert exited.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not answer (connection refused)" in err
    assert not fresh.exists()
    with closing(operator(ws)) as store:
        assert store.audit_head().seq == head
    assert (sorted(ws.runs_dir.glob("*")) if ws.runs_dir.exists() else []) == notebooks
    assert local_store_files(ws.root) == []


# ----------------------------------------------------------- which URI, and who may change it
def settings_with(uri: str | None) -> Settings:
    data = tomllib.loads(CONFIG.read_text())
    if uri is not None:
        data["tracking"] = {"uri": uri}
    return parse_settings(data, "hilt.toml")


def test_which_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = Workspace.at(tmp_path / "ws")
    server, other = "http://mlflow.internal:5000", "http://elsewhere:5000"
    monkeypatch.delenv(URI_ENV, raising=False)
    monkeypatch.delenv(MLFLOW_URI_ENV, raising=False)
    local = f"sqlite:///{(w.root / 'mlflow.db').as_posix()}"
    assert tracking_choice(w, settings=settings_with(None)).uri == local
    # hilt.toml names the workspace's server; an environment naming the same one agrees.
    choice = tracking_choice(w, settings=settings_with(server))
    assert (choice.uri, choice.source, choice.is_server) == (server, "[tracking] uri", True)
    monkeypatch.setenv(MLFLOW_URI_ENV, server + "/")
    assert tracking_choice(w, settings=settings_with(server)).uri == server
    # ... and one naming another server is refused, not silently ignored.
    for name in (MLFLOW_URI_ENV, URI_ENV):
        monkeypatch.setenv(name, "http://someone:secret@elsewhere:5000")
        with pytest.raises(ConfigError, match=rf"unset \${name}") as e:
            tracking_choice(w, settings=settings_with(server))
        assert "secret" not in str(e.value) and "http://***@elsewhere:5000" in str(e.value)
        monkeypatch.delenv(name)
    # Without [tracking]: hilt's variable, then MLflow's when it names a server.
    monkeypatch.setenv(MLFLOW_URI_ENV, other)
    assert tracking_choice(w, settings=settings_with(None)).source == MLFLOW_URI_ENV
    monkeypatch.setenv(URI_ENV, server)
    assert tracking_choice(w, settings=settings_with(None)).uri == server
    monkeypatch.delenv(URI_ENV)
    monkeypatch.setenv(MLFLOW_URI_ENV, "sqlite:///somewhere-else.db")  # a local store: no
    assert tracking_choice(w, settings=settings_with(None)).uri == local
    # A workspace keeping its own mlflow.db is not split by a left-over MLFLOW_TRACKING_URI.
    w.root.mkdir(parents=True)
    (w.root / "mlflow.db").touch()
    monkeypatch.setenv(MLFLOW_URI_ENV, other)
    with pytest.raises(ConfigError, match=r"keeps its runs in its own mlflow\.db"):
        tracking_choice(w, settings=settings_with(None))


@pytest.mark.parametrize(
    "uri",
    [
        "http://user:password@mlflow:5000",
        "http://token@mlflow:5000",
        "https://mlflow:5000/?token=abc",
        "sqlite:///mlflow.db",
        "file:///srv/mlruns",
        "mlflow:5000",
    ],
)
def test_credentials_and_local_stores_are_refused_in_hilt_toml(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"^hilt.toml: tracking.uri: must be an MLflow"):
        settings_with(uri)


def test_another_mlflow_server_needs_a_second_lead() -> None:
    """Pointing the workspace at another server (or at one for the first time, or back to
    its own file) sends its models, notebooks and run records elsewhere: a loosening."""
    a, b = "http://mlflow-a:5000", "https://mlflow-b.internal"
    for old, new in ((None, a), (a, b), (a, None)):
        assert loosened(settings_with(old), settings_with(new)) == ["tracking.uri"]
    assert shown_values(settings_with(a), settings_with(b)) == {"tracking.uri": [a, b]}
    assert loosened(settings_with(a), settings_with(a)) == []


def test_no_server_reachable_is_one_line_before_mlflow_is_imported(tmp_path: Path) -> None:
    """``require_reachable`` needs no mlflow: the dashboards and `hilt` start without it."""
    code = (
        "import sys\n"
        "from hilt.pipelines.loop.tracking.environment import TrackingChoice, require_reachable\n"
        f"try:\n    require_reachable(TrackingChoice('http://127.0.0.1:{free_port()}', 'x'))\n"
        "except Exception as e:\n    print(type(e).__name__, 'mlflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    assert out.stdout.strip() == "TrackingUnavailable False", out.stderr
