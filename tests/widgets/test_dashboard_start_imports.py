"""Opening a dashboard imports neither mlflow nor xgboost.

Each dashboard notebook's code cells run as its kernel runs them, in a fresh interpreter,
on a workspace with cases and a champion (review as lena, the demo's local user; oversight
as lena, a lead; audit as otto, named by the sign-in header Voila passes). What the cells
built is printed with what was imported: a dashboard, not a refusal (the control), and no
heavy library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import nbformat
import pytest

from hilt.pipelines.dashboards.kernels import warm_up_code
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of, operator, start_service

pytestmark = pytest.mark.slow

#: What a dashboard must not import when it opens (MLflow only on the auditor's
#: "Cross-check", xgboost and dask never: predictions come from the store; matplotlib only
#: for the challenger comparison's figure, on a click: the oversight page draws its charts
#: itself, widgets/oversight/charts.py).
HEAVY = ("mlflow", "xgboost", "dask", "distributed", "matplotlib")

EXPECTED = {
    "review": ("lena", "ReviewSession"),
    "oversight": ("lena", "OversightDashboard"),
    "audit": ("otto", "AuditDashboard"),
}


def code_of(name: str) -> str:
    """The notebook's code cells; the last one (the panel, displayed by the kernel) is
    kept in a variable here."""
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    return "\n".join([*cells[:-1], f"_h4_panel = {cells[-1].strip()}"])


def assert_panel_built_without(
    name: str, watched: tuple[str, ...], env: dict[str, str], before: str = ""
) -> None:
    """Run the dashboard's notebook code in a fresh interpreter as its user (``env`` added
    to this environment, without its HILT_ and HTTP_ variables), after ``before`` (a served
    kernel's warm-up): the panel it builds must be the dashboard's own (not a refusal: the
    control), and none of ``watched`` imported."""
    user, panel_class = EXPECTED[name]
    report = (
        "import json, sys\n"
        "print(json.dumps({'built': type(_h4_panel).__name__, "
        f"'heavy': sorted(m for m in {watched!r} if m in sys.modules)}}))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HILT_", "HTTP_"))},
        **env,
        "HTTP_X_FORWARDED_USER": user,
        "MPLBACKEND": "Agg",
    }
    out = subprocess.run(
        [sys.executable, "-c", before + code_of(name) + "\n" + report],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"built": panel_class, "heavy": []}, got


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_opening_a_dashboard_imports_no_heavy_library(
    loaded_workspace: Workspace, name: str
) -> None:
    assert_panel_built_without(name, HEAVY, {"HILT_WORKSPACE": str(loaded_workspace.root)})


# ------------------------------------------------------------ served: the kernel is a client
#: What a dashboard's kernel must not import when it talks to a store service (`hilt
#: serve`): the store's database, its frames and the operations it does not call (each row
#: of the operations table imports its function when first used, pipelines/store/operations).
SERVICE_ONLY = (
    "duckdb",
    "polars",
    "pyarrow",
    "numpy",
    "hilt.pipelines.store.modes.embedded",
    "hilt.pipelines.store.backup",
    "hilt.pipelines.store.ops.backup",
    "hilt.pipelines.store.ops.subject_rights",
    "hilt.pipelines.store.ops.retention",
)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, served_template: tuple[Workspace, dict[str, str]]
) -> Iterator[dict[str, str]]:
    """A copy of the session's loaded workspace (single-person mode: lena), its store
    service, and the environment `hilt serve` gives a dashboard kernel (the store's URL
    and a gateway token)."""
    ws = copy_of(served_template[0], tmp_path_factory.mktemp("dashboard-start-served") / "ws")
    gateway = operator(ws).add_user("voila-gateway", "gateway").token
    svc = start_service(ws)
    try:
        yield {
            "HILT_WORKSPACE": str(ws.root),
            "HILT_STORE_URL": svc.url,
            "HILT_GATEWAY_TOKEN": gateway,
        }
    finally:
        svc.stop()


#: The pages checked served. The audit page starts verifying the log on a thread once it is
#: shown (``widgets/audit/integrity_panel.py``), and that check imports DuckDB and polars
#: (``store/audit/remote_verify.py``) while the page is already on screen.
SERVED = ("oversight", "review")


@pytest.mark.parametrize("name", SERVED)
def test_a_served_dashboard_kernel_imports_neither_the_database_nor_the_frames(
    served: dict[str, str], name: str
) -> None:
    """Served, a dashboard's kernel only talks HTTP to the store service: it builds its
    panel (not a refusal: the control) without DuckDB, polars, pyarrow or numpy, and
    without the store's own side (the embedded mode, the bulk operations). Served, its
    kernel is a warm one: it has run the warm-up's imports before the notebook's cells
    (pipelines/dashboards/kernels.py)."""
    assert_panel_built_without(name, (*HEAVY, *SERVICE_ONLY), served, warm_up_code())
