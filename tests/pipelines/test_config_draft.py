"""`hilt config draft`: a hilt.toml drafted from a case file passes `hilt init` unchanged,
ingests that same file, and (for the demo data) trains a model."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from hilt.pipelines.cli import app
from hilt.pipelines.config import load_settings
from hilt.pipelines.config_draft import Draft, draft_config
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainParams
from hilt.pipelines.loop.steps import holdout, training, training_data
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, CSV, operator
from tests.loop_helpers import HOLDOUT_SALT

ROWS = 60


def _draft_into(folder: Path, draft: Draft) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hilt.toml"
    path.write_text(draft.text, encoding="utf-8")
    return path


def _columns(draft: Draft) -> dict[str, dict[str, Any]]:
    parsed: dict[str, Any] = tomllib.loads(draft.text)
    columns: dict[str, dict[str, Any]] = parsed["columns"]
    return columns


def test_the_demo_csv_round_trips_draft_init_ingest_retrain(tmp_path: Path) -> None:
    draft = draft_config(CSV, target="risk")
    hand = load_settings(CONFIG)
    # The guesses agree with the hand-written config of the demo.
    assert (draft.id_column, draft.subject_column) == ("application_id", "applicant_id")
    assert set(draft.features) == set(hand.fields.features)
    assert set(draft.personal) == set(draft.protected) == {"sex", "age"}
    assert draft.target.classes == ["1", "0"] and draft.target.positive == "1"
    columns = _columns(draft)
    for name, column in hand.columns.items():
        if name != "credit_amount":  # whole numbers in the file: drafted as int
            assert columns[name]["type"] == column.type, name
        if column.levels:
            assert sorted(columns[name]["levels"]) == sorted(column.levels), name
    # Every column's guess is commented.
    for name in columns:
        assert f"\n# {name}: " in draft.text, name

    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, _draft_into(tmp_path, draft), holdout_salt=HOLDOUT_SALT)
    result = operator(ws).ingest_cases(pl.read_csv(CSV, infer_schema=False))
    assert result.rows == 1000
    # Retrain: the notebook's steps on the drafted config up to the evaluation with its
    # subgroup gaps (what MLflow logs and the registry records does not depend on the
    # config, and costs ~30 s here).
    settings = load_settings(ws.config_path)
    store = open_store_as(ws, Identity(name="scientist1"))
    dataset = training_data.load_dataset(training_data.take_snapshot(store, 0), settings)
    model = training.train(dataset, TrainParams(num_boost_round=30, nthread=1))
    evaluation = holdout.evaluate(model, dataset, settings)
    assert evaluation.metrics["auc"] > 0.6
    assert set(evaluation.gaps) == {"sex", "age"}  # the protected attributes drafted
    assert operator(ws).verify().ok


def _tricky() -> pl.DataFrame:
    n = ROWS
    return pl.DataFrame(
        {
            "case_id": [f"C{i:04d}" for i in range(n)],
            "customer_id": [f"P{i // 2:04d}" for i in range(n)],
            "outcome": ["yes" if i % 3 else "no" for i in range(n)],
            "empty": [None] * n,
            "grade": [str(1 + i % 3) for i in range(n)],
            "income": [f"{1000 + 12.5 * i}" for i in range(n)],
            "applied_on": [f"2026-0{1 + i % 9}-1{i % 10}" for i in range(n)],
            "contact": [f"person{i}@example.org" for i in range(n)],
            "account": [f"DE{10 + i:02d} 3704 0044 0532 0130 00" for i in range(n)],
            "notes": [f"called back about item {i * 7919 % 1000}" for i in range(n)],
            "branch": [["Zürich", "São Paulo", "東京"][i % 3] for i in range(n)],
            "gender": [["f", "m", ""][i % 3] for i in range(n)],
            "owns_home": ["true" if i % 2 else "false" for i in range(n)],
            "balance": [str(i - 20) for i in range(n)],
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tricky_columns_are_guessed_commented_and_the_file_ingests(
    tmp_path: Path, fmt: str
) -> None:
    frame = _tricky()
    path = tmp_path / f"tricky.{fmt}"
    if fmt == "csv":
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    draft = draft_config(path, target="outcome")
    assert (draft.id_column, draft.subject_column) == ("case_id", "customer_id")
    assert draft.target.classes == ["yes", "no"] and draft.target.positive == "yes"
    c = _columns(draft)
    assert c["empty"] == {"type": "string", "nullable": True}
    assert c["grade"] == {"type": "category", "levels": ["1", "2", "3"]}  # a code
    assert c["income"] == {"type": "float", "min": 1000, "max": 1737.5}
    assert c["applied_on"]["type"] == "string" and "looks like dates" in draft.text
    assert c["branch"] == {"type": "category", "levels": sorted(["Zürich", "São Paulo", "東京"])}
    assert c["gender"] == {"type": "category", "levels": ["f", "m"], "nullable": True}
    assert c["owns_home"] == {"type": "bool"}
    assert c["balance"] == {"type": "int", "min": -20, "max": 39}
    assert set(draft.features) == {"grade", "income", "branch", "owns_home", "balance"}
    assert set(draft.personal) == {"empty", "applied_on", "contact", "account", "notes", "gender"}
    assert draft.protected == ["gender"]
    assert "contact: personal: 100% of the values look like email addresses" in draft.text
    assert "account: personal: 100% of the values look like IBANs" in draft.text
    assert "notes: string: " in draft.text
    # No value of a free-text or personal-looking text column is written in the draft.
    for value in ("person1@example.org", "DE10 3704", "called back"):
        assert value not in draft.text

    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, _draft_into(tmp_path, draft))
    result = operator(ws).ingest_cases(
        pl.read_csv(path, infer_schema=False) if fmt == "csv" else pl.read_parquet(path)
    )
    assert result.rows == ROWS


def test_what_cannot_be_drafted_is_named(tmp_path: Path) -> None:
    frame = _tricky()
    path = tmp_path / "cases.csv"
    frame.write_csv(path)
    cases: dict[str, tuple[str, str | None, str | None, str]] = {
        "no such target": ("risk", None, None, "--target 'risk': no such column"),
        "no id": ("outcome", "grade", None, "repeats a value"),
        "id is the subject": ("outcome", "case_id", "case_id", "same column"),
        "numeric target": ("income", None, None, "classification target"),
    }
    for name, (target, id_column, subject, needle) in cases.items():
        with pytest.raises(InputError) as err:
            draft_config(path, target=target, id_column=id_column, subject=subject)
        assert needle in str(err.value), name
    frame.rename({"grade": "Grade level"}).write_csv(path)
    with pytest.raises(InputError, match=r"rename these columns in the file.*'Grade level'"):
        draft_config(path, target="outcome")
    frame.select("case_id", "outcome", "contact").write_csv(path)
    with pytest.raises(InputError, match="no column is left as a model input"):
        draft_config(path, target="outcome")


def test_the_command_prints_the_draft_on_stdout_and_refuses_in_one_line() -> None:
    # In-process (typer's runner): the command is wiring only; a process costs seconds.
    runner = CliRunner()
    r = runner.invoke(app, ["config", "draft", str(CSV), "--target", "risk"])
    assert r.exit_code == 0, r.stderr
    assert tomllib.loads(r.stdout)["use_case"]["id_column"] == "application_id"
    assert "7 features, 2 personal, 2 protected" in r.stderr
    r = runner.invoke(app, ["config", "draft", str(CSV), "--target", "nope"])
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == "error: --target 'nope': no such column in the file\n"
