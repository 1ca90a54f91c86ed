"""`hilt check go-live`: the store decides whether the deployment may go live, and names
each missing requirement (no champion, an assessment missing, expired or not yet done, no
recent checkpoint signed by the pinned key, monitoring never run or too old, a serious
incident open).

The monitoring runs and incidents the check reads are written by the monitoring and
incident operations (issue 14, other branches). Until those are merged, these tests append
``monitoring.run`` and ``incident.*`` events the way those operations do: by the store's
own ``Unit.append_audit`` in a transaction, not through a client (a client cannot write
them: ``test_a_client_cannot_fake_a_monitoring_run``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hilt.pipelines.errors import PermissionDeniedError
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.audit.checkpoints import (
    append_checkpoint,
    load_signing_key,
    sign_checkpoint,
)
from hilt.pipelines.store.core import StoreCore
from hilt.pipelines.store.governance_records import GoLiveReport
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.ops.governance import add_months
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace
from tests.config_helpers import edit_config
from tests.conftest import StoreFactory, copy_of
from tests.prewarmed import run as prewarmed_hilt

#: The store's clock in these tests: within the review period of the demo's DPIA and FRIA
#: (data/hilt.toml: 2026-11-02 and 2026-11-16, review_months = 12).
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


#: Who the stand-ins act as (an admin at the file).
OPERATOR = User(name="os:test", roles=["admin"])


def append_as_store(
    ws: Workspace,
    action: str,
    object_type: str,
    object_id: str,
    payload: dict[str, Any],
    when: datetime,
    actor: User = OPERATOR,
) -> None:
    """Append an event as a store operation does (its own unit, one transaction). Stands in
    for the monitoring and incident operations of the other issue-14 branches."""
    con = connect(ws)
    keys = ws.key_ring()
    try:
        unit = StoreCore(con, ws.settings(), ws, actor, keys, at(when)).unit(actor.roles[0])
        with unit.transaction():
            unit.append_audit(action, object_type, object_id, payload, when)
    finally:
        keys.close()
        con.close()


def monitoring_run(ws: Workspace, when: datetime, worst: str = "none") -> None:
    append_as_store(
        ws,
        "monitoring.run",
        "monitoring",
        f"run-{when:%Y%m%d%H%M%S}",
        {"window_days": 30, "cases": 200, "breaches": [], "worst": worst},
        when,
    )


def incident(ws: Workspace, action: str, incident_id: str, when: datetime, **payload: Any) -> None:
    # A closing by a lead who did not open it, as the store's operation requires (verify
    # holds the log to it, and a checkpoint is signed only over a log that verifies).
    closer = User(name="max", roles=["lead"]) if action == "incident.closed" else OPERATOR
    append_as_store(ws, action, "incident", incident_id, payload, when, closer)


def checkpoint(ws: Workspace, when: datetime) -> None:
    open_store_as(ws, Identity(operator=True), clock=at(when)).checkpoint()


def check(ws: Workspace, when: datetime = NOW, who: Identity | None = None) -> GoLiveReport:
    store = open_store_as(ws, who or Identity(name="otto"), clock=at(when))
    return store.go_live_check()


def apply_config(ws: Workspace, old: str, new: str) -> None:
    """Edit the workspace's hilt.toml and put the edit in force (an admin's `config apply`)."""
    edit_config(ws, old, new)
    applied = open_store_as(ws, Identity(operator=True), for_config=True).config_apply()
    assert applied.outcome == "applied", applied


def ready(ws: Workspace) -> Workspace:
    """``ws`` (with its champion) made ready: a fresh signed checkpoint and monitoring run."""
    monitoring_run(ws, NOW - timedelta(days=1))
    checkpoint(ws, NOW - timedelta(hours=1))
    return ws


def missing(report: GoLiveReport) -> list[str]:
    return [item.check for item in report.missing]


@pytest.mark.obligation("AI Act 27", "GDPR 35")
def test_the_demo_config_goes_live_when_everything_is_present(
    loaded_workspace: Workspace,
) -> None:
    report = check(ready(loaded_workspace))
    assert report.ready, report.missing
    assert [i.check for i in report.items] == [
        "champion",
        "intended-purpose",
        "risk-owner",
        "dpia",
        "fria",
        "checkpoint",
        "monitoring",
        "incidents",
    ]
    details = {i.check: i.detail for i in report.items}
    assert "test-model/v1" in details["champion"]
    assert "DPIA-2026-001" in details["dpia"] and "2027-11-02" in details["dpia"]
    assert "FRIA-2026-001" in details["fria"]
    assert report.checked_at == utc_timestamp(NOW)


# Each case: what is taken away from a ready workspace, and the one check that then fails.
def _no_champion(ws: Workspace, template: Workspace) -> Workspace:
    return ready(template)


def _edit(old: str, new: str) -> Callable[[Workspace, Workspace], Workspace]:
    def take(ws: Workspace, template: Workspace) -> Workspace:
        apply_config(ws, old, new)
        return ready(ws)

    return take


def _old_checkpoint(ws: Workspace, template: Workspace) -> Workspace:
    monitoring_run(ws, NOW - timedelta(days=1))
    checkpoint(ws, NOW - timedelta(days=8))
    return ws


def _no_checkpoint(ws: Workspace, template: Workspace) -> Workspace:
    monitoring_run(ws, NOW - timedelta(days=1))
    return ws


def _forged_checkpoint(ws: Workspace, template: Workspace) -> Workspace:
    """A checkpoint of the real head, signed with a key that is not the pinned one."""
    monitoring_run(ws, NOW - timedelta(days=1))
    head = open_store_as(ws, Identity(operator=True)).audit_head()
    forged = sign_checkpoint(Ed25519PrivateKey.generate(), head.seq, head.hash, utc_timestamp(NOW))
    append_checkpoint(ws.checkpoints_path, forged)
    return ws


def _checkpoint_of_another_log(ws: Workspace, template: Workspace) -> Workspace:
    """Signed with the workspace's own key, but not a head this log ever had (a rebuilt
    chain's): the store compares the hash at its seq."""
    monitoring_run(ws, NOW - timedelta(days=1))
    head = open_store_as(ws, Identity(operator=True)).audit_head()
    key = load_signing_key(ws.signing_key_path)
    append_checkpoint(
        ws.checkpoints_path, sign_checkpoint(key, head.seq, "0" * 64, utc_timestamp(NOW))
    )
    return ws


