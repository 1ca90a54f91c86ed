"""Who may open the audit dashboard (identity never typed in), and that the auditor's
backend writes nothing, embedded and through the store service with a gateway token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hilt.pipelines.dashboards.audit import StoreAuditBackend, open_audit_backend
from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from hilt.widgets.audit.dashboard import AuditDashboard, audit_panel
from hilt.widgets.contracts.audit import EventFilter
from hilt.widgets.contracts.common import Refusal
from tests.conftest import PROXY_ENV, RunningService, operator, start_service


def three_decisions(ws: Workspace) -> Workspace:
    alice = open_store_as(ws, Identity(name="alice"))
    for _ in range(3):
        leased = alice.next_case()
        assert leased is not None
        alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    return ws


@pytest.fixture
def decided(loaded_workspace: Workspace) -> Workspace:
    return three_decisions(loaded_workspace)


@pytest.fixture
def gateway(loaded_workspace_behind_proxy: Workspace) -> Iterator[tuple[RunningService, str, str]]:
    """A running service over a decided workspace behind a sign-in proxy, a gateway token
    and an admin token (issued before it starts)."""
    decided = three_decisions(loaded_workspace_behind_proxy)
    token = operator(decided).add_user("voila-gateway", "gateway").token
    admin = operator(decided).add_user("dana", "admin").token
    svc = start_service(decided)
    try:
        yield svc, token, admin
    finally:
        svc.stop()


@pytest.mark.parametrize(
    ("env", "title", "message"),
    [
        ({"HTTP_X_FORWARDED_USER": "alice"}, "Not an auditor here", "alice does not have the"),
        ({"HTTP_X_FORWARDED_USER": "mallory"}, "Not an auditor here", "mallory is not a user"),
        ({"JUPYTERHUB_USER": "bob"}, "Not an auditor here", "bob does not have the auditor"),
        # No header: the workspace's local user (lena, a lead) is no auditor either.
        ({}, "Not an auditor here", "lena does not have the auditor role"),
    ],
    ids=["reviewer", "unknown", "hub-reviewer", "local-lead"],
)
def test_only_an_auditor_gets_the_dashboard(
    decided: Workspace, env: dict[str, str], title: str, message: str
) -> None:
    head = operator(decided).audit_head()
    access = open_audit_backend(str(decided.root), env=env)
    assert isinstance(access, Refusal)
    assert access.title == title
    assert message in access.message
    assert operator(decided).audit_head() == head


def test_the_proxy_header_wins_over_the_hub_and_the_local_user(decided: Workspace) -> None:
    env = {"HTTP_X_FORWARDED_USER": "otto", "JUPYTERHUB_USER": "alice"}
    access = open_audit_backend(str(decided.root), env=env)
    assert isinstance(access, StoreAuditBackend)
    assert access.auditor().name == "otto"


def test_a_workspace_that_is_not_one_is_refused(tmp_path: Path) -> None:
    access = open_audit_backend(str(tmp_path), env={"HTTP_X_FORWARDED_USER": "otto"})
    assert isinstance(access, Refusal)
    assert "no such config file" in access.message


def test_through_the_service_as_the_gateway_on_behalf_of_the_auditor(
    gateway: tuple[RunningService, str, str],
) -> None:
    svc, token, admin_token = gateway
    admin = open_store_as(svc.url, Identity(token=admin_token))
    before = (admin.audit_head(), admin.counts())
    env = {
        "HTTP_X_FORWARDED_USER": "otto",
        "HILT_STORE_URL": svc.url,
        "HILT_GATEWAY_TOKEN": token,
        "HILT_WORKSPACE": str(svc.workspace.root),
        **PROXY_ENV,
    }
    access = open_audit_backend(None, env=env)
    assert isinstance(access, StoreAuditBackend)
    panel = audit_panel(access)
    assert isinstance(panel, AuditDashboard)
    panel.integrity.wait(60)  # verifying runs in the background: the page shows first
    assert panel.integrity.report is not None and panel.integrity.report.ok
    decision = access.recent_decisions(10)[0]
    view = access.lineage(decision.decision_id)
    # The stand-in model is in the store's registry, but no training run recorded it.
    assert any("no run.trained event of run run-of-test-model/v1" in p for p in view.problems)
    assert access.events(EventFilter(actor="alice"), 0, 5).total == 6  # 3 leases, 3 decisions
    assert access.explanation(decision.decision_id).verdict == "not-recorded"
    # A reviewer through the same gateway is refused.
    refused = open_audit_backend(None, env={**env, "HTTP_X_FORWARDED_USER": "alice"})
    assert isinstance(refused, Refusal)
    assert (admin.audit_head(), admin.counts()) == before
    admin.close()


def test_the_dashboard_verifies_from_the_newest_signed_checkpoint_and_says_so(
    loaded_workspace: Workspace,
) -> None:
    """Embedded and through the service's verify operation: the integrity panel names the
    checkpoint it verified from, and counts only the events after it."""
    ws = three_decisions(loaded_workspace)
    cp = operator(ws).checkpoint()
    head = three_decisions(ws)
    after = operator(head).audit_head().seq - cp.seq
    access = open_audit_backend(str(ws.root), env={"HTTP_X_FORWARDED_USER": "otto"})
    assert isinstance(access, StoreAuditBackend)
    panel = audit_panel(access)
    assert isinstance(panel, AuditDashboard)
    panel.integrity.wait(60)  # verifying runs in the background: the page shows first
    report = panel.integrity.report
    assert report is not None and report.ok, report
    assert report.from_checkpoint == cp.seq
    assert report.events == after
    assert report.method[0].startswith(f"Verified from the signed checkpoint at seq {cp.seq}")
    assert f"from the signed checkpoint at seq {cp.seq}" in panel.integrity.result.value
    assert f"after checkpoint seq {cp.seq}" in report.summary

    token = operator(ws).add_user("dana", "admin").token
    svc = start_service(ws)
    try:
        served = open_store_as(svc.url, Identity(token=token))
        own = served.verify(None, "latest")
        assert own.ok and own.from_checkpoint == cp.seq, own.summary()
        assert served.verify().from_checkpoint is None  # the full walk stays the default
        served.close()
    finally:
        svc.stop()
