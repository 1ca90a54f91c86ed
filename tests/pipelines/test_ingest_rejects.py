"""`hilt ingest FILE --rejects REJECTS.csv`: the valid rows land as one audited batch, the
invalid ones go to the rejects file with their reason, and the log still verifies."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of, operator
from tests.loop_helpers import hilt_cli

#: Rows (0-based) given an applicant under 18: the issue's 7 bad rows.
UNDER_AGE = (3, 50, 100, 200, 300, 400, 999)


@pytest.mark.obligation("AI Act 10", "AI Act 12")
def test_seven_under_age_rows_go_to_the_rejects_file_and_the_rest_land(
    tmp_path: Path, empty_template: Workspace, cases_frame: pl.DataFrame
) -> None:
    ws = copy_of(empty_template, tmp_path / "ws")
    ages = cases_frame["age"].to_list()
    for i in UNDER_AGE:
        ages[i] = str(15 + i % 3)
    path = tmp_path / "applicants.csv"
    cases_frame.with_columns(pl.Series("age", ages)).write_csv(path)
    rejects = tmp_path / "rejects.csv"

    r = hilt_cli(
        "ingest", path, "--rejects", rejects, "--workspace", ws.root, env={"HILT_PROGRESS": "1"}
    )
    assert r.returncode == 0, r.stderr
    # The progress of the rows on stderr, asked for; stdout holds only the report.
    assert "ingesting" in r.stderr and "1000/1000" in r.stderr and "rows" in r.stderr
    assert r.stdout.startswith("ingested 993 cases as audit seq ")
    sha = hashlib.sha256(rejects.read_bytes()).hexdigest()
    assert f"rejected 7 rows, written to {rejects} with the reason of each (sha256:{sha}," in (
        r.stdout
    )
    written = pl.read_csv(rejects, infer_schema=False)
    assert written.columns == ["row", *cases_frame.columns, "reason"]
    assert written["row"].to_list() == [str(i + 1) for i in UNDER_AGE]
    assert written["application_id"].to_list() == [
        cases_frame["application_id"][i] for i in UNDER_AGE
    ]
    assert set(written["reason"]) == {"age is below 18"}

    store = operator(ws)
    assert store.counts()["cases"] == 993
    event = store.audit_events(after_seq=store.audit_head().seq - 1, limit=1)[0]
    assert event.action == "cases.ingest"
    assert (event.payload["rows"], event.payload["rejected"]) == (993, 7)
    assert event.payload["rejects_sha256"] == sha  # the file written is the file audited
    assert store.verify().ok