def _forged_over_an_old_one(ws: Workspace, template: Workspace) -> Workspace:
    """An old real checkpoint, and a forged recent one: the old one counts (too old)."""
    _old_checkpoint(ws, template)
    return _forged_checkpoint(ws, template)


def _never_monitored(ws: Workspace, template: Workspace) -> Workspace:
    checkpoint(ws, NOW - timedelta(hours=1))
    return ws


def _old_monitoring(ws: Workspace, template: Workspace) -> Workspace:
    monitoring_run(ws, NOW - timedelta(days=32))
    checkpoint(ws, NOW - timedelta(hours=1))
    return ws


def _serious_incident_open(ws: Workspace, template: Workspace) -> Workspace:
    incident(ws, "incident.opened", "inc-1", NOW - timedelta(days=2), kind="serious", serious=True)
    # Closing another incident, or updating this one, does not close it.
    incident(ws, "incident.opened", "inc-2", NOW - timedelta(days=2), serious=True)
    incident(ws, "incident.closed", "inc-2", NOW - timedelta(days=1))
    incident(ws, "incident.updated", "inc-1", NOW - timedelta(days=1), note_sha256="0" * 64)
    return ready(ws)


def _incident_made_serious(ws: Workspace, template: Workspace) -> Workspace:
    incident(ws, "incident.opened", "inc-3", NOW - timedelta(days=2), serious=False)
    incident(ws, "incident.updated", "inc-3", NOW - timedelta(days=1), serious=True)
    return ready(ws)


