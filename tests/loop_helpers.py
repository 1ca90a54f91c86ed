"""Helpers for the tests of the loop (retraining, scoring, promotion): a small real workspace,
new-case files, the retraining steps run in-process, and the personal-data scan."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from hilt.pipelines import retraining
from hilt.pipelines.model import TrainParams
from hilt.pipelines.store import DecisionRequest, open_store
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.records import AuditEvent
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, CSV, operator

HILT = str(Path(sys.executable).parent / "hilt")
#: The holdout salt of the loop workspaces (see loop_workspace).
HOLDOUT_SALT = "hilt-tests-1"
#: Labelled cases in a loop workspace (the rest of the demo data are "new" cases).
LABELLED = 700
#: Fewer trees than the default keep the tests quick; the gate still passes on clean labels.
FAST = {"num_boost_round": "60"}
#: Cell tag of the outputs that show group labels of protected attributes (aggregates).
GROUP_TAG = "group-aggregates"


def all_cases() -> pl.DataFrame:
    return pl.read_csv(CSV, infer_schema=False)


def loop_workspace(root: Path, labelled: int = LABELLED) -> Workspace:
    """A workspace with the first ``labelled`` demo cases (with their labels).

    The holdout salt (random at `hilt init`) is fixed here, so the holdout, and with it every
    metric and gate verdict of these tests, is the same on every run: with ~140 holdout rows
    a random split can move the AUC across the gate's floor.
    """
    ws = Workspace.at(root / "ws")
    create_workspace(ws, CONFIG, holdout_salt=HOLDOUT_SALT)
    operator(ws).ingest_cases(all_cases().head(labelled))
    return ws


def new_cases_file(path: Path, start: int, count: int, fmt: str = "csv") -> Path:
    """Demo cases ``start`` … ``start + count - 1`` (0-based), without the target column."""
    settings_target = "risk"  # the demo data's target column (tests may name it)
    frame = all_cases().slice(start, count).drop(settings_target)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    return path


def train_in_process(
    ws: Workspace,
    author: str,
    *,
    label_noise: float = 0.0,
    num_boost_round: int = 60,
    seed: int = 0,
) -> retraining.Registration:
    """The retraining notebook's steps, called in-process (as a data scientist would in
    JupyterLab): a new MLflow run tagged retrain, logged, registered, audited."""
    from hilt.pipelines import tracking

    ws_, settings = retraining.open_workspace(ws.root)
    store = open_store(ws_, user=author)
    run_id = retraining.ensure_run(ws_, settings, "", author, "retrain")
    params = TrainParams(num_boost_round=num_boost_round, seed=seed)
    snapshot = retraining.take_snapshot(store, 0)
    dataset = retraining.load_dataset(snapshot, settings)
    model = retraining.train(dataset, params, label_noise=label_noise)
    evaluation = retraining.evaluate(model, dataset, settings)
    comparison = retraining.compare_with_champion(dataset, settings, evaluation)
    result = retraining.apply_gate(evaluation, comparison, settings)
    registration = retraining.log_and_register(
        run_id,
        settings,
        model=model,
        dataset=dataset,
        evaluation=evaluation,
        gate_result=result,
        params=params,
        label_noise=label_noise,
    )
    retraining.record(store, registration, dataset, result)
    tracking.finish_run(run_id)
    return registration


def review_some(ws: Workspace, reviewer: str, count: int) -> int:
    """``reviewer`` decides ``count`` queued cases (accept the model, or override every third),
    so the next snapshot holds reviewer labels. Returns how many were decided."""
    store = open_store(ws, user=reviewer)
    done = 0
    for i in range(count):
        leased = store.next_case()
        if leased is None:
            break
        predicted = leased.case.predictions[-1].label
        if i % 3 == 2:
            store.record_decision(
                DecisionRequest(
                    case_id=leased.case.case_id,
                    action="override",
                    final_label="0" if predicted == "1" else "1",
                    reason_code="data-error",
                )
            )
        else:
            store.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
        done += 1
    return done


# ---------------------------------------------------------------------------- personal data
def personal_words() -> tuple[set[str], set[str]]:
    """(identifiers, sex values): the applicant and application ids of every demo case, and
    the values of the sex column."""
    cases = all_cases()
    ids = set(cases["applicant_id"].to_list()) | set(cases["application_id"].to_list())
    return ids, set(cases["sex"].unique().to_list())


def _output_texts(output: dict[str, Any]) -> Iterable[str]:
    if output.get("output_type") == "stream":
        yield "".join(output.get("text", ""))
    elif output.get("output_type") == "error":
        yield output.get("ename", "")
        yield output.get("evalue", "")
        yield "\n".join(output.get("traceback", []))
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            yield value if isinstance(value, str) else "".join(value)


def personal_findings(notebook: Path) -> list[str]:
    """Where a notebook's outputs show an applicant or application id (anywhere) or a value of
    the sex column (outside the cells tagged ``group-aggregates``, whose tables and figures
    name groups of at least the minimum size, never a person)."""
    ids, sexes = personal_words()
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = []
    word = re.compile(r"[A-Za-z0-9_-]+")
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        grouped = GROUP_TAG in cell.get("metadata", {}).get("tags", [])
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                words = set(word.findall(text))
                for hit in sorted(words & ids):
                    found.append(f"cell {i}: id {hit}")
                if not grouped:
                    for hit in sorted(words & sexes):
                        found.append(f"cell {i}: sex value {hit}")
    return found


def mlflow_findings(run_ids: Iterable[str]) -> list[str]:
    """Personal values in the params, tags and metrics (names and values) of MLflow runs."""
    from hilt.pipelines import tracking

    ids, sexes = personal_words()
    bad = ids | sexes
    word = re.compile(r"[A-Za-z0-9_-]+")
    found = []
    for run_id in run_ids:
        info = tracking.run_info(run_id)
        texts = [f"{k} {v}" for k, v in info.tags.items()]
        texts += [f"{k} {v}" for k, v in info.params.items()]
        texts += [k for k in info.metrics]
        for text in texts:
            for hit in sorted(set(word.findall(text)) & bad):
                found.append(f"run {run_id}: {hit} in {text[:80]!r}")
    return found


# ---------------------------------------------------------------------------- the CLI
def hilt_cli(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` as a scheduler runs it (a separate process, text output)."""
    base = {k: v for k, v in os.environ.items() if k not in ("HILT_WORKSPACE", "HILT_TOKEN")}
    return subprocess.run(
        [HILT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**base, **(env or {})},
    )


def run_notebook(ws: Workspace, run_id: str) -> Path:
    """The executed notebook of ``run_id`` in the workspace's runs folder."""
    found = sorted(ws.runs_dir.glob(f"*-{run_id}.ipynb"))
    assert len(found) == 1, found
    return found[0]


def events_since(ws: Workspace, seq: int) -> list[AuditEvent]:
    return operator(ws).audit_events(after_seq=seq, limit=10_000)
