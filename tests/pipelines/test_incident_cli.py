"""`hilt incident open|update|close|list` and the incident `hilt audit verify` opens, as a
lead's or a scheduler's scripts run them: exit codes, one-line errors, no stack traces, and
the same commands through a running store service. The commands run in process; one through
a real `hilt` process."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import edit_entry, raw_db
from tests.cli_helpers import hilt_here as hilt
from tests.conftest import issue_tokens, start_service
from tests.loop_helpers import hilt_cli


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def user_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr


def incident_id(stdout: str) -> str:
    found = re.search(r"\b(INC-\d+)\b", stdout)
    assert found, stdout
    return found.group(1)


@pytest.mark.obligation("AI Act 73", "GDPR 33")
def test_a_lead_opens_tells_and_a_second_lead_closes(workspace: Workspace) -> None:
    w = ("--workspace", workspace.root)
    opened = ok(
        hilt(
            "incident", "open", *w, "--as", "lena", "--kind", "serious_incident",
            "--summary", "Wrong scores for a branch.", "--known-at", "2026-01-01T00:00Z",
        )
    )  # fmt: skip
    iid = incident_id(opened)
    assert "deadline 2026-01-16T00:00:00.000000Z" in opened and "AI Act 73(2)" in opened
    listed = ok(hilt("incident", "list", *w, "--as", "max"))
    assert f"OVERDUE {iid}" in listed and "1 incidents, 1 overdue" in listed
    told = ok(
        hilt(
            "incident", "update", iid, *w, "--as", "pia", "--told", "Market surveillance",
            "--told-at", "2026-01-20T00:00Z",
        )
    )  # fmt: skip
    assert "told: Market surveillance at 2026-01-20T00:00:00.000000Z (reported late)" in told
    user_error(
        hilt("incident", "close", iid, *w, "--as", "lena", "--reason", "Mine."),
        "cannot close it",
    )
    closed = ok(hilt("incident", "close", iid, *w, "--as", "max", "--reason", "Fixed."))
    assert f"{iid} serious_incident" in closed and "closed by max" in closed
    assert "0 incidents" in ok(hilt("incident", "list", *w))
    assert iid in ok(hilt("incident", "list", *w, "--all"))


def test_user_errors_exit_2_with_one_line_and_nothing_is_written(workspace: Workspace) -> None:
    w = ("--workspace", workspace.root)
    user_error(
        hilt_cli("incident", "open", *w, "--kind", "bad", "--summary", "x"), "kind must be one of"
    )
    user_error(
        hilt(
            "incident", "open", *w, "--kind", "death", "--summary", "x",
            "--known-at", "2999-01-01T00:00Z",
        ),
        "in the future",
    )  # fmt: skip
    user_error(
        hilt("incident", "open", *w, "--kind", "death", "--summary", "x", "--known-at", "soon"),
        "known_at must be an ISO-8601 time",
    )
    user_error(
        hilt("incident", "open", *w, "--as", "alice", "--kind", "death", "--summary", "x"),
        "alice",
    )
    user_error(hilt("incident", "update", "INC-4", *w, "--note", "x"), "no incident 'INC-4'")
    user_error(hilt("incident", "update", "INC-4", *w), "nothing to update")
    assert "0 incidents, 0 overdue" in ok(hilt("incident", "list", *w, "--all"))


@pytest.mark.obligation("AI Act 73", "GDPR 33", "AI Act 12")
def test_a_failed_audit_verify_opens_one_incident(workspace: Workspace) -> None:
    w = ("--workspace", workspace.root)
    opened = ok(hilt("incident", "open", *w, "--kind", "malfunction", "--summary", "x"))
    seq = int(incident_id(opened).removeprefix("INC-"))
    assert ok(hilt("audit", "verify", *w)).startswith("OK ")
    assert "1 incidents, 0 overdue" in ok(hilt("incident", "list", *w))  # a log that verifies

    def change(entry: dict[str, Any]) -> None:
        entry["payload"]["kind"] = "death"

    with raw_db(workspace) as con:
        edit_entry(con, seq, change)
    first = hilt("audit", "verify", *w)
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert f"BROKEN at seq {seq}" in first.stdout
    breach = re.search(
        r"incident (INC-\d+) opened \(personal_data_breach, GDPR 33\(1\)\)", first.stdout
    )
    assert breach, first.stdout
    again = hilt("audit", "verify", *w)
    assert again.returncode == 1
    assert f"incident {breach.group(1)} already records this break" in again.stdout
    listed = ok(hilt("incident", "list", *w))
    assert listed.count("source verify") == 1 and "personal_data_breach" in listed


def test_the_commands_through_a_store_service(workspace: Workspace) -> None:
    tokens = issue_tokens(workspace, workspace.settings())
    svc = start_service(workspace)
    try:
        w = ("--workspace", workspace.root)
        lena = {"HILT_TOKEN": tokens["lena"]}
        opened = ok(hilt("incident", "open", *w, "--kind", "death", "--summary", "x", env=lena))
        iid = incident_id(opened)
        user_error(
            hilt("incident", "close", iid, *w, "--reason", "Mine.", env=lena), "cannot close"
        )
        max_ = {"HILT_TOKEN": tokens["max"]}
        ok(hilt("incident", "close", iid, *w, "--reason", "Done.", env=max_))
        user_error(hilt("incident", "list", *w, env={"HILT_TOKEN": tokens["alice"]}), "incidents")
    finally:
        svc.stop()
