"""Canary personal data through the whole loop, then erased.

A subject with canary values (name, birthplace, their own id, a reviewer's comment about
them, a rectified value) goes through ingest, the retraining notebook (snapshot, MLflow),
scoring, review and rectification, all real: papermill on the python3 kernel, MLflow's
sqlite store, the DuckDB file. Before the erasure the canaries reach where data goes (the
snapshot holds the birthplace; the export holds every one of them) and nowhere else in the
clear (not the store file, not MLflow, not the executed notebooks). After `hilt subject
erase` and a checkpoint, a scan of every file of the workspace (DuckDB and its WAL, the key
store, MLflow's database and artifacts, runs/, snapshots/ decoded as Parquet) finds none of
them, and `hilt audit verify` passes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import polars as pl
import pytest

from hilt.pipelines.loop import runner
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.subgroups import POOLED_GROUP
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import DB_FILE
from hilt.pipelines.loop.tracking.runs import run_info
from hilt.pipelines.loop.tracking.tags import TAG_SNAPSHOT_REGENERATED, TAG_SNAPSHOT_REMOVED
from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, operator
from tests.loop_helpers import (
    FAST,
    HOLDOUT_SALT,
    all_cases,
    empty_tracking_store,
    hilt_forked,
)

pytestmark = pytest.mark.slow

EXTRA_COLUMNS = """
full_name = { type = "string", description = "Applicant's name" }
birthplace = { type = "string", description = "Place of birth" }
"""
PLACES = ["Aachen", "Bonn", "Celle", "Dessau"]


def canary_config(tmp_path: Path) -> Path:
    """The demo use case plus two free-text personal columns; birthplace is protected too,
    so it goes into training snapshots (for subgroup metrics), like sex and age."""
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace("[columns]\n", "[columns]\n" + EXTRA_COLUMNS, 1)
    text = text.replace(
        'personal = ["sex", "age"]', 'personal = ["sex", "age", "full_name", "birthplace"]', 1
    )
    text = text.replace('protected = ["sex", "age"]', 'protected = ["sex", "age", "birthplace"]', 1)
    path = tmp_path / "canary.toml"
    path.write_text(text, encoding="utf-8")
    return path


def with_people(frame: pl.DataFrame) -> pl.DataFrame:
    n = frame.height
    return frame.with_columns(
        pl.Series("full_name", [f"Person {i}" for i in range(n)]),
        pl.Series("birthplace", [PLACES[i % len(PLACES)] for i in range(n)]),
    )


def scan(root: Path, needles: dict[str, str]) -> list[str]:
    """Where in ``root`` any needle is found: raw bytes of every file, and the decoded values
    of every Parquet file (compression could hide a value from a byte scan)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        texts = [data]
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            texts.append(frame.cast(pl.String).write_csv().encode("utf-8"))
        for what, needle in needles.items():
            if any(needle.encode("utf-8") in t for t in texts):
                found.append(f"{path.relative_to(root)}: {what}")
    return found


@pytest.fixture(scope="module")
def canary() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10].upper()
    return {
        "subject id": f"CANARYSUBJ{tag}",
        "name": f"CANARYNAME{tag}",
        "birthplace": f"CANARYPLACE{tag}",
        "comment": f"CANARYCOMMENT{tag}",
        "rectified name": f"CANARYFIXED{tag}",
    }


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, canary: dict[str, str]) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("erasure")
    ws = Workspace.at(root / "ws")
    create_workspace(ws, canary_config(root), holdout_salt=HOLDOUT_SALT)
    shutil.copyfile(empty_tracking_store(), ws.root / DB_FILE)  # as `hilt init` creates it
    cases = with_people(all_cases())
    history, new = cases.head(700), cases.slice(700, 40)

    def mark(frame: pl.DataFrame, case_id: str) -> pl.DataFrame:
        hit = pl.col("application_id") == case_id
        return frame.with_columns(
            pl.when(hit)
            .then(pl.lit(canary["subject id"]))
            .otherwise("applicant_id")
            .alias("applicant_id"),
            pl.when(hit).then(pl.lit(canary["name"])).otherwise("full_name").alias("full_name"),
            pl.when(hit)
            .then(pl.lit(canary["birthplace"]))
            .otherwise("birthplace")
            .alias("birthplace"),
        )

    # The canary subject applied twice: once in the past (outcome known; APP-000006 falls in
    # the holdout under HOLDOUT_SALT, so their birthplace is among the holdout's groups for
    # the subgroup metrics), once now.
    operator(ws).ingest_cases(mark(history, "APP-000006"))
    incoming = root / "incoming" / "new.csv"  # outside the workspace, like a scheduler's drop
    incoming.parent.mkdir()
    mark(new, "APP-000705").drop("risk").write_csv(incoming)
    trained = runner.execute(ws, runner.RunRequest("retrain", dict(FAST), author="dana"))
    assert trained.gate == "passed"
    promote(ws, trained.run_id, "lena")
    runner.execute(ws, runner.RunRequest("score", {"input_path": str(incoming)}, author="dana"))
    # The canary subject asks for human review (GDPR Art. 22): their case is served first,
    # and a decision needs the reviewer's lease on it.
    pia = open_store_as(ws, Identity(name="pia"))
    pia.contest("APP-000705")
    alice = open_store_as(ws, Identity(name="alice"))
    leased = alice.next_case()
    assert leased is not None and leased.case.case_id == "APP-000705"
    case = leased.case
    other = "0" if case.predictions[-1].label == "1" else "1"
    alice.record_decision(
        DecisionRequest(
            case_id="APP-000705",
            action="override",
            final_label=other,
            reason_code="other",
            comment=f"Spoke with {canary['comment']} about the income",
        )
    )
    pia.subject_rectify(canary["subject id"], "full_name", canary["rectified name"])
    yield ws


