"""`hilt subject …`, `hilt retention apply` and `hilt records` as a DPO's scripts run them:
exact forms, exit codes, no stack traces, no subject id echoed, and the same commands
through a running store service. The commands run in process (``hilt``); each group also
through a real `hilt` process (``hilt_cli``)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.workspace import Workspace
from tests.cli_helpers import hilt_here as hilt
from tests.conftest import copy_of, issue_tokens, operator, start_service
from tests.loop_helpers import hilt_cli

SUBJECT = "SYN-SUBJ-000042"


def user_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.startswith("error: ")
    for needle in needles:
        assert needle in r.stderr


@pytest.fixture(scope="module")
def ws(
    tmp_path_factory: pytest.TempPathFactory, empty_template: Workspace, cases_frame: pl.DataFrame
) -> Path:
    """A workspace of the demo config (`hilt init`) with the demo cases (`hilt ingest`)."""
    workspace = copy_of(empty_template, tmp_path_factory.mktemp("subject-cli") / "ws")
    operator(workspace).ingest_cases(cases_frame)
    return workspace.root


def test_export_prints_the_subject_as_json_or_writes_a_private_file(
    ws: Path, tmp_path: Path
) -> None:
    r = hilt("subject", "export", SUBJECT, "--workspace", ws, "--as", "pia")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["format"] == "hilt-subject-export/1"
    assert doc["external_subject_id"] == SUBJECT
    assert [c["case_id"] for c in doc["cases"]] == ["APP-000042"]
    out = tmp_path / "export.json"
    r = hilt("subject", "export", SUBJECT, "--workspace", ws, "--as", "pia", "--output", out)
    assert r.returncode == 0, r.stderr
    assert SUBJECT not in r.stdout  # the summary names the pseudonym only
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["external_subject_id"] == SUBJECT
    user_error(
        hilt("subject", "export", SUBJECT, "--workspace", ws, "--as", "pia", "--output", out),
        "refusing to overwrite",
    )
    schema = hilt("subject", "schema")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"] == "SubjectExport"


def test_refusals_are_one_line_and_never_echo_the_subject_id(ws: Path) -> None:
    before = hilt("audit", "verify", "--workspace", ws).stdout
    user_error(hilt_cli("subject", "erase", SUBJECT, "--workspace", ws), "--as USER")
    user_error(
        hilt("subject", "erase", SUBJECT, "--workspace", ws, "--as", "alice"),
        "may not exercise data-subject rights",
    )
    user_error(hilt("subject", "erase", SUBJECT, "--workspace", ws, "--as", "nobody"), "nobody")
    r = hilt("subject", "export", "SYN-SUBJ-999999", "--workspace", ws, "--as", "pia")
    user_error(r, "no subject with that id")
    assert "SYN-SUBJ-999999" not in r.stderr
    user_error(
        hilt("subject", "rectify", SUBJECT, "--set", "age", "--workspace", ws, "--as", "pia"),
        "COLUMN=VALUE",
    )
    user_error(
        hilt("subject", "rectify", SUBJECT, "--set", "age=-3", "--workspace", ws, "--as", "pia"),
        "does not fit the column",
    )
    assert hilt("audit", "verify", "--workspace", ws).stdout == before  # nothing written


def test_restrict_rectify_contest_erase_then_verify(ws: Path) -> None:
    def dpo(*args: str) -> subprocess.CompletedProcess[str]:
        return hilt("subject", *args, "--workspace", str(ws), "--as", "pia")

    r = dpo("restrict", SUBJECT)
    assert r.returncode == 0 and "subject.restricted" in r.stdout, r.stderr
    user_error(dpo("restrict", SUBJECT), "already in force")
    assert dpo("restrict", SUBJECT, "--lift").returncode == 0
    assert dpo("object", SUBJECT).returncode == 0
    assert dpo("object", SUBJECT, "--lift").returncode == 0
    r = dpo("rectify", SUBJECT, "--set", "duration=24")
    assert r.returncode == 0 and "APP-000042" in r.stdout, r.stderr
    user_error(dpo("contest", SUBJECT), "no decided case")
    r = dpo("erase", SUBJECT)
    assert r.returncode == 0, r.stderr
    assert re.search(r"erased subject subj_[0-9a-f]{32}: 1 cases, key destroyed", r.stdout)
    assert SUBJECT not in r.stdout + r.stderr
    user_error(dpo("erase", SUBJECT), "no subject with that id")
    r = hilt("audit", "verify", "--workspace", ws)
    assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr


def test_retention_and_the_record_of_processing(ws: Path) -> None:
    r = hilt_cli("retention", "apply", "--workspace", ws)
    assert r.returncode == 0 and "nothing due" in r.stdout, r.stderr
    user_error(hilt("retention", "apply", "--workspace", ws, "--as", "alice"), "may not")
    r = hilt("records", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    for table in ("case_personal", "identity", "audit_log", "keys/subject-keys.sqlite"):
        assert f"| {table} |" in r.stdout
    r = hilt_cli("records", "--workspace", ws, "--json")
    assert {e["name"] for e in json.loads(r.stdout)} >= {"decisions", "snapshots/*.parquet"}


def test_the_same_commands_go_through_a_running_store_service(ws: Path) -> None:
    workspace = Workspace.at(ws)
    tokens = issue_tokens(workspace, workspace.settings())
    svc = start_service(workspace)
    try:
        subject = "SYN-SUBJ-000043"
        # The embedded store is held by the service: without a token, a clear refusal.
        user_error(hilt("subject", "restrict", subject, "--workspace", ws), "HILT_TOKEN")
        r = hilt_cli(
            "subject", "restrict", subject, "--workspace", ws, env={"HILT_TOKEN": tokens["pia"]}
        )
        assert r.returncode == 0 and "subject.restricted" in r.stdout, r.stderr
        r = hilt(
            "subject",
            "restrict",
            subject,
            "--workspace",
            ws,
            "--as",
            "someone-else",
            env={"HILT_TOKEN": tokens["pia"]},
        )
        user_error(r, "belongs to pia")
        r = hilt(
            "subject", "erase", subject, "--workspace", ws, env={"HILT_TOKEN": tokens["alice"]}
        )
        user_error(r, "may not exercise data-subject rights")
        r = hilt("retention", "apply", "--workspace", ws, env={"HILT_TOKEN": tokens["dana"]})
        assert r.returncode == 0 and "nothing due" in r.stdout, r.stderr
        # So do the scheduler's other commands: users, checkpoints, verify.
        admin = {"HILT_TOKEN": tokens["dana"]}
        r = hilt("users", "add", "zed", "--role", "reviewer", "--workspace", ws, env=admin)
        assert r.returncode == 0 and "token (shown once" in r.stdout, r.stderr
        r = hilt("audit", "checkpoint", "--workspace", ws, env=admin)
        assert r.returncode == 0 and r.stdout.startswith("checkpoint seq"), r.stderr
        r = hilt("audit", "verify", "--workspace", ws, env={"HILT_TOKEN": tokens["otto"]})
        assert r.returncode == 0 and r.stdout.startswith("OK "), r.stdout + r.stderr
        r = hilt(
            "users",
            "add",
            "zed2",
            "--role",
            "reviewer",
            "--workspace",
            ws,
            env={"HILT_TOKEN": tokens["alice"]},
        )
        user_error(r, "may not add users")
    finally:
        svc.stop()
