"""Helpers for the tests of the loop (retraining, scoring, promotion): a small real workspace,
new-case files, the retraining steps run in-process, and the personal-data scan."""

from __future__ import annotations

import atexit
import functools
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.loop.model import TrainParams
from hilt.pipelines.loop.steps import retrain, start
from hilt.pipelines.loop.tracking.environment import DB_FILE
from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
from hilt.pipelines.store.audit_records import AuditEvent
from hilt.pipelines.store.create import create_workspace
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


@functools.cache
def empty_tracking_store() -> Path:
    """An MLflow sqlite store holding MLflow's tables and nothing of hilt's: the one `hilt
    init` copies (``tracking.client.tracking_store_template``, made once per user and MLflow
    version; MLflow takes 1.3-2.5 s of CPU on this machine to create its tables, a copy takes
    milliseconds), else one made for this process. Copy it, never write to it. The
    workspace's experiment is not in it: ``configure`` creates that, with its artifacts
    under the workspace, on first use."""
    from hilt.pipelines.loop.tracking.client import empty_tracking_store as make
    from hilt.pipelines.loop.tracking.client import tracking_store_template

    template = tracking_store_template()
    if template is not None:
        return template
    folder = Path(tempfile.mkdtemp(prefix="hilt-tests-mlflow-"))
    atexit.register(shutil.rmtree, folder, True)
    return make(folder / DB_FILE)


def loop_workspace(
    root: Path, labelled: int = LABELLED, config: Path = CONFIG, *, tracking: bool = True
) -> Workspace:
    """A workspace with the first ``labelled`` demo cases (with their labels).

    The holdout salt (random at `hilt init`) is fixed here, so the holdout, and with it every
    metric and gate verdict of these tests, is the same on every run: with ~140 holdout rows
    a random split can move the AUC across the gate's floor.

    ``tracking``: the workspace's MLflow store starts as a copy of ``empty_tracking_store``
    (what the first run would create); ``False`` for tests that check it is not created.
    """
    ws = Workspace.at(root / "ws")
    create_workspace(ws, config, holdout_salt=HOLDOUT_SALT)
    operator(ws).ingest_cases(all_cases().head(labelled))
    if tracking:
        shutil.copyfile(empty_tracking_store(), ws.root / DB_FILE)
    return ws


def new_cases_file(path: Path, start: int, count: int, fmt: str = "csv") -> Path:
    """Demo cases ``start`` … ``start + count - 1`` (0-based), without the target column."""
    frame = all_cases().slice(start, count).drop(load_settings(CONFIG).target.column)
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
) -> retrain.Registration:
    """The retraining notebook's steps, called in-process (as a data scientist would in
    JupyterLab): a new MLflow run tagged retrain, logged, registered in MLflow and in the
    store's model registry (which applies the gate), audited."""
    from hilt.pipelines.loop.tracking.runs import finish_run

    ws_, settings = start.open_workspace(ws.root)
    store = open_store_as(ws_, Identity(name=author))
    run_id = start.ensure_run(ws_, settings, "", author, "retrain")
    params = TrainParams(num_boost_round=num_boost_round, seed=seed)
    registration = retrain.run_in_process(store, run_id, settings, params, label_noise=label_noise)
    finish_run(run_id)
    return registration


def review_some(ws: Workspace, reviewer: str, count: int) -> int:
    """``reviewer`` decides ``count`` queued cases (accept the model, or override every third),
    so the next snapshot holds reviewer labels. Returns how many were decided."""
    store = open_store_as(ws, Identity(name=reviewer))
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
# Everything personal comes from the config (data/hilt.toml), nothing is named here:
# - the case and subject ids of every demo case, anywhere;
# - the values of every text-valued (string or category) personal column, outside the
#   documented aggregate cells (GROUP_TAG), whose tables name groups, never a person;
# - every personal column by its name, outside those cells: a table column, a series or a
#   record key named after it (numbers such as an age cannot be told from other numbers,
#   but a table of them has a header), in notebook outputs; a param, metric or tag key or
#   an artifact path named after it, in MLflow.
WORD = re.compile(r"[A-Za-z0-9_-]+")
#: Personal columns of these types are found by value; the others by name only.
TEXT_TYPES = frozenset({"string", "category"})