def test_before_erasure_the_canaries_reach_only_where_data_goes(
    loop: Workspace, canary: dict[str, str]
) -> None:
    ws = loop
    snapshots = sorted(ws.snapshots_dir.glob("*.parquet"))
    assert snapshots
    assert any(
        canary["birthplace"] in pl.read_parquet(p)["birthplace"].to_list() for p in snapshots
    )
    doc = open_store_as(ws, Identity(name="pia")).subject_export(canary["subject id"])
    text = doc.model_dump_json()
    for what, needle in canary.items():
        assert needle in text, f"the export lacks the {what}"
    assert sorted(c.case_id for c in doc.cases) == ["APP-000006", "APP-000705"]
    assert doc.training_runs and doc.snapshots
    # Outside the snapshots, no file of the workspace holds a canary in the clear ...
    outside = [f for f in scan(ws.root, canary) if not f.startswith("snapshots/")]
    assert outside == []
    # ... though the subgroup tables did meet the canary's birthplace: a group of one,
    # pooled with the other small groups instead of named.
    [notebook] = [p for p in ws.runs_dir.glob("*-retrain-*.ipynb")]
    assert POOLED_GROUP in notebook.read_text(encoding="utf-8")


@pytest.mark.obligation("GDPR 17")
def test_after_erasure_no_file_of_the_workspace_holds_a_canary(
    loop: Workspace, canary: dict[str, str], tmp_path: Path
) -> None:
    ws = loop

    def hilt(*args: str | Path) -> CompletedProcess[str]:
        return hilt_forked(*args, folder=tmp_path)

    trained = tracking_runs_with_snapshot(ws)
    assert trained, "no training run to check the snapshot tags of"
    r = hilt("subject", "erase", canary["subject id"], "--workspace", ws.root, "--as", "pia")
    assert r.returncode == 0, r.stderr
    assert "key destroyed" in r.stdout and "regenerated as" in r.stdout
    assert canary["subject id"] not in r.stdout + r.stderr
    r = hilt("audit", "checkpoint", "--workspace", ws.root)
    assert r.returncode == 0, r.stderr
    assert scan(ws.root, canary) == []
    # (verify hashes in worker processes of its own, forked from the `hilt` process)
    r = hilt("audit", "verify", "--workspace", ws.root)
    assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr
    # MLflow keeps its runs; those that trained on a regenerated snapshot say so.
    configure(ws, settings=ws.settings())
    for run_id in trained:
        tags = run_info(run_id).tags
        assert tags[TAG_SNAPSHOT_REMOVED].startswith("snapshot-")
        assert len(tags[TAG_SNAPSHOT_REGENERATED]) == 64
    # Erased means gone for the DPO too, and a second erasure is a clear error.
    r = hilt("subject", "export", canary["subject id"], "--workspace", ws.root, "--as", "pia")
    assert r.returncode == 2 and "no subject with that id" in r.stderr
    assert "Traceback" not in r.stderr


def tracking_runs_with_snapshot(ws: Workspace) -> list[str]:
    events = operator(ws).audit_events(limit=10_000)
    return [e.object_id for e in events if e.action == "run.trained"]


def test_the_erasure_event_names_no_personal_data(loop: Workspace, canary: dict[str, str]) -> None:
    events = operator(loop).audit_events(limit=10_000)
    erased = [e for e in events if e.action == "subject.erased"]
    assert len(erased) == 1
    text = json.dumps(erased[0].model_dump())
    for needle in canary.values():
        assert needle not in text
    assert sorted(erased[0].payload["cases"]) == ["APP-000006", "APP-000705"]
