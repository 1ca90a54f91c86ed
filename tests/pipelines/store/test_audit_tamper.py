"""The tamper matrix: an attacker edits the DuckDB file directly, and verify names the break.

One workspace is built per test process (a copy of the session's ``loaded_template``: 200
cases and their predictions; then 30 decisions by alice, a signed checkpoint after the 20th
decision); every test works on its own copy of it. Each
attacker function below opens the file as an attacker with write access would
(``embedded.connect`` and plain SQL, recomputing hashes with ``chain_hash`` where a careful
attacker would), and returns the first break verify must report. Every case is checked
through the python API (an admin store's ``.verify()``) and through the real CLI
(``hilt audit verify``, exit code 1 and ``seq <n>: <kind>`` on stdout, no traceback).
The `hilt` processes are forked from one that has imported hilt once (tests/prewarmed.py).
Altering the tables themselves (a dropped, renamed or retyped table or column) is a
``schema`` break at seq 0, never a DuckDB error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hilt.pipelines.config import MIN_AUDIT_RETENTION_DAYS
from hilt.pipelines.errors import ConflictError
from hilt.pipelines.store import DecisionRequest, Identity, holding, open_store_as
from hilt.pipelines.store.audit.batch_digest import PREDICTIONS_ACTION, restated_digest
from hilt.pipelines.store.audit.chain import AuditEntry, chain_hash, utc_timestamp
from hilt.pipelines.store.audit.checkpoints import (
    Checkpoint,
    public_key_text,
    read_checkpoints,
    sign_checkpoint,
)
from hilt.pipelines.store.audit.verify import verify_records
from hilt.pipelines.store.audit_records import VerifyReport
from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import (
    append_event,
    built_once,
    edit_entry,
    fetch_one,
    raw_db,
    row_hash,
)
from tests.config_helpers import edit_config
from tests.conftest import CSV, copy_of, leased, operator, predictions_for
from tests.prewarmed import run as prewarmed_hilt
from tests.registry_helpers import register

FLIP = {"1": "0", "0": "1"}
DECISIONS_BEFORE_CHECKPOINT = 20
DECISIONS_AFTER_CHECKPOINT = 10


@dataclass(frozen=True)
class Layout:
    """Where things are in the template workspace's audit log."""

    cases_seq: int
    predictions_seq: int
    decision_seqs: tuple[int, ...]
    #: The seq the signed checkpoint covers, and the event that records it in the log.
    checkpoint_seq: int
    checkpoint_event_seq: int
    head_seq: int
    public_key: str


# ---------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def template(
    tmp_path_factory: pytest.TempPathFactory, loaded_template: Workspace
) -> tuple[Workspace, Layout]:
    """loaded_workspace (a copy of the session's ``loaded_template``: 200 cases and a
    prediction each by the champion) + 20 decisions + a signed checkpoint (and its
    audit.checkpoint event) + 10 more decisions; built once per test process, for this
    module and test_verify_from_checkpoint (which imports these fixtures)."""
    return built_once("tamper-template", lambda: _build_template(tmp_path_factory, loaded_template))


def _build_template(
    tmp_path_factory: pytest.TempPathFactory, loaded: Workspace
) -> tuple[Workspace, Layout]:
    ws = copy_of(loaded, tmp_path_factory.mktemp("tamper") / "ws")
    admin = operator(ws)
    loaded_events = admin.audit_events()
    (cases_seq,) = [e.seq for e in loaded_events if e.action == "cases.ingest"]
    (predictions_seq,) = [e.seq for e in loaded_events if e.action == PREDICTIONS_ACTION]
    preds = predictions_for(pl.read_csv(CSV, infer_schema=False).head(200))
    predicted = dict(zip(preds["case_id"], preds["label"], strict=True))

    alice = open_store_as(ws, Identity(name="alice"))
    seqs = []
    with holding(ws):  # 60 operations on one connection
        for i in range(DECISIONS_BEFORE_CHECKPOINT + DECISIONS_AFTER_CHECKPOINT):
            if i == DECISIONS_BEFORE_CHECKPOINT:
                checkpoint_seq = admin.checkpoint().seq
            case_id = leased(alice)  # a decision needs the reviewer's lease
            if i % 3 == 2:
                request = DecisionRequest(
                    case_id=case_id,
                    action="override",
                    final_label=FLIP[predicted[case_id]],
                    reason_code="data-error",
                    comment="Checked the application file.",
                    request_id=f"tamper-{i}",
                )
            else:
                request = DecisionRequest(
                    case_id=case_id, action="accept", request_id=f"tamper-{i}"
                )
            seqs.append(alice.record_decision(request).seq)
    report = admin.verify()
    assert report.ok and report.checkpoints == 1, report.summary()
    (event,) = [e for e in admin.audit_events() if e.action == "audit.checkpoint"]
    layout = Layout(
        cases_seq=cases_seq,
        predictions_seq=predictions_seq,
        decision_seqs=tuple(seqs),
        checkpoint_seq=checkpoint_seq,
        checkpoint_event_seq=event.seq,
        head_seq=report.events,
        public_key=ws.settings().audit.public_key or "",
    )
    assert layout.decision_seqs[-1] == layout.head_seq
    return ws, layout


