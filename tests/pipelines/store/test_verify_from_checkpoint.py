"""Verify from a signed checkpoint (`hilt audit verify --from`), on real DuckDB files.

The workspace is the tamper matrix's (``test_audit_tamper``: 20 decisions, a signed
checkpoint, 10 more decisions). From the checkpoint, verify checks that the stored hash at
its seq is the signed one, then the chain, the records and the authority events after it:
a tamper after the checkpoint is named at its seq and kind, as by the full walk; a tamper
before it is (by design) not seen, only the full walk finds it; a checkpoint whose
signature fails is refused, never replaced by an older one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import duckdb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hilt.pipelines.errors import InputError
from hilt.pipelines.store.audit import (
    after_checkpoint,
    batch_digest,
    config_check,
    reconcile,
    verify,
)
from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit.authority import first_break as authority_break
from hilt.pipelines.store.audit.chain import AuditEntry, utc_timestamp
from hilt.pipelines.store.audit.checkpoints import append_checkpoint, sign_checkpoint
from hilt.pipelines.store.audit.gold_digest import first_mismatch as gold_mismatch
from hilt.pipelines.store.audit_records import VerifyReport
from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import append_event, raw_db
from tests.conftest import operator
from tests.pipelines.store.test_audit_tamper import (
    DECISIONS_BEFORE_CHECKPOINT,
    Expected,
    Layout,
    change_a_payload,
    delete_a_decision_row,
    entry_ts,
    flip_decision,
    forge_a_promotion_by_its_author,
    forge_a_purge_dated_in_the_future,
    forge_a_run_whose_notebook_is_the_store,
    rechain_everything,
    template,
    verify_cli,
    victim,
)

__all__ = ["template", "victim"]  # the tamper matrix's fixtures, used here


def verify_from(ws: Workspace, start_from: str) -> VerifyReport:
    return operator(ws).verify(None, start_from)


# ---------------------------------------------------------------------- tampering after it


def change_a_payload_after(ws: Workspace, at: Layout) -> Expected:
    """A decision after the checkpoint flipped in its entry and row, the hash left alone."""
    seq = at.decision_seqs[DECISIONS_BEFORE_CHECKPOINT + 3]
    with raw_db(ws) as con:
        flip_decision(con, seq)
    return seq, "hash-mismatch"


def delete_a_row_after(ws: Workspace, at: Layout) -> Expected:
    seq = at.decision_seqs[DECISIONS_BEFORE_CHECKPOINT + 4]
    with raw_db(ws) as con:
        con.execute("DELETE FROM audit_log WHERE seq = ?", [seq])
        con.execute("DELETE FROM decisions WHERE seq = ?", [seq])
    return seq, "seq-gap"


def break_the_first_link_after(ws: Workspace, at: Layout) -> Expected:
    """The row right after the checkpoint no longer links to the signed head hash."""
    seq = at.checkpoint_seq + 1
    with raw_db(ws) as con:
        con.execute("UPDATE audit_log SET prev_hash = ? WHERE seq = ?", ["f" * 64, seq])
    return seq, "link-broken"


def edit_a_decision_row_after(ws: Workspace, at: Layout) -> Expected:
    seq = at.decision_seqs[DECISIONS_BEFORE_CHECKPOINT + 6]
    with raw_db(ws) as con:
        con.execute(
            "UPDATE decisions SET final_label = CASE final_label WHEN '1' THEN '0' ELSE '1' END"
            " WHERE seq = ?",
            [seq],
        )
    return seq, "record-mismatch"


AFTER = [
    pytest.param(change_a_payload_after, id="payload-after"),
    pytest.param(delete_a_row_after, id="row-deleted-after"),
    pytest.param(break_the_first_link_after, id="first-link-after"),
    pytest.param(edit_a_decision_row_after, id="decision-row-after"),
    pytest.param(delete_a_decision_row, id="decision-row-deleted-after"),
    pytest.param(forge_a_purge_dated_in_the_future, id="forged-purge-future"),
    pytest.param(forge_a_run_whose_notebook_is_the_store, id="forged-notebook-path"),
    pytest.param(forge_a_promotion_by_its_author, id="forged-self-promotion"),
    # The whole chain rebuilt: the stored hash at the checkpoint is no longer the signed one.
    pytest.param(rechain_everything, id="rechain-all"),
]


def test_an_untouched_log_verifies_from_its_checkpoint(victim: tuple[Workspace, Layout]) -> None:
    ws, at = victim
    for which in ("latest", str(at.checkpoint_seq)):
        report = verify_from(ws, which)
        assert report.ok, report.summary()
        assert report.from_checkpoint == at.checkpoint_seq
        assert report.events == at.head_seq - at.checkpoint_seq
        cli = verify_cli(ws, "--from", which)
        assert cli.returncode == 0, (cli.stdout, cli.stderr)
        assert cli.stdout.strip() == (
            f"OK {at.head_seq - at.checkpoint_seq} events after checkpoint seq "
            f"{at.checkpoint_seq} (verified from that signed checkpoint; the log up to it "
            "was not re-read)"
        )
    # The full walk stays the default.
    assert verify_cli(ws).stdout.strip() == f"OK {at.head_seq} events"


@pytest.mark.parametrize("attack", AFTER)
def test_from_the_checkpoint_a_tamper_after_it_is_named(
    attack: Callable[[Workspace, Layout], Expected], victim: tuple[Workspace, Layout]
) -> None:
    ws, at = victim
    seq, kind = attack(ws, at)
    assert seq >= at.checkpoint_seq
    full = operator(ws).verify()
    assert full.first_break is not None
    assert (full.first_break.seq, full.first_break.kind) == (seq, kind), full.summary()
    report = verify_from(ws, "latest")
    assert not report.ok
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (seq, kind), report.summary()
    assert report.from_checkpoint == at.checkpoint_seq
    cli = verify_cli(ws, "--from", str(at.checkpoint_seq))
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert f"BROKEN at seq {seq}: {kind}:" in cli.stdout, cli.stdout
    assert f"(verifying from checkpoint seq {at.checkpoint_seq})" in cli.stdout, cli.stdout


def test_a_tamper_before_the_checkpoint_is_found_by_the_full_walk_only(
    victim: tuple[Workspace, Layout],
) -> None:
    """By design: the checkpoint vouches for the log up to it, which is not re-read."""
    ws, at = victim
    seq, kind = change_a_payload(ws, at)
    assert seq < at.checkpoint_seq
    report = verify_from(ws, "latest")
    assert report.ok, report.summary()
    assert report.from_checkpoint == at.checkpoint_seq
    full = verify_cli(ws)
    assert full.returncode == 1
    assert f"BROKEN at seq {seq}: {kind}:" in full.stdout, full.stdout


def test_a_checkpoint_whose_signature_fails_is_refused(victim: tuple[Workspace, Layout]) -> None:
    ws, at = victim
    # A checkpoint of the head, signed by a key that is not the pinned one.
    with raw_db(ws) as con:
        (head_hash,) = con.execute(
            "SELECT hash FROM audit_log WHERE seq = ?", [at.head_seq]
        ).fetchall()[0]
    forged = sign_checkpoint(
        Ed25519PrivateKey.generate(), at.head_seq, str(head_hash), "2030-01-01T00:00:00.000000Z"
    )
    append_checkpoint(ws.checkpoints_path, forged)
    # Named: refused (exit 1, as a log that does not verify), not replaced by the older one.
    cli = verify_cli(ws, "--from", str(at.head_seq))
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert f"BROKEN at seq {at.head_seq}: checkpoint-signature:" in cli.stdout, cli.stdout
    assert "refusing to verify from it" in cli.stdout
    assert "Traceback" not in cli.stderr
    # latest: the newest checkpoint that checks is the start; the forged one is still a break.
    report = verify_from(ws, "latest")
    assert report.from_checkpoint == at.checkpoint_seq
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (
        at.head_seq,
        "checkpoint-signature",
    )


def test_from_a_seq_that_is_no_checkpoint_is_a_user_error(
    victim: tuple[Workspace, Layout],
) -> None:
    ws, _ = victim
    with pytest.raises(InputError, match="no checkpoint of seq 3"):
        verify_from(ws, "3")
    cli = verify_cli(ws, "--from", "yesterday")
    assert cli.returncode == 2, (cli.stdout, cli.stderr)
    assert "--from takes 'latest' or the seq of a checkpoint" in cli.stderr
    assert "Traceback" not in cli.stderr


# ---------------------------------------------------------------------- the events read by kind


def _kinds_after(con: duckdb.DuckDBPyConnection, since: int) -> dict[int, str]:
    rows = con.execute(
        "SELECT seq, entry FROM audit_log WHERE seq > ? ORDER BY seq", [since]
    ).fetchall()
    return {int(seq): str(json.loads(entry)["action"]) for seq, entry in rows}


#: How ``kind_source`` offers the events: by an IN list, by an array, or (past its limit)
#: every row after the checkpoint.
SOURCES = {
    "in-list": {},
    "array": {"_IN_LIST_MAX": 0},
    "every-row": {"KIND_SOURCE_LIMIT": 0},
}


def test_after_a_checkpoint_the_checks_by_kind_read_every_event_but_the_decisions(
    victim: tuple[Workspace, Layout], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks that pick events by kind read, after a checkpoint, only the events that
    are not a decision or its lease (``after_checkpoint.kind_source``). Forged events of three
    of their kinds after the checkpoint, among the decisions: each check names its own, and
    verify the first, however the events are offered (an IN list, an array, every row)."""
    ws, at = victim
    forged: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("lena", "lead", "model.promoted", "m/v2", {"approver": "lena", "author": "lena"}),
        ("lena", "lead", "gold.added", "gold", {"digest": "0" * 64, "rows": 1}),
        ("dana", "admin", "config.applied", "hilt.toml", {"version": 99, "new_sha256": "0" * 64}),
    ]
    promoted, gold, config = range(at.head_seq + 1, at.head_seq + 1 + len(forged))
    with raw_db(ws) as con:
        ts = entry_ts(con, at.head_seq)
        for i, (actor, role, action, obj, payload) in enumerate(forged, start=1):
            moment = utc_timestamp(ts + timedelta(seconds=i))
            entry = AuditEntry(at.head_seq + i, moment, actor, role, action, "x", obj, payload)
            append_event(con, entry)
        kinds = _kinds_after(con, at.checkpoint_seq)
        others = {s for s, k in kinds.items() if k not in after_checkpoint.PER_DECISION_KINDS}
        assert {promoted, gold, config} <= others
        assert len(others) < len(kinds)  # the decisions and their leases are left out
        for name, limits in SOURCES.items():
            with monkeypatch.context() as m:
                for attr, value in limits.items():
                    m.setattr(after_checkpoint, attr, value)
                source = after_checkpoint.kind_source(con, at.checkpoint_seq)
                read = {int(r[0]) for r in con.execute(f"SELECT seq FROM {source}").fetchall()}
                if name == "every-row":
                    assert read == set(kinds), name
                else:
                    assert read == others, name
                four_eyes = authority_break(con, since=at.checkpoint_seq, events=source)
                assert four_eyes is not None and four_eyes.seq == promoted, (name, four_eyes)
                assert four_eyes.kind == "four-eyes", (name, four_eyes)
                bad_gold = gold_mismatch(con, at.checkpoint_seq, source)
                assert bad_gold is not None and bad_gold.seq == gold, (name, bad_gold)
                bad_config = config_check.first_mismatch(con, at.checkpoint_seq, source)
                assert bad_config is not None and bad_config.seq == config, (name, bad_config)
    for name, limits in SOURCES.items():
        with monkeypatch.context() as m:
            for attr, value in limits.items():
                m.setattr(after_checkpoint, attr, value)
            report = verify_from(ws, "latest")
        assert report.first_break is not None, name
        assert (report.first_break.seq, report.first_break.kind) == (promoted, "four-eyes"), (
            name,
            report.summary(),
        )
        assert report.from_checkpoint == at.checkpoint_seq


