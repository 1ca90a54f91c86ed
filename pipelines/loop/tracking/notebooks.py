"""The executed notebook of a run, logged to MLflow with its HTML rendering (built without
any script or stylesheet from a CDN: ``hilt.pipelines.loop.notebook_render``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hilt.pipelines.loop import notebook_render
from hilt.pipelines.loop.tracking.client import TrackingError, configured, mlflow_errors
from hilt.pipelines.loop.tracking.tags import NOTEBOOK_DIR


def notebook_html(ipynb_path: str | Path) -> str:
    """The executed notebook as one self-contained HTML page (``notebook_render``);
    TrackingError if anything remote is left."""
    try:
        return notebook_render.notebook_html(ipynb_path)
    except notebook_render.RemoteContentError as e:
        raise TrackingError(str(e)) from None


def log_notebook(run_id: str, ipynb_path: str | Path) -> tuple[str, str]:
    """Log an executed notebook and its HTML rendering (``notebook_html``) to a run, under
    ``notebook/``; the run may be finished already. Returns the two artifact paths."""
    state = configured()
    src = Path(ipynb_path)
    html = notebook_html(src)
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        page = Path(tmp) / f"{src.stem}.html"
        page.write_text(html, encoding="utf-8")
        with mlflow_errors(f"cannot log the notebook of run {run_id}"):
            state.client.log_artifact(run_id, str(src), artifact_path=NOTEBOOK_DIR)
            state.client.log_artifact(run_id, str(page), artifact_path=NOTEBOOK_DIR)
    return f"{NOTEBOOK_DIR}/{src.name}", f"{NOTEBOOK_DIR}/{page.name}"
