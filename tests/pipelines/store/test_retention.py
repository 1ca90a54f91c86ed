"""Retention with an injected clock: nothing goes before it is due; what is due goes (data
deleted, keys destroyed, sealed payloads shredded, old log rows purged), and the audit log
still verifies, checkpoints included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.errors import ConfigError
from hilt.pipelines.store import DecisionRequest, Identity, Store, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, TEST_MODEL, predictions_for, stand_in

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
PERIODS = """[retention]
audit_log_days = 200
cases_days = 30
predictions_days = 60
decisions_days = 60
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now = self.now + timedelta(days=days)


def short_config(tmp_path: Path) -> Path:
    text = CONFIG.read_text(encoding="utf-8")
    start = text.index("[retention]")
    end = text.index("[access]")
    path = tmp_path / "short.toml"
    path.write_text(text[:start] + PERIODS + "\n" + text[end:], encoding="utf-8")
    return path


def as_user(ws: Workspace, name: str, clock: Clock) -> Store:
    who = Identity(operator=True) if name == "operator" else Identity(name=name)
    return open_store_as(ws, who, clock=clock)


@pytest.mark.obligation("GDPR 5(1)(e)", "AI Act 19")
def test_retention_removes_only_what_is_due_and_the_log_still_verifies(
    tmp_path: Path, cases_frame: pl.DataFrame
) -> None:
    clock = Clock()
    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, short_config(tmp_path), clock=clock)
    op = as_user(ws, "operator", clock)
    old = cases_frame.head(40)
    op.ingest_cases(old)
    stand_in(ws, clock=clock)
    op.add_predictions(TEST_MODEL.model, predictions_for(old), TEST_MODEL.sha256)
    alice = as_user(ws, "alice", clock)
    clock.advance(1)
    alice.lease_case("APP-000001")
    decided = alice.record_decision(
        DecisionRequest(case_id="APP-000001", action="flag", comment="call back tomorrow")
    )
    dana = as_user(ws, "dana", clock)
    first_snapshot = dana.snapshot()
    op.checkpoint()
    clock.advance(20)  # day 21: new cases arrive
    new = cases_frame.slice(40, 20)
    op.ingest_cases(new)
    op.add_predictions(TEST_MODEL.model, predictions_for(new), TEST_MODEL.sha256)

    # Day 29: nothing is due yet, and a run with nothing due writes nothing.
    clock.advance(8)
    before = (op.counts(), op.audit_head())
    report = op.retention_apply()
    assert report.seq is None
    assert (op.counts(), op.audit_head()) == before

    # Day 32: the first 40 cases' data is due (30 days); their subjects are forgotten.
    clock.advance(3)
    report = op.retention_apply()
    assert report.seq is not None
    assert (report.cases_removed, report.subjects_removed) == (40, 40)
    assert report.predictions_purged == 0 and report.decisions_purged == 0
    counts = op.counts()
    assert counts["case_features"] == counts["case_personal"] == 20
    assert counts["identity"] == 20 and counts["removed_subjects"] == 40
    assert dana.get_case("APP-000001").data_removed
    # The comment was sealed with a key that is gone: shredded in the log too.
    [d] = dana.get_case("APP-000001").decisions
    assert d.decision_id == decided.decision_id and d.comment is None and d.comment_sealed
    # The snapshots that held them (the champion's training snapshot, and dana's) are
    # regenerated without them (nothing left here: gone).
    assert first_snapshot.sha256 in {r.sha256 for r in report.snapshots}
    assert {r.rows_removed for r in report.snapshots} == {40}
    assert not Path(first_snapshot.path).exists()
    assert as_user(ws, "alice", clock).queue_status().waiting == 20
    assert as_user(ws, "otto", clock).verify().ok
    assert op.retention_apply().seq is None  # idempotent

    # Day 62: predictions and decision rows older than 60 days go; the events stay.
    clock.advance(30)
    report = op.retention_apply()
    assert report.predictions_purged == 40 and report.decisions_purged == 1
    assert op.counts()["decisions"] == 0
    otto = as_user(ws, "otto", clock)
    assert any(e.action == "decision.record" for e in otto.audit_events(limit=10_000))
    assert otto.verify().ok

    # Day 202: the oldest audit rows (older than 200 days) are purged from the head of the
    # chain; the rest verifies from the recorded anchor, the old checkpoint included.
    clock.advance(140)
    report = op.retention_apply()
    assert report.audit_purged_through is not None
    events = otto.audit_events(limit=10_000)
    assert events[0].seq == report.audit_purged_through + 1
    assert all(e.ts >= "2031-03-22" for e in events)  # day 21 and later only
    op.checkpoint()
    verdict = otto.verify()
    assert verdict.ok, verdict.summary()


@pytest.mark.obligation("AI Act 19", "AI Act 26(6)")
def test_a_log_kept_less_than_six_months_is_a_config_error(tmp_path: Path) -> None:
    text = short_config(tmp_path).read_text().replace("audit_log_days = 200", "audit_log_days = 90")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match="at least 183"):
        create_workspace(Workspace.at(tmp_path / "w2"), bad)
    text = short_config(tmp_path).read_text().replace("decisions_days = 60", "decisions_days = 20")
    bad.write_text(text)
    with pytest.raises(ConfigError, match="decisions_days must be at least cases_days"):
        create_workspace(Workspace.at(tmp_path / "w3"), bad)