def test_the_checks_by_kind_read_the_events_appended_after_the_kinds_were_read(
    victim: tuple[Workspace, Layout],
) -> None:
    """Beside the service, a writer appends while verify runs, and each check reads in its
    own snapshot: an event appended after the kinds were read is read by the checks too (so
    no check sees a batch's rows without its event, or misses a forged one). With only
    decisions and leases after the seq, the source holds nothing but what comes later."""
    ws, at = victim
    with raw_db(ws) as con:
        last_other = max(
            s
            for s, k in _kinds_after(con, 0).items()
            if k not in after_checkpoint.PER_DECISION_KINDS
        )
        assert last_other < at.head_seq
        quiet = after_checkpoint.kind_source(con, last_other)
        assert con.execute(f"SELECT count(*) FROM {quiet}").fetchall() == [(0,)]
        source = after_checkpoint.kind_source(con, at.checkpoint_seq)
        seq = at.head_seq + 1
        ts = utc_timestamp(entry_ts(con, at.head_seq) + timedelta(seconds=1))
        payload = {"approver": "lena", "author": "lena"}
        append_event(con, AuditEntry(seq, ts, "lena", "lead", "model.promoted", "x", "m", payload))
        for read in (source, quiet):
            assert seq in {int(r[0]) for r in con.execute(f"SELECT seq FROM {read}").fetchall()}
        found = authority_break(con, since=at.checkpoint_seq, events=source)
        assert found is not None and (found.seq, found.kind) == (seq, "four-eyes"), found
        assert after_checkpoint.kind_source(con, 0) == "audit_log"