PURPOSE = (
    'purpose = """Support credit officers in assessing the credit risk of loan applicants. \\\n'
    "Every model prediction is reviewed by a person before it takes effect. \\\n"
    'High-risk use under EU AI Act Annex III 5(b)."""'
)
DPIA = (
    'dpia_reference = "DPIA-2026-001"        # GDPR Art. 35 data-protection impact assessment\n'
    "dpia_date = 2026-11-02\n"
)
FRIA = (
    'fria_reference = "FRIA-2026-001"        # EU AI Act Art. 27 fundamental-rights impact '
    "assessment\nfria_date = 2026-11-16\n"
)

#: name → (what is taken away, the one check that then fails, a word of its detail)
MISSING: dict[str, tuple[Callable[[Workspace, Workspace], Workspace], str, str]] = {
    "no champion": (_no_champion, "champion", "no champion"),
    "no intended purpose": (_edit(PURPOSE, 'purpose = ""'), "intended-purpose", "purpose"),
    "no risk owner": (
        _edit('risk_owner = "Head of Credit Risk"', 'risk_owner = ""'),
        "risk-owner",
        "risk_owner",
    ),
    "no DPIA": (_edit(DPIA, ""), "dpia", "no DPIA"),
    "DPIA expired": (
        _edit("dpia_date = 2026-11-02", "dpia_date = 2025-06-30"),
        "dpia",
        "expired on 2026-06-30",
    ),
    "DPIA not yet done": (
        _edit("dpia_date = 2026-11-02", "dpia_date = 2026-12-24"),
        "dpia",
        "in the future",
    ),
    "no FRIA": (_edit(FRIA, ""), "fria", "no FRIA"),
    "FRIA without a date": (_edit("fria_date = 2026-11-16\n", ""), "fria", "has no date"),
    # The last day of its review period is the day it expires.
    "FRIA expires today": (
        _edit("fria_date = 2026-11-16", "fria_date = 2025-12-01"),
        "fria",
        "expired on 2026-12-01",
    ),
    "no checkpoint": (_no_checkpoint, "checkpoint", "no checkpoint"),
    "checkpoint too old": (_old_checkpoint, "checkpoint", "days old"),
    "checkpoint signed by another key": (_forged_checkpoint, "checkpoint", "pinned key"),
    "checkpoint of another log": (_checkpoint_of_another_log, "checkpoint", "of this audit log"),
    "forged checkpoint over an old one": (_forged_over_an_old_one, "checkpoint", "8.0 days old"),
    "monitoring never run": (_never_monitored, "monitoring", "never run"),
    "monitoring too old": (_old_monitoring, "monitoring", "days old"),
    "serious incident open": (_serious_incident_open, "incidents", "inc-1"),
    "incident made serious later": (_incident_made_serious, "incidents", "inc-3"),
}


@pytest.mark.obligation("AI Act 27", "GDPR 35")
@pytest.mark.parametrize("case", list(MISSING), ids=list(MISSING))
def test_go_live_fails_on_each_missing_item(
    case: str, loaded_workspace: Workspace, empty_template: Workspace, tmp_path: Path
) -> None:
    take_away, failing, word = MISSING[case]
    empty = copy_of(empty_template, tmp_path / "empty")
    report = check(take_away(loaded_workspace, empty))
    assert not report.ready
    assert missing(report) == [failing], report.items
    (item,) = report.missing
    assert word in item.detail, item.detail


def test_what_does_not_block_going_live(loaded_workspace: Workspace) -> None:
    ws = loaded_workspace
    # A serious incident that was closed, a minor one still open, a monitoring run that
    # found a breach (its breaches are incidents of their own), a checkpoint as old as allowed.
    incident(ws, "incident.opened", "inc-4", NOW - timedelta(days=5), serious=True)
    incident(ws, "incident.closed", "inc-4", NOW - timedelta(days=3))
    incident(ws, "incident.opened", "inc-5", NOW - timedelta(days=2), serious=False)
    monitoring_run(ws, NOW - timedelta(days=31), worst="warning")
    checkpoint(ws, NOW - timedelta(days=7))
    report = check(ws)
    assert report.ready, report.missing
    assert "worst: warning" in {i.check: i.detail for i in report.items}["monitoring"]
    # A serious incident opened again after it was closed blocks again.
    incident(ws, "incident.opened", "inc-4", NOW - timedelta(hours=2), serious=True)
    assert missing(check(ws)) == ["incidents"]


