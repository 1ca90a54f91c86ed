"""notebooks/explore.ipynb executed headless on the real python3 kernel (papermill): the
queue, label provenance, runs side by side and a case's explanation in the review panel's
widget; read-only (the audit log does not move), no personal data in its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import papermill
import pytest

from hilt.pipelines.errors import PermissionDeniedError
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.scoring import score_into_queue
from hilt.pipelines.loop.steps import score as batch_scoring
from hilt.pipelines.loop.steps.explore import EXPLORE_NEED
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import operator
from tests.loop_helpers import (
    LABELLED,
    all_cases,
    loop_workspace,
    personal_findings,
    review_some,
    train_in_process,
)

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def explored(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Workspace, str, dict[str, Any], int]:
    """A workspace with 700 labelled cases, a champion trained on them (one retraining run)
    that scored 40 new cases into the queue, and three decisions, explored once: (workspace,
    run id, the executed notebook, audit head before)."""
    root = tmp_path_factory.mktemp("explore")
    ws = loop_workspace(root)
    settings = ws.settings()
    new = all_cases().slice(LABELLED, 40)
    op = operator(ws)
    op.ingest_cases(new.drop(settings.target.column))
    run_id = train_in_process(ws, "dana").run_id
    promote(ws, run_id, "max")
    champion = batch_scoring.load_model(op, settings)
    ids = new[settings.use_case.id_column].to_list()
    score_into_queue(op, champion.model, ids, settings, champion.label)
    assert review_some(ws, "alice", 3) == 3
    head = operator(ws).audit_head().seq
    out = root / "explore-out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / "explore.ipynb"),
        str(out),
        parameters={"workspace": str(ws.root)},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(root),
    )
    return ws, run_id, json.loads(out.read_text(encoding="utf-8")), head


def _text(cell: dict[str, Any]) -> str:
    parts = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        parts.append("".join(data.get("text/plain", "")) + "".join(data.get("text/html", "")))
    return "\n".join(parts)


def _cell(nb: dict[str, Any], code: str) -> dict[str, Any]:
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and code in "".join(c["source"])]
    assert len(cells) == 1, code
    found: dict[str, Any] = cells[0]
    return found


def test_the_explore_notebook_shows_queue_provenance_runs_and_an_explanation(
    explored: tuple[Workspace, str, dict[str, Any], int],
) -> None:
    ws, run_id, nb, head = explored
    queue = _text(_cell(nb, "explore.queue_table(ex)"))
    assert "queue: waiting" in queue and "37" in queue  # 40 scored, 3 decided
    provenance = _text(_cell(nb, "explore.label_provenance(ex)"))
    assert "ingested with the case" in provenance and str(LABELLED) in provenance
    assert "reviewer: accept" in provenance and "reviewer: override" in provenance
    runs = _text(_cell(nb, "explore.runs_table(ex)"))
    assert run_id[:12] in runs and "holdout_auc" in runs
    view = _cell(nb, "PredictionView(")
    outputs = view["outputs"]
    assert any(WIDGET in o.get("data", {}) for o in outputs)
    # The widget's state holds the review panel's rendered explanation.
    state = json.dumps(nb["metadata"]["widgets"])
    assert "hilt-prediction" in state
    # Read-only: nothing was written to the audit log.
    assert operator(ws).audit_head().seq == head


def test_the_explore_notebook_shows_no_personal_data(
    explored: tuple[Workspace, str, dict[str, Any], int], tmp_path: Path
) -> None:
    ws, _, nb, _ = explored
    # Not even an id in the widgets' state (which the output scan does not read).
    ids = all_cases()[ws.settings().use_case.id_column].to_list()
    state = json.dumps(nb["metadata"].get("widgets", {}))
    assert [i for i in ids if f'"{i}"' in state or f">{i}<" in state] == []
    path = tmp_path / "explored.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert personal_findings(path) == []


def test_a_reviewer_may_not_explore_the_store(
    explored: tuple[Workspace, str, dict[str, Any], int],
) -> None:
    ws, _, _, _ = explored
    head = operator(ws).audit_head().seq
    with pytest.raises(PermissionDeniedError, match="explore the store"):
        open_store_as(ws, Identity(name="alice"), need=EXPLORE_NEED)
    assert operator(ws).audit_head().seq == head