# ---------------------------------------------------------------- checks with nothing to judge


def verify_records_from(
    con: duckdb.DuckDBPyConnection, ws: Workspace, *, skip_idle: bool = True
) -> VerifyReport:
    """Verify from the latest checkpoint on ``con``, the checks one after another (each in
    the order they are submitted: the read of what came after the checkpoint first)."""
    settings = ws.settings()
    return verify.verify_records(
        con,
        settings.audit.public_key,
        ws.checkpoints_path,
        batches=True,
        settings=settings,
        parallel=False,
        start_from="latest",
        skip_idle=skip_idle,
    )


#: The checks by kind, by where verify finds them (module, attribute).
CHECKS_BY_KIND = [
    (verify, "authority_break"),
    (verify, "gold_mismatch"),
    (verify, "purge_anchor"),
    (verify, "missing_from_file"),
    (config_check, "first_mismatch"),
    (reconcile, "first_batch_mismatch"),
    (reconcile, "decisions_purged_through"),
    (batch_digest, "first_mismatch"),
    (batch_digest, "restatements"),
]


def _spy_on_checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls: dict[str, int] = {}
    for module, name in CHECKS_BY_KIND:
        real = getattr(module, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def test_the_kinds_are_picked_by_plain_prefixes() -> None:
    """``After.idle`` compares the prefixes as text, the checks' SQL with LIKE: the two agree
    only for a prefix without LIKE's wildcards (or a quote or an escape)."""
    assert audit_chain.picks([audit_chain.kind_prefix("gold.added")]) == (
        """(entry LIKE '{"action":"gold.added",%')"""
    )
    for bad in ("", '{"action":"a_b",', '{"action":"a%",', "'", "\\"):
        with pytest.raises(ValueError, match="plain prefix"):
            audit_chain.picks([bad])


def test_after_a_checkpoint_a_check_with_nothing_to_judge_is_not_run(
    victim: tuple[Workspace, Layout], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the checkpoint the log holds decisions, their leases and the checkpoint's own
    event: no check by kind has an event or a row to judge but the check of the
    checkpoints in the file, so no other runs, and the report is the one every check gives."""
    ws, at = victim
    calls = _spy_on_checks(monkeypatch)
    with raw_db(ws) as con:
        quick = verify_records_from(con, ws)
        assert calls == {"missing_from_file": 1}, calls
        calls.clear()
        every = verify_records_from(con, ws, skip_idle=False)
    assert {name for _, name in CHECKS_BY_KIND} == set(calls), calls
    assert quick == every
    assert quick.ok and quick.events == at.head_seq - at.checkpoint_seq, quick.summary()


#: Rows of each table that the checks by kind hold to their events, claiming that the event
#: at ``$seq`` wrote them (it did not), and how to take them out again.
FORGED_ROWS = {
    "gold_cases": "INSERT INTO gold_cases VALUES ('FORGED-1', 'm/v1', 'lena', now(), $seq)",
    "cases": "INSERT INTO cases SELECT 'FORGED-1', subject_ref, $seq, created_at, NULL"
    " FROM cases LIMIT 1",
    "predictions": "INSERT INTO predictions SELECT prediction_id + 1000000, case_id,"
    " model_version, score, label, explanation, $seq, created_at FROM predictions LIMIT 1",
    "shadow_predictions": "INSERT INTO shadow_predictions SELECT prediction_id, case_id,"
    " model_version, score, label, explanation, $seq, created_at FROM predictions LIMIT 1",
    "config_versions": "INSERT INTO config_versions SELECT version + 100, sha256, text,"
    " base_version, 'superseded', diff, applied_by, applied_at, $seq, decided_by,"
    " decided_at, decided_seq FROM config_versions LIMIT 1",
}


def test_rows_forged_after_the_checkpoint_without_their_event_are_named(
    victim: tuple[Workspace, Layout],
) -> None:
    """A row slipped into a table that the checks by kind hold to their events, claiming a
    decision's seq after the checkpoint: no event of that kind came after it, so the read
    of what came after it must see the row for the check to run and name it. Each table in
    turn (its row taken out again before the next)."""
    ws, at = victim
    seq = at.decision_seqs[DECISIONS_BEFORE_CHECKPOINT + 2]
    assert set(FORGED_ROWS) == set(verify.ROW_TABLES)
    with raw_db(ws) as con:
        for table, column in verify.ROW_TABLES.items():
            con.execute(FORGED_ROWS[table], {"seq": seq})
            report = verify_records_from(con, ws)
            assert report.first_break is not None, table
            found = (report.first_break.seq, report.first_break.kind)
            assert found == (seq, "record-mismatch"), (table, report.summary())
            con.execute(f"DELETE FROM {table} WHERE {column} = ?", [seq])
            assert verify_records_from(con, ws).ok, table
        con.execute(FORGED_ROWS["gold_cases"], {"seq": seq})
    report = verify_from(ws, "latest")
    assert report.first_break is not None and report.first_break.seq == seq, report.summary()


@pytest.mark.parametrize(
    ("action", "rerun"), [("model.promoted", True), ("case.leased", False)], ids=["forged", "lease"]
)
def test_an_event_appended_after_the_read_of_what_came_after_the_checkpoint_is_judged(
    victim: tuple[Workspace, Layout], monkeypatch: pytest.MonkeyPatch, action: str, rerun: bool
) -> None:
    """Beside the service, a writer appends while verify runs. Right after verify read what
    came after the checkpoint (and found the authority check idle), a self-promotion is
    appended, and the chain is checked through it: verify reads what came after that read
    and runs every check again, which names it. A lease appended instead gives no check by
    kind anything to judge: nothing runs again."""
    ws, at = victim
    real_read = after_checkpoint.read
    seq = at.head_seq + 1
    runs: list[bool] = []

    def read_then_append(c: duckdb.DuckDBPyConnection, since: int, *args: Any) -> Any:
        seen = real_read(c, since, *args)
        if since == at.checkpoint_seq and not runs:
            runs.append(True)
            ts = utc_timestamp(entry_ts(c, at.head_seq) + timedelta(seconds=1))
            payload = {"approver": "lena", "author": "lena"}
            append_event(c, AuditEntry(seq, ts, "lena", "lead", action, "x", "m", payload))
        return seen

    real_verify = verify.verify_records
    again: list[bool] = []

    def verify_records(*args: Any, **kwargs: Any) -> VerifyReport:
        again.append(kwargs.get("skip_idle", True))
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(after_checkpoint, "read", read_then_append)
    monkeypatch.setattr(verify, "verify_records", verify_records)
    with raw_db(ws) as con:
        report = verify_records_from(con, ws)
    assert runs == [True]
    assert again == ([True, False] if rerun else [True]), again
    if rerun:
        assert report.first_break is not None, report.summary()
        assert (report.first_break.seq, report.first_break.kind) == (seq, "four-eyes")
    else:
        assert report.ok and report.events == seq - at.checkpoint_seq, report.summary()