def test_a_client_cannot_fake_a_monitoring_run(loaded_workspace: Workspace) -> None:
    ws = loaded_workspace
    checkpoint(ws, NOW - timedelta(hours=1))
    dana = open_store_as(ws, Identity(name="dana"), clock=at(NOW))
    for action in ("monitoring.run", "incident.closed"):
        with pytest.raises(PermissionDeniedError, match="written only by the store"):
            dana.record_event(action, "monitoring", "fake", {"worst": "none"})
    assert missing(check(ws)) == ["monitoring"]


def test_a_reviewer_may_not_run_the_check_and_it_writes_nothing(
    loaded_workspace: Workspace,
) -> None:
    ws = ready(loaded_workspace)
    before = open_store_as(ws, Identity(operator=True)).audit_head()
    with pytest.raises(PermissionDeniedError, match="check go-live"):
        check(ws, who=Identity(name="alice"))
    for who in ("otto", "lena", "pia", "dana"):
        assert check(ws, who=Identity(name=who)).ready
    assert open_store_as(ws, Identity(operator=True)).audit_head() == before


def test_the_review_period_is_counted_in_calendar_months() -> None:
    assert add_months(date(2026, 11, 2), 12) == date(2027, 11, 2)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert add_months(date(2026, 6, 30), 18) == date(2027, 12, 30)


def hilt(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` in a process of its own, forked from one that has imported hilt once
    (tests/prewarmed.py): its exit code and output as a shell sees them."""
    return prewarmed_hilt(*args, timeout_s=120)


def test_hilt_check_go_live_prints_what_is_missing_and_exits_6(workspace: Workspace) -> None:
    result = hilt("check", "go-live", "-w", workspace.root)
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("MISSING") and "champion" in line for line in lines)
    assert any(line.startswith("MISSING") and "never run" in line for line in lines)
    assert any(line.startswith("ok") and "risk-owner" in line for line in lines)
    assert lines[-1].startswith("not ready to go live:")


def test_the_check_is_the_stores_in_either_mode(store_as: StoreFactory) -> None:
    """Through a service too: the same items, the same refusal. (A service keeps its own
    clock, so only what does not depend on the day is compared.)"""
    report = store_as("otto").go_live_check()
    items = {i.check: i.ok for i in report.items}
    assert items["champion"] and items["risk-owner"] and items["incidents"]
    assert not items["monitoring"] and not items["checkpoint"]
    assert not report.ready and {"monitoring", "checkpoint"} <= set(missing(report))
    with pytest.raises(PermissionDeniedError, match="check go-live"):
        store_as("alice").go_live_check()


def test_hilt_check_go_live_says_ready_and_exits_0(loaded_workspace: Workspace) -> None:
    """At the real clock: assessments dated yesterday, monitoring and a checkpoint now."""
    ws = loaded_workspace
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    text = ws.config_path.read_text(encoding="utf-8")
    for old in ("dpia_date = 2026-11-02", "fria_date = 2026-11-16"):
        text = text.replace(old, f"{old.split(' = ')[0]} = {yesterday}")
    ws.config_path.write_text(text, encoding="utf-8")
    assert open_store_as(ws, Identity(operator=True), for_config=True).config_apply().outcome in (
        "applied",
        "unchanged",
    )
    monitoring_run(ws, datetime.now(UTC))
    result = hilt("check", "go-live", "-w", ws.root)
    assert result.returncode == 6 and "MISSING  checkpoint" in result.stdout, result.stdout
    assert hilt("audit", "checkpoint", "-w", ws.root).returncode == 0
    result = hilt("check", "go-live", "-w", ws.root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[:-1]] == ["ok"] * 8
    assert result.stdout.splitlines()[-1].startswith("ready to go live (checked at ")
