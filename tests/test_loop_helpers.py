"""The personal-data scans of tests/loop_helpers.py, which the "nothing personal in the
notebook outputs / in MLflow" tests rely on: they must find what they claim to find. The
personal columns are read from the config; real polars and pandas reprs make the outputs,
and a real MLflow store holds the runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import nbformat
import polars as pl
import pytest

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG
from tests.loop_helpers import (
    GROUP_TAG,
    TEXT_TYPES,
    all_cases,
    column_names,
    mlflow_findings,
    personal_data,
    personal_findings,
)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


def numeric_personal(settings: Settings) -> str:
    """A personal column found by name only (not text-valued): age in the demo."""
    names = [n for n in settings.fields.personal if settings.columns[n].type not in TEXT_TYPES]
    assert names, "the demo config has a numeric personal column, else this proves nothing"
    return names[0]


def text_personal(settings: Settings) -> str:
    names = [n for n in settings.fields.personal if settings.columns[n].type in TEXT_TYPES]
    assert names
    return names[0]


def outputs_of(frame: pl.DataFrame) -> list[nbformat.NotebookNode]:
    """What Jupyter stores for a polars frame displayed as a cell's last expression."""
    return [
        nbformat.v4.new_output(
            "execute_result",
            data={"text/html": frame._repr_html_(), "text/plain": str(frame)},
            execution_count=1,
        )
    ]


def notebook(tmp_path: Path, *cells: tuple[list[nbformat.NotebookNode], bool]) -> Path:
    nb = nbformat.v4.new_notebook()
    for outputs, aggregate in cells:
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = outputs
        if aggregate:
            cell.metadata["tags"] = [GROUP_TAG]
        nb.cells.append(cell)
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_the_scan_covers_every_personal_column_of_the_config(settings: Settings) -> None:
    data = personal_data(settings)
    assert data.fields == set(settings.fields.personal)
    text_valued = {n for n in settings.fields.personal if settings.columns[n].type in TEXT_TYPES}
    assert set(data.values.values()) == text_valued
    cases = all_cases()
    assert data.identifiers >= set(cases[settings.use_case.id_column].to_list())


def test_a_table_of_a_numeric_personal_column_is_found(tmp_path: Path, settings: Settings) -> None:
    age = numeric_personal(settings)
    frame = all_cases().head(5).select(pl.col(age).cast(pl.Int64), pl.lit(0.5).alias("score"))
    found = personal_findings(notebook(tmp_path, (outputs_of(frame), False)), settings)
    assert found == [f"cell 0: a column named {age}"] * 2  # the HTML and the text rendering


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda s: repr(s.to_pandas()), id="pandas-frame"),
        pytest.param(lambda s: repr(s.to_pandas().iloc[:, 0]), id="pandas-series"),
        pytest.param(lambda s: s.to_pandas().to_html(), id="pandas-html"),
        pytest.param(lambda s: repr(s.to_series()), id="polars-series"),
        pytest.param(lambda s: repr(s.to_dicts()), id="records"),
    ],
)
def test_other_renderings_of_a_numeric_personal_column_are_found(
    tmp_path: Path, settings: Settings, render: object
) -> None:
    age = numeric_personal(settings)
    frame = all_cases().head(5).select(pl.col(age).cast(pl.Int64))
    assert callable(render)
    text = render(frame)
    assert age in column_names(text), text
    output = nbformat.v4.new_output("stream", name="stdout", text=text)
    assert personal_findings(notebook(tmp_path, ([output], False)), settings) == [
        f"cell 0: a column named {age}"
    ]


def test_aggregates_name_groups_and_attributes_without_a_finding(
    tmp_path: Path, settings: Settings
) -> None:
    """The retraining notebook's shapes: a gap table whose rows name the protected attributes
    (a column "protected attribute", not one named after them), and subgroup metrics whose
    group labels are values of a personal column, in a cell tagged as aggregates."""
    gaps = pl.DataFrame({"protected attribute": settings.fields.protected, "gap": [0.1] * 2})
    sex = text_personal(settings)
    levels = settings.columns[sex].levels or []
    subgroups = pl.DataFrame({"attribute": [sex] * len(levels), "group": levels})
    path = notebook(tmp_path, (outputs_of(gaps), False), (outputs_of(subgroups), True))
    assert personal_findings(path, settings) == []
    # The same subgroup table outside an aggregate cell shows the personal values.
    untagged = notebook(tmp_path, (outputs_of(subgroups), False))
    assert {f.split(" of ")[0] for f in personal_findings(untagged, settings)} == {
        f"cell 0: value {v}" for v in levels
    }


def test_ids_are_found_even_in_aggregate_cells(tmp_path: Path, settings: Settings) -> None:
    case_id = all_cases()[settings.use_case.id_column][0]
    output = nbformat.v4.new_output("stream", name="stdout", text=f"first case {case_id}\n")
    assert personal_findings(notebook(tmp_path, ([output], True)), settings) == [
        f"cell 0: id {case_id}"
    ]


def test_mlflow_keys_and_artifacts_named_after_a_personal_column_are_found(
    tmp_path: Path, settings: Settings
) -> None:
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.runs import create_run, log_run_values

    age = numeric_personal(settings)
    ws = Workspace.at(tmp_path / "ws")
    configure(ws, settings=settings)
    clean = create_run(ws, settings, run_name="clean", author="dana")
    # An aggregate named after the attribute is one word: no finding.
    log_run_values(clean, params={"max_depth": 3}, metrics={f"gap_{age}": 0.1})
    assert mlflow_findings([clean], settings) == []

    leaky = create_run(ws, settings, run_name="leaky", author="dana")
    log_run_values(leaky, params={age: 37}, metrics={f"mean.{age}": 41.5})
    table = tmp_path / f"{age}.csv"
    table.write_text(f"{age}\n37\n", encoding="utf-8")
    mlflow.MlflowClient().log_artifact(leaky, str(table), artifact_path="debug")
    found = mlflow_findings([leaky], settings)
    assert found == [
        f"run {leaky}: key {age!r} is named after {age}",
        f"run {leaky}: key 'mean.{age}' is named after {age}",
        f"run {leaky}: artifact 'debug/{age}.csv' is named after {age}",
    ]


def test_mlflow_values_of_text_personal_columns_are_found(
    tmp_path: Path, settings: Settings
) -> None:
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.runs import create_run, log_run_values

    sex = text_personal(settings)
    value = (settings.columns[sex].levels or ["?"])[0]
    ws = Workspace.at(tmp_path / "ws")
    configure(ws, settings=settings)
    run = create_run(ws, settings, run_name="leaky", author="dana")
    log_run_values(run, params={"subset": value})
    assert mlflow_findings([run], settings) == [f"run {run}: {value} in 'subset {value}'"]
