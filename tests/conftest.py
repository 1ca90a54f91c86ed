"""Shared fixtures: a real workspace (real DuckDB file), and a real store service process."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.config import Settings
from hilt.pipelines.dashboards.server import stop_processes
from hilt.pipelines.deferred_imports import defer_iri_grammar
from hilt.pipelines.store import Identity, Store, holding, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.registry_records import ModelEvaluation
from hilt.pipelines.workspace import Workspace
from tests.prewarmed import Hilt, output_folder, prewarmed_service

# Tests import nbformat and papermill: without the IRI grammar jsonschema would build at
# its import (~1.2 s of CPU per test process; hilt.pipelines.deferred_imports).
defer_iri_grammar()

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
CONFIG = DATA / "hilt.toml"
CSV = DATA / "german_credit.csv"


#: The secret of the tests' sign-in proxy (a workspace keeps only its sha256).
PROXY_SECRET = "tests-sign-in-proxy-" + "s3cret" * 6
#: What a dashboard kernel behind that proxy finds in its environment (Voila passes the
#: proxy's header so); add ``HTTP_X_FORWARDED_USER`` for the person.
PROXY_ENV = {"HTTP_X_HILT_PROXY_SECRET": PROXY_SECRET}


def behind_proxy(config_text: str, secret: str = PROXY_SECRET) -> str:
    """A hilt.toml text behind a sign-in proxy: ``[access] proxy_secret_sha256`` set and
    no local user (there is none behind a proxy)."""
    sha = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    lines = [line for line in config_text.splitlines() if not line.startswith("local_user")]
    at = lines.index("[access]") + 1
    lines.insert(at, f'proxy_secret_sha256 = "{sha}"')
    return "\n".join(lines) + "\n"


def proxied_config(folder: Path, config: Path = CONFIG) -> Path:
    """``config`` behind the tests' sign-in proxy, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hilt-behind-proxy.toml"
    path.write_text(behind_proxy(config.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cases_frame() -> pl.DataFrame:
    """The demo cases as text columns, exactly as `hilt ingest` reads a CSV."""
    return pl.read_csv(CSV, infer_schema=False)


def operator(ws: Workspace) -> Store:
    """The workspace's store as the operating-system user (admin), as `hilt` commands use it."""
    return open_store_as(ws, Identity(operator=True))


def copy_of(template: Workspace, root: Path) -> Workspace:
    """A copy of a workspace prepared once per session: the test changes only its own copy
    (a fresh DuckDB file, keys and folders), at ``root``."""
    shutil.copytree(template.root, root)
    return Workspace.at(root)


@pytest.fixture(scope="session")
def empty_template(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """`hilt init` of the demo config, once per session (per xdist worker); tests get copies."""
    ws = Workspace.at(tmp_path_factory.mktemp("template-empty") / "ws")
    create_workspace(ws, CONFIG)
    return ws


@pytest.fixture(scope="session")
def loaded_template(
    tmp_path_factory: pytest.TempPathFactory, empty_template: Workspace, cases_frame: pl.DataFrame
) -> Workspace:
    """``load_cases`` on a copy of ``empty_template``, once per session; tests get copies."""
    ws = copy_of(empty_template, tmp_path_factory.mktemp("template-loaded") / "ws")
    return load_cases(ws, cases_frame)


@pytest.fixture
def workspace(tmp_path: Path, empty_template: Workspace) -> Workspace:
    """A new workspace of the demo config (a copy of one made by ``create_workspace``)."""
    return copy_of(empty_template, tmp_path / "ws")


@dataclass(frozen=True)
class StandIn:
    """A stand-in model, registered in a test store and approved by a lead: what the tests
    score with (``predictions_for``). Its sha256 is that of its name."""

    model: str
    sha256: str


#: A holdout evaluation that passes the demo config's gate (every protected attribute has a
#: gap within the limit, the floor is met, and it equals the champion it is compared with).
STAND_IN_METRICS = {"auc": 0.8, "accuracy": 0.75, "brier": 0.18, "log_loss": 0.52}


def approve_stand_in(author: Store, lead: Store, model: str = "test-model/v1") -> StandIn:
    """Register ``model`` as ``author`` (a data scientist or admin; a snapshot is taken, as
    a training run takes one) and have ``lead`` (not the author) approve it: it becomes the
    champion, which alone may add predictions to the review queue."""
    sha = hashlib.sha256(model.encode("utf-8")).hexdigest()
    snapshot = author.snapshot()
    champion = next((m.model for m in author.models() if m.state == "champion"), None)
    protected = {"sex": 0.0, "age": 0.0}
    author.register_model(
        model,
        sha,
        f"run-of-{model}",
        ModelEvaluation(
            snapshot_sha256=snapshot.sha256,
            metrics=dict(STAND_IN_METRICS),
            gaps=dict(protected),
            champion=champion,
            champion_metrics=dict(STAND_IN_METRICS) if champion else None,
        ),
    )
    lead.promote_model(model)
    return StandIn(model, sha)


#: The champion of ``loaded_workspace``.
TEST_MODEL = StandIn("test-model/v1", hashlib.sha256(b"test-model/v1").hexdigest())


def leased(store: Store) -> str:
    """The case the queue leases to this reviewer now (a decision needs the lease)."""
    case = store.next_case()
    assert case is not None, "the queue is empty"
    return case.case.case_id


def stand_in(
    ws: Workspace, model: str = "test-model/v1", clock: Callable[[], datetime] | None = None
) -> StandIn:
    """``approve_stand_in`` on a workspace file: registered by the data scientist dana,
    approved by the lead lena (users of the demo config), at ``clock``'s time if given."""
    return approve_stand_in(
        open_store_as(ws, Identity(name="dana"), clock=clock),
        open_store_as(ws, Identity(name="lena"), clock=clock),
        model,
    )


@pytest.fixture(scope="session")
def served_template(
    tmp_path_factory: pytest.TempPathFactory, loaded_template: Workspace
) -> tuple[Workspace, dict[str, str]]:
    """``loaded_template`` with a token for every user of the config (``issue_tokens``),
    once per session: what a test whose store goes through a service starts from."""
    ws = copy_of(loaded_template, tmp_path_factory.mktemp("template-served") / "ws")
    return ws, issue_tokens(ws, ws.settings())


def through_a_service(request: pytest.FixtureRequest) -> bool:
    """Whether the test uses the ``service`` fixture or ``store_as`` in service mode."""
    callspec = getattr(request.node, "callspec", None)
    served = callspec is not None and callspec.params.get("store_as") == "service"
    return served or "service" in request.fixturenames


@pytest.fixture
def loaded_workspace(
    request: pytest.FixtureRequest, tmp_path: Path, loaded_template: Workspace
) -> Workspace:
    """A workspace with 200 cases and a prediction for each, by the champion test-model/v1
    (a copy of one made by ``load_cases``); when the test's store goes through a service,
    with every user's token issued too (``served_template``)."""
    if through_a_service(request):
        template, _ = request.getfixturevalue("served_template")
        return copy_of(template, tmp_path / "ws")
    return copy_of(loaded_template, tmp_path / "ws")


@pytest.fixture
def loaded_workspace_behind_proxy(tmp_path: Path, cases_frame: pl.DataFrame) -> Workspace:
    """Like ``loaded_workspace``, behind the tests' sign-in proxy (``proxied_config``)."""
    ws = Workspace.at(tmp_path / "ws-behind-proxy")
    create_workspace(ws, proxied_config(tmp_path))
    return load_cases(ws, cases_frame)


def load_cases(ws: Workspace, cases_frame: pl.DataFrame) -> Workspace:
    """``ws`` with 200 cases and a prediction for each, by the champion test-model/v1."""
    op = operator(ws)
    with holding(ws):  # one connection for the setup
        op.ingest_cases(cases_frame.head(200))
        model = stand_in(ws)
        op.add_predictions(model.model, predictions_for(cases_frame.head(200)), model.sha256)
    return ws


def predictions_for(cases: pl.DataFrame, id_column: str = "application_id") -> pl.DataFrame:
    """Deterministic stand-in predictions (the model arrives with the retraining issue)."""
    n = cases.height
    scores = [((i * 37) % 100) / 100 for i in range(n)]
    return pl.DataFrame(
        {
            "case_id": cases[id_column],
            "score": scores,
            "label": ["1" if s >= 0.5 else "0" for s in scores],
            "explanation": ['{"duration": -0.25, "credit_amount": 0.1}'] * n,
        }
    )


@dataclass
class RunningService:
    url: str
    process: Hilt
    workspace: Workspace
    tokens: dict[str, str] = field(default_factory=dict)
    port: int = 0

    def stop(self) -> None:
        stop_processes(self.process)


def start_service(
    ws: Workspace, port: int | None = None, log_path: Path | None = None
) -> RunningService:
    """`hilt store serve` on ``ws``: a real process of its own, forked from one that has
    imported hilt once (tests/prewarmed.py), so a test pays for the service's start, not for
    an interpreter's imports. Its stdout and stderr (its whole log) are appended to
    ``log_path`` (default: a file of its own outside the workspace), which a test can read
    during the run or after ``stop()``. Returned once /health answers 200."""
    port = port or free_port()
    log = log_path or output_folder() / f"store-service-{port}-{time.monotonic_ns()}.log"
    started = prewarmed_service(ws, log, port)
    return RunningService(url=started.url, process=started.process, workspace=ws, port=port)


def issue_tokens(ws: Workspace, settings: Settings) -> dict[str, str]:
    op = operator(ws)
    tokens = {}
    with holding(ws):  # one connection for the loop
        for name, roles in settings.access.users.items():
            tokens[name] = op.add_user(name, roles[0]).token
    return tokens


@pytest.fixture
def service(
    request: pytest.FixtureRequest, loaded_workspace: Workspace
) -> Iterator[RunningService]:
    _, tokens = request.getfixturevalue("served_template")  # issued in loaded_workspace
    svc = start_service(loaded_workspace)
    svc.tokens = tokens
    try:
        yield svc
    finally:
        svc.stop()


StoreFactory = Callable[[str], Store]


@pytest.fixture(params=["embedded", "service"])
def store_as(request: pytest.FixtureRequest, loaded_workspace: Workspace) -> Iterator[StoreFactory]:
    """The same store in either mode: ``store_as("alice")`` acts as alice."""
    if request.param == "embedded":
        yield lambda name: open_store_as(loaded_workspace, Identity(name=name))
        return
    _, tokens = request.getfixturevalue("served_template")  # issued in loaded_workspace
    svc = start_service(loaded_workspace)
    try:
        with stores_of(svc.url, tokens) as factory:
            yield factory
    finally:
        svc.stop()


@contextmanager
def stores_of(url: str, tokens: dict[str, str]) -> Iterator[StoreFactory]:
    """``factory(name)`` opens the store service at ``url`` as ``name`` (by its token);
    every store it opened is closed at the end."""
    opened: list[Store] = []

    def factory(name: str) -> Store:
        s = open_store_as(url, Identity(token=tokens[name]))
        opened.append(s)
        return s

    try:
        yield factory
    finally:
        for s in opened:
            s.close()


# ------------------------------------------------- where MLflow writes, kept between tests
#: Process-wide variables that choose where MLflow writes. A test (or the product code it runs
#: in process) that leaves one changed points the worker's later tests elsewhere: a dead
#: server's URL in $MLFLOW_TRACKING_URI fails every later test of the worker that opens a
#: workspace keeping its own mlflow.db.
KEPT_ENV = (
    "MLFLOW_TRACKING_URI",
    "HILT_MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_ID",
)


def _environment_left(before: dict[str, str | None], what: str) -> None:
    """Fail (after putting them back) when ``KEPT_ENV`` differ from ``before``."""
    changed = {k: os.environ.get(k) for k in KEPT_ENV if os.environ.get(k) != before[k]}
    for k in changed:
        value = before[k]
        if value is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = value
    if changed:
        pytest.fail(f"{what} left the environment changed: {changed} (was {before})")


@pytest.fixture(autouse=True, scope="module")
def _environment_kept_by_the_module() -> Iterator[None]:
    """The module's own fixtures put back what they set (set up before them, torn down
    after them)."""
    before = {k: os.environ.get(k) for k in KEPT_ENV}
    yield
    _environment_left(before, "the module's fixtures")


@pytest.fixture(autouse=True)
def _environment_kept_by_the_test() -> Iterator[None]:
    """The test, its function fixtures and what they ran in process put back what they
    set."""
    before = {k: os.environ.get(k) for k in KEPT_ENV}
    yield
    _environment_left(before, "the test")


# ----------------------------------------------------------------- kernels forked, not launched
@pytest.fixture(autouse=True, scope="session")
def _kernels_from_a_zygote() -> Iterator[None]:
    """One zygote per test process (pipelines/kernels/source.py), named in the environment
    before any test runs: every run's kernel the tests start (papermill runs in process and
    in forked `hilt` commands) is forked from it instead of starting a Python and importing
    ipykernel (~0.3-1 s of CPU a kernel). Voila's and JupyterLab's are not (source.py)."""
    from hilt.pipelines.kernels.source import ZYGOTE_ENV, start_zygote, zygote_environment

    if ZYGOTE_ENV in os.environ:  # an ancestor's (a test run inside a test)
        yield
        return
    zygote = start_zygote()
    os.environ.update(zygote_environment(zygote))
    try:
        yield
    finally:
        os.environ.pop(ZYGOTE_ENV, None)
        if zygote is not None:
            zygote.stop()


# ----------------------------------------------------------------- the order of the files
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest test files first (tests/scheduling.py): `make test` hands whole files to its
    workers in this order (``--no-loadscope-reorder``), so no long file starts last."""
    from tests.scheduling import longest_files_first

    longest_files_first(items, config.rootpath)


# ----------------------------------------------------------------- the tests' last results
# For the compliance matrix (`hilt docs compliance`): node id → outcome of the last run
# that ran it, merged into build/test-results.json when the session ends (by the xdist
# controller, which sees every worker's reports; never by a worker).
_OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _OUTCOMES[report.nodeid] = "failed"
    elif _OUTCOMES.get(report.nodeid) == "failed":
        return
    elif report.skipped:
        _OUTCOMES[report.nodeid] = "skipped"
    elif report.when == "call":
        _OUTCOMES[report.nodeid] = "passed"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or not _OUTCOMES:
        return
    from hilt.pipelines.compliance.matrix import write_results

    write_results(_OUTCOMES)