@dataclass(frozen=True)
class PersonalData:
    """What the scans look for, read from the config and the demo data."""

    #: Case and subject ids of every demo case.
    identifiers: frozenset[str]
    #: Value → the personal column it is a value of (text-valued personal columns).
    values: dict[str, str]
    #: Every personal column's name.
    fields: frozenset[str]


def personal_data(settings: Settings | None = None) -> PersonalData:
    settings = settings or load_settings(CONFIG)
    cases = all_cases()
    ids = [c for c in (settings.use_case.id_column, settings.use_case.subject_column) if c]
    identifiers = frozenset(v for c in ids for v in cases[c].to_list() if v)
    values: dict[str, str] = {}
    for name in settings.fields.personal:
        column = settings.columns[name]
        if column.type not in TEXT_TYPES:
            continue
        seen = {v for v in cases[name].to_list() if v} | set(column.levels or [])
        # Bare numbers (a category coded "0".."3") cannot be told from counts and metrics.
        values.update({v: name for v in seen if not re.fullmatch(r"[\d.]+", v)})
    return PersonalData(identifiers, values, frozenset(settings.fields.personal))


#: A header cell of an HTML table (pandas and polars _repr_html_).
_HTML_HEADER = re.compile(r"<th(?:\s[^>]*)?>\s*(.*?)\s*</th>", re.IGNORECASE | re.DOTALL)
#: A series by name: polars ``Series: 'x' [i64]``, pandas ``Name: x, dtype: int64``.
_SERIES = re.compile(r"Series: '([^']*)'|Name: ([^,\n]+), (?:Length: \d+, )?dtype:")
#: A record key: ``{'x': 1}``, ``{"x": 1}``.
_KEY = re.compile(r"""["']([^"'\n]{1,64})["']\s*:""")


def column_names(text: str) -> set[str]:
    """Names the text shows as a table column, a series or a record key: HTML table headers,
    the header row of a polars box table (the first ``│ … │`` line after ``┌``), pandas'
    text header row (the first line of a frame repr followed by ``[n rows x m columns]`` or
    rows starting with an index), series names and dict / JSON keys."""
    names = {html.unescape(m).strip() for m in _HTML_HEADER.findall(text)}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("┌") and i + 1 < len(lines) and lines[i + 1].startswith("│"):
            names.update(c.strip() for c in lines[i + 1].strip("│").split("┆"))
    if re.search(r"^\[\d+ rows x \d+ columns\]$", text, re.M) or re.match(r"^ +\S.*\n\d+ ", text):
        names.update(lines[0].split())
    for polars_name, pandas_name in _SERIES.findall(text):
        names.add((polars_name or pandas_name).strip())
    names.update(k.strip() for k in _KEY.findall(text))
    return names


def text_findings(text: str, where: str, data: PersonalData, *, aggregate: bool) -> list[str]:
    """Personal data in one text; ``aggregate`` texts are checked for identifiers only."""
    words = set(WORD.findall(text))
    found = [f"{where}: id {hit}" for hit in sorted(words & data.identifiers)]
    if aggregate:
        return found
    found += [
        f"{where}: value {hit} of {data.values[hit]}" for hit in sorted(words & data.values.keys())
    ]
    found += [f"{where}: a column named {hit}" for hit in sorted(column_names(text) & data.fields)]
    return found


def _output_texts(output: dict[str, Any]) -> Iterable[str]:
    if output.get("output_type") == "stream":
        yield "".join(output.get("text", ""))
    elif output.get("output_type") == "error":
        yield output.get("ename", "")
        yield output.get("evalue", "")
        yield "\n".join(output.get("traceback", []))
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime.endswith("json"):
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield "".join(value)
            else:
                yield json.dumps(value)