@pytest.fixture
def victim(template: tuple[Workspace, Layout], tmp_path: Path) -> tuple[Workspace, Layout]:
    """A private copy of the template workspace, for one attacker to ruin."""
    source, layout = template
    ws = Workspace.at(tmp_path / "ws")
    shutil.copytree(source.root, ws.root)
    return ws, layout


# ---------------------------------------------------------------------- verifying


def verify_api(ws: Workspace, public_key: str | None = None) -> VerifyReport:
    return operator(ws).verify(public_key)


def verify_cli(ws: Workspace, *extra: str) -> subprocess.CompletedProcess[str]:
    """`hilt audit verify` in a process of its own (forked from one that has imported hilt
    once: tests/prewarmed.py), as an auditor's shell runs it."""
    return hilt_process("audit", "verify", "--workspace", ws.root, *extra, ws=ws)


def hilt_process(
    *args: str | Path, ws: Workspace, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` to its end in a process of its own; its output kept beside ``ws``."""
    return prewarmed_hilt(*args, folder=ws.root.parent / "hilt", env=env, timeout_s=120)


def assert_broken(ws: Workspace, seq: int, kind: str, public_key: str | None = None) -> None:
    """Both doors report the same first break: (seq, kind)."""
    report = verify_api(ws, public_key)
    assert not report.ok, report.summary()
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (seq, kind), report.summary()

    extra = ("--public-key", public_key) if public_key else ()
    cli = verify_cli(ws, *extra)
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert f"BROKEN at seq {seq}: {kind}:" in cli.stdout, cli.stdout
    assert "Traceback" not in cli.stderr, cli.stderr


def assert_intact(ws: Workspace, events: int, public_key: str | None = None) -> None:
    report = verify_api(ws, public_key)
    assert report.ok, report.summary()
    assert report.events == events
    extra = ("--public-key", public_key) if public_key else ()
    cli = verify_cli(ws, *extra)
    assert cli.returncode == 0, (cli.stdout, cli.stderr)
    assert cli.stdout.strip() == f"OK {events} events"


# ---------------------------------------------------------------------- attacker's tools
# (raw_db, fetch_one, edit_entry, row_hash, append_event: tests/audit_helpers.py)


def flip_decision(con: duckdb.DuckDBPyConnection, seq: int) -> None:
    """Flip a decision's final label in its audit entry AND its row, so the two agree."""

    def change(entry: dict[str, Any]) -> None:
        entry["payload"]["final_label"] = FLIP[entry["payload"]["final_label"]]

    edit_entry(con, seq, change)
    con.execute(
        "UPDATE decisions SET final_label = CASE final_label WHEN '1' THEN '0' ELSE '1' END"
        " WHERE seq = ?",
        [seq],
    )


def rechain(con: duckdb.DuckDBPyConnection, start: int) -> None:
    """Recompute prev_hash and hash of every row from ``start`` on: a valid chain again."""
    prev = row_hash(con, start - 1)
    rows = con.execute(
        "SELECT seq, entry FROM audit_log WHERE seq >= ? ORDER BY seq", [start]
    ).fetchall()
    for seq, entry in rows:
        new = chain_hash(prev, entry)
        con.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", [prev, new, seq])
        prev = new


def renumber(con: duckdb.DuckDBPyConnection, from_seq: int, by: int) -> None:
    """Shift the seq column of audit rows (and the decisions pointing at them)."""
    con.execute("UPDATE audit_log SET seq = seq + ? WHERE seq >= ?", [by, from_seq])
    con.execute("UPDATE decisions SET seq = seq + ? WHERE seq >= ?", [by, from_seq])


def forge_decision(con: duckdb.DuckDBPyConnection, seq: int, case_id: str) -> None:
    """Add a well-formed override by alice at ``seq``, chained onto the row at seq - 1,
    with a decisions row that matches its event: the records reconcile."""
    prediction_id, model_version, label = fetch_one(
        con,
        "SELECT prediction_id, model_version, label FROM predictions WHERE case_id = ?"
        " ORDER BY prediction_id DESC LIMIT 1",
        [case_id],
    )
    decision_id = f"forged{seq:026d}"
    payload = {
        "decision_id": decision_id,
        "request_id": None,
        "action": "override",
        "prediction_id": prediction_id,
        "model_version": model_version,
        "predicted_label": label,
        "final_label": FLIP[label],
        "reason_code": "policy-exception",
        "comment_sealed": None,
        "time_on_item_ms": 1000,
        "model_shown": True,
    }
    ts = "2030-01-01T00:00:00.000000Z"
    append_event(
        con, AuditEntry(seq, ts, "alice", "reviewer", "decision.record", "case", case_id, payload)
    )
    con.execute(
        "INSERT INTO decisions (decision_id, request_id, case_id, prediction_id, model_version,"
        " reviewer, reviewer_role, action, predicted_label, final_label, reason_code,"
        " comment_sealed, time_on_item_ms, model_shown, created_at, seq)"
        " VALUES (?, NULL, ?, ?, ?, 'alice', 'reviewer', 'override', ?, ?,"
        " 'policy-exception', NULL, 1000, true, TIMESTAMPTZ '2030-01-01 00:00:00+00', ?)",
        [decision_id, case_id, prediction_id, model_version, label, FLIP[label], seq],
    )


def resign_checkpoints(
    ws: Workspace, con: duckdb.DuckDBPyConnection, key: Ed25519PrivateKey | None = None
) -> str:
    """Re-sign every checkpoint with the attacker's own new key (``key``, else a new one),
    over the (rebuilt) chain.

    A thorough attacker: the checkpoint file is rewritten, and so is each audit.checkpoint
    event that records a checkpoint in the log (its head hash and signature), with the
    chain recomputed after it. Returns the new public key; hilt.toml is left alone here.
    """
    key = key or Ed25519PrivateKey.generate()
    checkpoints, problem = read_checkpoints(ws.checkpoints_path)
    assert problem is None and checkpoints
    lines = []
    for old in sorted(checkpoints, key=lambda c: c.seq):
        new = sign_checkpoint(key, old.seq, row_hash(con, old.seq), old.time)
        lines.append(new.to_line())
        events = con.execute(
            "SELECT seq FROM audit_log WHERE json_extract_string(entry, '$.action')"
            " = 'audit.checkpoint' AND json_extract_string(entry, '$.payload.signature') = ?",
            [old.signature],
        ).fetchall()
        for (seq,) in events:

            def change(entry: dict[str, Any], new: Checkpoint = new) -> None:
                entry["payload"].update(head_hash=new.head_hash, signature=new.signature)

            edit_entry(con, seq, change)
            rechain(con, seq)
    ws.checkpoints_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return public_key_text(key.public_key())


# ---------------------------------------------------------------------- the attacks
# Each takes the victim workspace and its layout and returns the first break verify must
# report: (seq, kind).

Expected = tuple[int, str]


def change_a_payload(ws: Workspace, at: Layout) -> Expected:
    """Flip a decision in its audit entry and its row, leaving the stored hash alone."""
    seq = at.decision_seqs[5]
    with raw_db(ws) as con:
        flip_decision(con, seq)
    return seq, "hash-mismatch"


def delete_a_row(ws: Workspace, at: Layout) -> Expected:
    """Remove a decision: its audit row and its decisions row."""
    seq = at.decision_seqs[7]
    with raw_db(ws) as con:
        con.execute("DELETE FROM audit_log WHERE seq = ?", [seq])
        con.execute("DELETE FROM decisions WHERE seq = ?", [seq])
    return seq, "seq-gap"


def delete_a_row_and_close_the_gap(ws: Workspace, at: Layout) -> Expected:
    """Remove a decision, then renumber the rows after it down by one: no gap in seq."""
    seq = at.decision_seqs[7]
    with raw_db(ws) as con:
        con.execute("DELETE FROM audit_log WHERE seq = ?", [seq])
        con.execute("DELETE FROM decisions WHERE seq = ?", [seq])
        renumber(con, seq + 1, -1)
    return seq, "seq-mismatch"


def insert_a_forged_row_renumbering_the_rest(ws: Workspace, at: Layout) -> Expected:
    """Make room at seq s by moving every later row up by one, then forge a decision at s,
    properly chained onto s - 1. The row pushed to s + 1 still says s inside."""
    seq = at.decision_seqs[4]
    with raw_db(ws) as con:
        renumber(con, seq, +1)
        forge_decision(con, seq, "APP-000150")
    return seq + 1, "seq-mismatch"


def insert_a_forged_row_with_a_duplicate_seq(ws: Workspace, at: Layout) -> Expected:
    """Rebuild audit_log without its primary key, then add a second, well-chained row at s."""
    seq = at.decision_seqs[4]
    with raw_db(ws) as con:
        con.execute("CREATE TABLE audit_log_copy AS SELECT * FROM audit_log")
        con.execute("DROP TABLE audit_log")
        con.execute("ALTER TABLE audit_log_copy RENAME TO audit_log")
        forge_decision(con, seq, "APP-000150")
    return seq, "seq-duplicate"


def swap_two_rows(ws: Workspace, at: Layout) -> Expected:
    """Swap the seq numbers of two decisions (and of their decision rows)."""
    low, high = at.decision_seqs[2], at.decision_seqs[9]
    with raw_db(ws) as con:
        for table in ("audit_log", "decisions"):
            con.execute(f"UPDATE {table} SET seq = -1 WHERE seq = ?", [low])
            con.execute(f"UPDATE {table} SET seq = ? WHERE seq = ?", [low, high])
            con.execute(f"UPDATE {table} SET seq = ? WHERE seq = -1", [high])
    return low, "seq-mismatch"


def truncate_the_tail(ws: Workspace, at: Layout) -> Expected:
    """Delete every event after seq `cut` (before the checkpoint), with their decisions."""
    cut = at.checkpoint_seq - 3
    with raw_db(ws) as con:
        con.execute("DELETE FROM audit_log WHERE seq > ?", [cut])
        con.execute("DELETE FROM decisions WHERE seq > ?", [cut])
    return cut + 1, "truncated"


def truncate_the_tail_and_rechain_it(ws: Workspace, at: Layout) -> Expected:
    """Delete the tail and append forged, correctly chained decisions past the checkpoint:
    the chain itself is valid again and every record matches its event."""
    cut = at.checkpoint_seq - 3
    with raw_db(ws) as con:
        con.execute("DELETE FROM audit_log WHERE seq > ?", [cut])
        con.execute("DELETE FROM decisions WHERE seq > ?", [cut])
        for n, seq in enumerate(range(cut + 1, at.head_seq + 1)):
            forge_decision(con, seq, f"APP-{150 + n:06d}")
    return at.checkpoint_seq, "checkpoint-mismatch"


def delete_the_checkpoint_file(ws: Workspace, at: Layout) -> Expected:
    """Remove audit/checkpoints.jsonl (outside the database), changing nothing else."""
    ws.checkpoints_path.unlink()
    return at.checkpoint_event_seq, "checkpoint-missing"


def rechain_everything(ws: Workspace, at: Layout) -> Expected:
    """Flip an early decision and recompute every hash after it: a valid chain."""
    seq = at.decision_seqs[0]
    with raw_db(ws) as con:
        flip_decision(con, seq)
        rechain(con, seq)
    return at.checkpoint_seq, "checkpoint-mismatch"


def rechain_everything_and_resign(ws: Workspace, at: Layout) -> Expected:
    """As above, and re-sign the checkpoint file with the attacker's own new key. The
    pinned public key in hilt.toml still names the workspace's real key."""
    seq = at.decision_seqs[0]
    with raw_db(ws) as con:
        flip_decision(con, seq)
        rechain(con, seq)
        resign_checkpoints(ws, con)
    return at.checkpoint_seq, "checkpoint-signature"


def edit_a_decision_row(ws: Workspace, at: Layout) -> Expected:
    """Flip a decision's final label in the decisions table only."""
    seq = at.decision_seqs[12]
    with raw_db(ws) as con:
        con.execute(
            "UPDATE decisions SET final_label = CASE final_label WHEN '1' THEN '0' ELSE '1' END"
            " WHERE seq = ?",
            [seq],
        )
    return seq, "record-mismatch"


def edit_a_decision_comment(ws: Workspace, at: Layout) -> Expected:
    """Swap an override's sealed comment for another decision's (both are valid ciphertext
    under the same kind of key; the log holds each one's own)."""
    seq = at.decision_seqs[2]  # every third decision is an override with a comment
    other = at.decision_seqs[5]
    with raw_db(ws) as con:
        con.execute(
            "UPDATE decisions SET comment_sealed ="
            " (SELECT comment_sealed FROM decisions WHERE seq = ?) WHERE seq = ?",
            [other, seq],
        )
    return seq, "record-mismatch"


def delete_a_decision_row(ws: Workspace, at: Layout) -> Expected:
    """Delete a decision row, leaving its audit event."""
    seq = at.decision_seqs[25]
    with raw_db(ws) as con:
        con.execute("DELETE FROM decisions WHERE seq = ?", [seq])
    return seq, "record-mismatch"


def edit_a_prediction_row(ws: Workspace, at: Layout) -> Expected:
    """Raise one prediction's score and flip its label; the batch keeps its row count."""
    with raw_db(ws) as con:
        con.execute("UPDATE predictions SET score = 0.99, label = '1' WHERE case_id = 'APP-000177'")
    return at.predictions_seq, "record-mismatch"


def edit_a_case_row(ws: Workspace, at: Layout) -> Expected:
    """Change a feature value of one case after it was ingested."""
    with raw_db(ws) as con:
        con.execute("UPDATE case_features SET duration = 1 WHERE case_id = 'APP-000042'")
    return at.cases_seq, "record-mismatch"


def delete_a_prediction_row(ws: Workspace, at: Layout) -> Expected:
    """Delete one prediction from the batch its event recorded."""
    with raw_db(ws) as con:
        con.execute("DELETE FROM predictions WHERE case_id = 'APP-000177'")
    return at.predictions_seq, "record-mismatch"


def drop_a_decision_column(ws: Workspace, at: Layout) -> Expected:
    """Drop the reason codes of every decision: the column is gone from the table."""
    with raw_db(ws) as con:
        con.execute("ALTER TABLE decisions DROP COLUMN reason_code")
    return 0, "schema"


def rename_a_decision_column(ws: Workspace, at: Layout) -> Expected:
    """Rename the comment column (the comments stay, under another name)."""
    with raw_db(ws) as con:
        con.execute("ALTER TABLE decisions RENAME COLUMN comment_sealed TO note")
    return 0, "schema"


def retype_a_decision_column(ws: Workspace, at: Layout) -> Expected:
    """Turn time on item into text: every value compares the same as before, as text."""
    with raw_db(ws) as con:
        con.execute("ALTER TABLE decisions ALTER time_on_item_ms TYPE VARCHAR")
    return 0, "schema"


def drop_the_predictions_table(ws: Workspace, at: Layout) -> Expected:
    """Drop a table the log speaks about."""
    with raw_db(ws) as con:
        con.execute("DROP TABLE predictions")
    return 0, "schema"


def drop_the_audit_log(ws: Workspace, at: Layout) -> Expected:
    """Drop the log itself (the view over it first, which depends on it)."""
    with raw_db(ws) as con:
        con.execute("DROP VIEW audit_events")
        con.execute("DROP TABLE audit_log")
    return 0, "schema"


def rename_the_identity_table(ws: Workspace, at: Layout) -> Expected:
    """Rename the identity table: the cases' batch digests can no longer be recomputed."""
    with raw_db(ws) as con:
        con.execute("ALTER TABLE identity RENAME TO identity_old")
    return 0, "schema"


# Forged events that carry authority, appended after the last checkpoint and chained as
# the store would chain them (the chain and the checkpoints verify): the authority check
# holds each to the rule of the operation that writes it (``store.audit.authority``).


def entry_ts(con: duckdb.DuckDBPyConnection, seq: int) -> datetime:
    (ts,) = fetch_one(
        con, "SELECT json_extract_string(entry, '$.ts') FROM audit_log WHERE seq = ?", [seq]
    )
    return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))


def forge_a_purge(con: duckdb.DuckDBPyConnection, at: Layout, ts: datetime, days: int) -> Expected:
    """Delete the log's first events, up to the first batch (whose rows the store still
    holds), and append a retention event that claims to have purged them by age:
    anchored on the last one's hash, its cut its own time minus ``days``."""
    through = at.cases_seq - 1
    assert through >= 1
    anchor = row_hash(con, through)
    con.execute("DELETE FROM audit_log WHERE seq <= ?", [through])
    payload = {
        "audit": {
            "purged_through": through,
            "anchor_hash": anchor,
            "days": days,
            "cut": utc_timestamp(ts - timedelta(days=days)),
        },
        "batches": {},
        "snapshots": [],
    }
    seq = at.head_seq + 1
    append_event(
        con,
        AuditEntry(
            seq, utc_timestamp(ts), "dana", "admin", "retention.applied", "retention", "", payload
        ),
    )
    return seq, "forged-purge"


def forge_a_purge_with_a_short_period(ws: Workspace, at: Layout) -> Expected:
    """Today, a "retention" purge of today's first events, with a 30-day period."""
    with raw_db(ws) as con:
        return forge_a_purge(con, at, entry_ts(con, at.head_seq) + timedelta(seconds=1), 30)


def forge_a_purge_dated_in_the_future(ws: Workspace, at: Layout) -> Expected:
    """A purge whose every rule holds but its time: dated a full audit period after the
    first event it keeps, so its cut falls just at that event (hiding today's events as
    if they were old)."""
    days = max(ws.settings().retention.audit_log_days, MIN_AUDIT_RETENTION_DAYS)
    with raw_db(ws) as con:
        kept = entry_ts(con, at.cases_seq)
        return forge_a_purge(con, at, kept + timedelta(days=days), days)


def forge_a_digest_restatement(ws: Workspace, at: Layout) -> Expected:
    """Edit a prediction, then append an erasure that restates the predictions batch's
    digest as the edited rows now give it: the batch digests verify again."""
    with raw_db(ws) as con:
        con.execute("UPDATE predictions SET score = 0.99, label = '1' WHERE case_id = 'APP-000177'")
        rows = fetch_one(
            con, "SELECT count(*) FROM predictions WHERE batch_seq = ?", [at.predictions_seq]
        )[0]
        digest = restated_digest(con, ws.settings(), at.predictions_seq)
        seq = at.head_seq + 1
        payload = {"batches": {str(at.predictions_seq): {"rows": rows, "digest": digest}}}
        ts = utc_timestamp(entry_ts(con, at.head_seq) + timedelta(seconds=1))
        append_event(
            con, AuditEntry(seq, ts, "pia", "dpo", "subject.erased", "subject", "x", payload)
        )
    return seq, "forged-restatement"


def forge_after_the_head(
    ws: Workspace, at: Layout, actor: str, role: str, action: str, obj: str, payload: dict[str, Any]
) -> int:
    """Append one event right after the head, chained as the store would; its seq."""
    seq = at.head_seq + 1
    with raw_db(ws) as con:
        ts = utc_timestamp(entry_ts(con, at.head_seq) + timedelta(seconds=1))
        kind = action.split(".")[0]
        append_event(con, AuditEntry(seq, ts, actor, role, action, kind, obj, payload))
    return seq


def forge_a_run_whose_notebook_is_the_store(ws: Workspace, at: Layout) -> Expected:
    """A run event naming a notebook outside runs/ (an auditor's link would open it)."""
    payload = {"kind": "retrain", "notebook": "../store.duckdb"}
    return forge_after_the_head(ws, at, "dana", "admin", "run.finished", "r1", payload), (
        "notebook-path"
    )


def forge_a_promotion_by_its_author(ws: Workspace, at: Layout) -> Expected:
    """A model promoted by the lead who trained it."""
    payload = {"approver": "lena", "author": "lena", "run_id": "r1"}
    return forge_after_the_head(ws, at, "lena", "lead", "model.promoted", "m/v2", payload), (
        "four-eyes"
    )


def registered_seq(con: duckdb.DuckDBPyConnection, model: str) -> int:
    return int(fetch_one(con, "SELECT registered_seq FROM models WHERE model = ?", [model])[0])


def swap_the_champions_sha256(ws: Workspace, at: Layout) -> Expected:
    """The store's registry is what scoring obeys: the champion's sha256 replaced by that
    of another model file, so that the store takes its predictions (no event changed)."""
    with raw_db(ws) as con:
        con.execute(
            "UPDATE models SET model_sha256 = ? WHERE state = 'champion'",
            [hashlib.sha256(b"another model").hexdigest()],
        )
        return registered_seq(con, "test-model/v1"), "record-mismatch"


def make_a_rejected_model_the_champion(ws: Workspace, at: Layout) -> Expected:
    """A model a lead rejected made the champion in the registry table, the approval of
    the real champion written on it (its decider and seq); the champion retired."""
    dana = open_store_as(ws, Identity(name="dana"))
    register(dana, "test-model/v2", hashlib.sha256(b"test-model/v2").hexdigest())
    open_store_as(ws, Identity(name="max")).reject_model("test-model/v2", "Unfair to the young.")
    with raw_db(ws) as con:
        decided_by, decided_seq = fetch_one(
            con, "SELECT decided_by, decided_seq FROM models WHERE state = 'champion'", []
        )
        crown(con, "test-model/v2", str(decided_by), int(decided_seq))
    return int(decided_seq), "record-mismatch"


def crown(con: duckdb.DuckDBPyConnection, model: str, decided_by: str, decided_seq: int) -> None:
    """Make ``model`` the champion in the registry table (the champion retired), as decided
    by ``decided_by`` at ``decided_seq``: the table only, no event."""
    con.execute("UPDATE models SET state = 'retired' WHERE state = 'champion'")
    con.execute(
        "UPDATE models SET state = 'champion', decided_by = ?, decided_seq = ? WHERE model = ?",
        [decided_by, decided_seq, model],
    )


def forge_a_self_promotion_naming_another_author(ws: Workspace, at: Layout) -> Expected:
    """The one who registered a model (here the operator, at the file) appends its
    promotion in their own name as a lead, the payload naming someone else as its author
    (the existing rule compared the two names the payload gives), and makes the registry
    say so."""
    author = operator(ws)
    me = author.whoami().name
    register(author, "test-model/v2", hashlib.sha256(b"test-model/v2").hexdigest())
    head = author.audit_head().seq
    payload = {
        "approver": me,
        "author": "dana",
        "model_sha256": hashlib.sha256(b"test-model/v2").hexdigest(),
        "previous_champion": "test-model/v1",
        "run_id": "run-of-test-model/v2",
    }
    seq = forge_after_the_head(
        ws, replace(at, head_seq=head), me, "lead", "model.promoted", "test-model/v2", payload
    )
    with raw_db(ws) as con:
        crown(con, "test-model/v2", me, seq)
    return seq, "four-eyes"


def forge_a_config_approval_by_its_proposer(ws: Workspace, at: Layout) -> Expected:
    """An admin applies a loosening of the gate (pending a lead), then appends its approval
    in their own name, as a lead, and puts it in force in the table and in hilt.toml."""
    edit_config(ws, "floor = 0.65 ", "floor = 0.5 ")
    proposed = open_store_as(ws, Identity(name="dana"), for_config=True).config_apply()
    assert proposed.outcome == "pending"
    version = proposed.version.version
    head = operator(ws).audit_head().seq
    payload = {
        "version": version,
        "old_version": 1,
        "proposed_seq": head,
        "proposed_by": "dana",
        "loosens": proposed.version.loosens,
    }
    seq = forge_after_the_head(
        ws, replace(at, head_seq=head), "dana", "lead", "config.approved", f"v{version}", payload
    )
    with raw_db(ws) as con:
        con.execute("UPDATE config_versions SET state = 'superseded' WHERE version = 1")
        con.execute(
            "UPDATE config_versions SET state = 'in-force', decided_by = 'dana',"
            " decided_seq = ? WHERE version = ?",
            [seq, version],
        )
    edit_config(ws, "floor = 0.65 ", "floor = 0.5 ")
    return seq, "four-eyes"


ATTACKS = [
    pytest.param(change_a_payload, id="change-payload"),
    pytest.param(delete_a_row, id="delete-row"),
    pytest.param(delete_a_row_and_close_the_gap, id="delete-row-renumber"),
    pytest.param(insert_a_forged_row_renumbering_the_rest, id="insert-row-renumber"),
    pytest.param(insert_a_forged_row_with_a_duplicate_seq, id="insert-row-duplicate-seq"),
    pytest.param(swap_two_rows, id="swap-rows"),
    pytest.param(truncate_the_tail, id="truncate"),
    pytest.param(truncate_the_tail_and_rechain_it, id="truncate-rechain"),
    pytest.param(delete_the_checkpoint_file, id="checkpoint-file-deleted"),
    pytest.param(rechain_everything, id="rechain-all"),
    pytest.param(rechain_everything_and_resign, id="rechain-all-resign"),
    pytest.param(edit_a_decision_row, id="decision-row-edited"),
    pytest.param(edit_a_decision_comment, id="decision-comment-edited"),
    pytest.param(delete_a_decision_row, id="decision-row-deleted"),
    pytest.param(edit_a_prediction_row, id="prediction-row-edited"),
    pytest.param(delete_a_prediction_row, id="prediction-row-deleted"),
    pytest.param(edit_a_case_row, id="case-row-edited"),
    pytest.param(drop_a_decision_column, id="column-dropped"),
    pytest.param(rename_a_decision_column, id="column-renamed"),
    pytest.param(retype_a_decision_column, id="column-retyped"),
    pytest.param(drop_the_predictions_table, id="table-dropped"),
    pytest.param(drop_the_audit_log, id="audit-log-dropped"),
    pytest.param(rename_the_identity_table, id="table-renamed"),
    pytest.param(forge_a_purge_with_a_short_period, id="forged-purge-short-period"),
    pytest.param(forge_a_purge_dated_in_the_future, id="forged-purge-future"),
    pytest.param(forge_a_digest_restatement, id="forged-restatement"),
    pytest.param(forge_a_run_whose_notebook_is_the_store, id="forged-notebook-path"),
    pytest.param(forge_a_promotion_by_its_author, id="forged-self-promotion"),
    pytest.param(swap_the_champions_sha256, id="registry-sha256-swapped"),
    pytest.param(make_a_rejected_model_the_champion, id="registry-rejected-made-champion"),
    pytest.param(forge_a_self_promotion_naming_another_author, id="forged-self-promotion-lying"),
    pytest.param(forge_a_config_approval_by_its_proposer, id="forged-config-self-approval"),
]


# ---------------------------------------------------------------------- the tests


def test_an_untouched_workspace_verifies(victim: tuple[Workspace, Layout]) -> None:
    ws, at = victim
    assert_intact(ws, at.head_seq)
    assert_intact(ws, at.head_seq, public_key=at.public_key)


@pytest.mark.obligation("AI Act 12", "GDPR 5(1)(f)", "GDPR 32")
@pytest.mark.parametrize("attack", ATTACKS)
def test_verify_names_the_first_break(
    attack: Callable[[Workspace, Layout], Expected], victim: tuple[Workspace, Layout]
) -> None:
    ws, at = victim
    seq, kind = attack(ws, at)
    assert_broken(ws, seq, kind)


def forge_the_config_in_force(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """Replace the store's record of the config in force (its text and sha256, and what
    the workspace.init event says of it) with ``text``; the caller rechains from seq 1."""
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    con.execute(
        "UPDATE config_versions SET text = ?, sha256 = ? WHERE state = 'in-force'", [text, sha]
    )
    key = tomllib.loads(text)["audit"]["public_key"]

    def change(entry: dict[str, Any]) -> None:
        entry["payload"].update(config_sha256=sha, audit_public_key=key)

    edit_entry(con, 1, change)


def test_a_checkpoint_is_never_signed_over_a_broken_log(
    victim: tuple[Workspace, Layout],
) -> None:
    """A decision after the last signed checkpoint is edited in the file (its entry and its
    row); the next checkpoint (a nightly job, a lead) would sign the edited head, and every
    verify from it (the routine one, beside the reviewers) would start after the edit. The
    store refuses to sign a log that does not verify, naming the break; nothing is written
    (neither the checkpoint file nor the log)."""
    ws, at = victim
    seq = at.decision_seqs[DECISIONS_BEFORE_CHECKPOINT + 3]
    with raw_db(ws) as con:
        flip_decision(con, seq)
    lines = ws.checkpoints_path.read_text(encoding="utf-8")
    with pytest.raises(
        ConflictError, match=rf"refusing to sign a checkpoint: .*seq {seq}: hash-mismatch"
    ):
        operator(ws).checkpoint()
    assert ws.checkpoints_path.read_text(encoding="utf-8") == lines
    report = operator(ws).verify(None, "latest")
    assert report.from_checkpoint == at.checkpoint_seq and report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (seq, "hash-mismatch")
    assert report.events == at.head_seq - at.checkpoint_seq


def test_the_registry_is_held_to_its_events_from_a_checkpoint_too(
    victim: tuple[Workspace, Layout],
) -> None:
    """The champion was registered and approved before the signed checkpoint; its sha256
    swapped in the table afterwards is found by a verify from that checkpoint as well."""
    ws, at = victim
    seq, kind = swap_the_champions_sha256(ws, at)
    report = operator(ws).verify(None, "latest")
    assert report.from_checkpoint == at.checkpoint_seq
    assert report.first_break is not None, report.summary()
    assert (report.first_break.seq, report.first_break.kind) == (seq, kind)


def test_a_replaced_pinned_key_is_caught_by_the_auditors_own_copy(
    victim: tuple[Workspace, Layout],
) -> None:
    """The attacker rebuilds the chain, re-signs the checkpoints and also pins their own
    key in hilt.toml and in the store's record of the config in force (else every open of
    the store refuses the edited hilt.toml): the workspace now vouches for itself. Only a
    key kept elsewhere (the auditor's copy, handed to --public-key) still tells the
    truth."""
    ws, at = victim
    seq = at.decision_seqs[0]
    key = Ed25519PrivateKey.generate()
    forged_key = public_key_text(key.public_key())
    config = ws.config_path.read_text(encoding="utf-8")
    assert at.public_key in config
    forged_config = config.replace(at.public_key, forged_key)
    with raw_db(ws) as con:
        flip_decision(con, seq)
        forge_the_config_in_force(con, forged_config)
        rechain(con, 1)
        assert resign_checkpoints(ws, con, key) == forged_key
    ws.config_path.write_text(forged_config, encoding="utf-8")

    assert_intact(ws, at.head_seq)  # the workspace's own word is worthless now
    assert_broken(ws, at.checkpoint_seq, "checkpoint-signature", public_key=at.public_key)


# ------------------------------------------------------------ the auditor's own copies
# An attacker who can write the whole workspace can truncate the log past its checkpoint
# events and delete the checkpoint file: from the workspace alone that is indistinguishable
# from a young log. The auditor's own copy of the checkpoint file is the anchor.


@pytest.mark.obligation("AI Act 12", "GDPR 5(1)(f)")
def test_truncation_with_the_checkpoint_file_removed_is_caught_by_the_auditors_copy(
    victim: tuple[Workspace, Layout], tmp_path: Path
) -> None:
    ws, at = victim
    auditor_copy = tmp_path / "auditor-checkpoints.jsonl"
    shutil.copy(ws.checkpoints_path, auditor_copy)
    truncate_the_tail(ws, at)
    ws.checkpoints_path.unlink()
    assert verify_api(ws).ok  # the workspace alone cannot tell: this is why copies matter
    result = verify_cli(ws, "--checkpoints", str(auditor_copy))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"BROKEN at seq {at.checkpoint_seq - 2}: truncated" in result.stdout


# ------------------------------------------------------------ the tables themselves
def test_schema_damage_names_the_table_and_the_column(victim: tuple[Workspace, Layout]) -> None:
    ws, at = victim
    drop_a_decision_column(ws, at)
    report = verify_api(ws)
    assert report.first_break is not None
    assert report.first_break.detail.startswith("table decisions: column reason_code is missing")
    # The chain itself is intact and was still checked and counted.
    assert report.events == at.head_seq
    cli = verify_cli(ws)
    assert cli.returncode == 1 and cli.stderr == "", cli.stderr
    summary, incident = cli.stdout.strip().splitlines()
    assert summary == (
        "BROKEN at seq 0: schema: table decisions: column reason_code is missing; "
        "the store's tables were altered"
    )
    # The store's own verify opened an incident for it (issue 14; tests/…/test_incidents.py).
    assert incident.startswith("incident INC-") and "personal_data_breach" in incident


def test_a_table_missing_and_a_column_retyped_are_both_counted(
    victim: tuple[Workspace, Layout],
) -> None:
    ws, at = victim
    drop_the_predictions_table(ws, at)
    retype_a_decision_column(ws, at)
    report = verify_api(ws)
    assert report.first_break is not None
    assert report.first_break.detail == (
        "table decisions: column time_on_item_ms is VARCHAR, not BIGINT "
        "(and 1 more schema difference(s)); the store's tables were altered"
    )


def test_a_query_that_duckdb_refuses_is_a_schema_break_naming_the_check(
    victim: tuple[Workspace, Layout],
) -> None:
    """Without settings (how a copy fetched from a service is verified) there is no schema to
    compare with: the reconciliation query itself fails on the missing column, and verify
    reports that as a break instead of raising."""
    ws, at = victim
    drop_a_decision_column(ws, at)
    with raw_db(ws) as con:
        report = verify_records(con, at.public_key, ws.checkpoints_path, batches=False)
    assert not report.ok and report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (0, "schema")
    detail = report.first_break.detail
    assert detail.startswith("the reconciliation of records with their events failed: ")
    assert "BinderException" in detail and "reason_code" in detail
    assert report.events == at.head_seq


def hilt_checkpoint(ws: Workspace, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "HILT_DEBUG"}
    return hilt_process("audit", "checkpoint", "-w", ws.root, ws=ws, env={**base, **env})


def test_a_duckdb_error_no_code_wrapped_is_one_line_and_exit_3(
    victim: tuple[Workspace, Layout],
) -> None:
    """`hilt audit checkpoint` reads the head outside any transaction; with the log dropped,
    DuckDB's own error reaches the CLI, which prints one line (the trace only on request)."""
    ws, at = victim
    drop_the_audit_log(ws, at)
    quiet = hilt_checkpoint(ws)
    assert quiet.returncode == 3, (quiet.stdout, quiet.stderr)
    assert "Traceback" not in quiet.stderr
    (line,) = quiet.stderr.strip().splitlines()
    assert line.startswith("error: the store failed (CatalogException: ")
    assert "audit_log" in line
    loud = hilt_checkpoint(ws, HILT_DEBUG="1")
    assert loud.returncode != 0 and "Traceback" in loud.stderr
