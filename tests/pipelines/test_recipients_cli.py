"""`hilt subject notify-recipients`: the DPO records that a recipient outside the store's API
(hilt.toml [processing] recipients) was told of a subject's changes (GDPR Art. 19); the
subject's export then says so. The commands run in process; one through a real `hilt`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.audit_records import AuditQuery
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.ops.recipients import NOTIFIED
from hilt.pipelines.workspace import Workspace
from tests.cli_helpers import hilt_here as hilt
from tests.conftest import CONFIG, operator
from tests.loop_helpers import hilt_cli
from tests.pipelines.test_subject_cli import user_error

Ran = subprocess.CompletedProcess[str]

SUBJECT = "SYN-SUBJ-000042"
BUREAU = "Credit bureau (processor agreement 2026-04)"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame) -> Path:
    """A workspace of the demo config with an external recipient, the demo cases in it."""
    folder = tmp_path_factory.mktemp("recipients-cli")
    config = folder / "hilt.toml"
    config.write_text(
        CONFIG.read_text(encoding="utf-8") + f'\n[processing]\nrecipients = ["{BUREAU}"]\n',
        encoding="utf-8",
    )
    workspace = Workspace.at(folder / "ws")
    create_workspace(workspace, config)
    operator(workspace).ingest_cases(cases_frame)
    return workspace.root


def notify(ws: Path, *args: str, recipient: str = BUREAU, as_user: str = "pia") -> Ran:
    return hilt(
        "subject", "notify-recipients", *args, "--recipient", recipient,
        "--workspace", ws, "--as", as_user,
    )  # fmt: skip


@pytest.mark.obligation("GDPR 19")
def test_the_dpo_records_telling_an_external_recipient_even_after_erasure(ws: Path) -> None:
    r = hilt_cli(
        "subject", "notify-recipients", SUBJECT, "--recipient", BUREAU,
        "--workspace", ws, "--as", "pia",
    )  # fmt: skip
    user_error(r, "no rectification, erasure or restriction")
    assert SUBJECT not in r.stderr
    user_error(
        notify(ws, SUBJECT, recipient="Someone else"), "[processing] recipients names: " + BUREAU
    )
    user_error(notify(ws, SUBJECT, as_user="alice"), "alice")
    r = hilt(
        "subject", "rectify", SUBJECT, "--set", "duration=30", "--workspace", ws, "--as", "pia"
    )
    assert r.returncode == 0, r.stderr
    r = notify(ws, SUBJECT)
    assert r.returncode == 0, r.stderr
    told = re.search(
        r"told of subject (subj_[0-9a-f]+)'s changes up to seq (\d+).*audit seq (\d+)", r.stdout
    )
    assert told is not None and SUBJECT not in r.stdout
    user_error(notify(ws, SUBJECT), "already told")
    r = hilt("subject", "export", SUBJECT, "--workspace", ws, "--as", "pia")
    doc = json.loads(r.stdout)
    assert doc["recipients"] == [
        {"name": BUREAU, "kind": "external", "first_disclosed_at": None, "last_disclosed_at": None}
    ]
    [notice] = doc["recipient_notices"]
    assert (notice["change"], notice["recipient"], notice["told"]) == ("rectify", BUREAU, True)
    assert notice["told_seq"] == int(told.group(3))
    # After the erasure the subject's id leads nowhere: the DPO names the subject_ref.
    ref = told.group(1)
    r = hilt("subject", "erase", SUBJECT, "--workspace", ws, "--as", "pia")
    assert r.returncode == 0, r.stderr
    user_error(notify(ws, SUBJECT), "no subject with that id")
    r = notify(ws, "--subject-ref", ref)
    assert r.returncode == 0, r.stderr
    otto = open_store_as(Workspace.at(ws), Identity(name="otto"))
    notified = [e for e in otto.audit_events(limit=10_000) if e.action == NOTIFIED]
    assert [(e.actor, e.object_id, e.payload["recipient"]) for e in notified] == [
        ("pia", ref, BUREAU),
        ("pia", ref, BUREAU),
    ]
    [erased] = otto.audit_search(AuditQuery(action="subject.erased")).events
    assert notified[1].payload["changes"] == [erased.seq]
    assert SUBJECT not in json.dumps([e.model_dump() for e in notified])
    assert otto.verify().ok
    user_error(notify(ws), "EXTERNAL_ID, or --subject-ref")