def personal_findings(notebook: Path, settings: Settings | None = None) -> list[str]:
    """Where a notebook's outputs show personal data (see the comment above): an id anywhere;
    a value of a text-valued personal column, or a column named after any personal column,
    outside the cells tagged ``group-aggregates``."""
    data = personal_data(settings)
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        grouped = GROUP_TAG in cell.get("metadata", {}).get("tags", [])
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                found += text_findings(text, f"cell {i}", data, aggregate=grouped)
    return found


def _artifact_paths(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.append(info.path)
        if info.is_dir:
            out += _artifact_paths(client, run_id, info.path)
    return out


def mlflow_findings(run_ids: Iterable[str], settings: Settings | None = None) -> list[str]:
    """Personal data in MLflow runs: ids and text values of personal columns in the names and
    values of params, tags and metrics; a personal column's name as a param, metric or tag
    key, or in an artifact's path (a key word such as ``gap_<column>``, an aggregate, is one
    word and no hit)."""
    from mlflow import MlflowClient

    from hilt.pipelines.loop.tracking.runs import run_info

    data = personal_data(settings)
    bad = data.identifiers | data.values.keys()
    client = MlflowClient()  # the URI configure set
    found = []
    for run_id in run_ids:
        info = run_info(run_id)
        texts = [f"{k} {v}" for k, v in info.tags.items()]
        texts += [f"{k} {v}" for k, v in info.params.items()]
        texts += [k for k in info.metrics]
        for text in texts:
            for hit in sorted(set(WORD.findall(text)) & bad):
                found.append(f"run {run_id}: {hit} in {text[:80]!r}")
        keys = [*info.tags, *info.params, *info.metrics]
        for key in keys:
            for hit in sorted(set(WORD.findall(key)) & data.fields):
                found.append(f"run {run_id}: key {key!r} is named after {hit}")
        for path in _artifact_paths(client, run_id):
            for hit in sorted(set(WORD.findall(path)) & (data.fields | bad)):
                found.append(f"run {run_id}: artifact {path!r} is named after {hit}")
    return found


# ---------------------------------------------------------------------------- the CLI
def scheduler_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a scheduler runs `hilt` with: this one without HILT_WORKSPACE and
    HILT_TOKEN (the tests' commands name them), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in ("HILT_WORKSPACE", "HILT_TOKEN")}
    return {**base, **(env or {})}


def hilt_cli(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` as a scheduler runs it (a separate process, text output)."""
    return subprocess.run(
        [HILT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        env=scheduler_environment(env),
    )


def hilt_forked(
    *args: str | Path, folder: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` as a scheduler runs it (``scheduler_environment``), in a process of its
    own forked from one that imported hilt once (tests/prewarmed.py): its own pid, exit
    code, stdout and stderr, without seconds of imports per call (``hilt_cli`` pays them,
    for what only a fresh interpreter shows). Its output files are kept in ``folder``.
    It may start processes of its own (`hilt audit verify`'s hashing workers)."""
    from tests.prewarmed import run

    return run(*args, folder=folder, env=scheduler_environment(env))


def run_notebook(ws: Workspace, run_id: str) -> Path:
    """The executed notebook of ``run_id`` in the workspace's runs folder."""
    found = sorted(ws.runs_dir.glob(f"*-{run_id}.ipynb"))
    assert len(found) == 1, found
    return found[0]


def events_since(ws: Workspace, seq: int) -> list[AuditEvent]:
    return operator(ws).audit_events(after_seq=seq, limit=10_000)


#: A sitecustomize for a kernel's PYTHONPATH: any import of mlflow there fails.
_NO_MLFLOW = """
import sys


class NoMlflow:
    def find_spec(self, name, path=None, target=None):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("a run's kernel must not import mlflow (the runner relays)")
        return None


sys.meta_path.insert(0, NoMlflow())
"""


@contextmanager
def kernels_without_mlflow(folder: Path) -> Iterator[None]:
    """While the block runs, the kernels this process starts cannot import mlflow (a
    sitecustomize in ``folder``, on their PYTHONPATH; this process is not affected): a run
    that needs mlflow in its kernel fails with ImportError."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_NO_MLFLOW, encoding="utf-8")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), saved) if p)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
