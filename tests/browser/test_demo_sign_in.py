"""The demo's sign-in page in a real browser (single-person mode: no sign-in proxy).

`hilt serve` over a workspace of the demo config (access.local_user lena, no proxy) with
cases scored into the queue and one signed checkpoint. On the sign-in page a
newcomer picks the auditor: the audit page works (not "Not an auditor here"), says on the
page that nobody proved who is looking, and counts the signed checkpoint. Signing in again
as a reviewer switches role: the review page decides a case, and the store wrote that
decision's audit event with the unproven marker it decided itself (from the session it
issued), as it did the sign-in. Read back through the store service with an admin token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, expect

from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.authentication import DEMO_SIGN_IN, SIGNED_IN_UNPROVEN, UNPROVEN_KEY
from hilt.pipelines.workspace import Workspace
from tests.browser.conftest import require_chromium
from tests.browser.pages import TIMEOUT_MS, click_accept, wait_for_case
from tests.conftest import copy_of, free_port, operator

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The audit page verifies the log in the background after it shows.
SLOW_MS = 90_000


@dataclass
class Served:
    server: DashboardServer
    admin_token: str

    def admin(self) -> Store:
        url = f"http://{self.server.host}:{self.server.store_port}"
        return open_store_as(url, Identity(token=self.admin_token))


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, loaded_template: Workspace
) -> Iterator[Served]:
    require_chromium()
    # The demo config (single-person mode, lena), 200 cases scored by a stand-in champion.
    ws = copy_of(loaded_template, tmp_path_factory.mktemp("sign-in") / "ws")
    with operator(ws) as op:
        op.checkpoint()
        admin_token = op.add_user("dana", "admin").token
    server = start_dashboards(ws, port=free_port(), store_port=free_port())
    try:
        yield Served(server, admin_token)
    finally:
        server.stop()


def open_sign_in(page: Page, served: Served) -> None:
    page.goto(served.server.dashboard_url("signin"))
    panel = page.locator(".hilt-sign-in")
    expect(panel).to_contain_text("signed in without a password: demo mode", timeout=SLOW_MS)


def pick(page: Page, name: str, dashboard: str) -> None:
    """On the sign-in page: pick ``name``, then follow the link to ``dashboard``."""
    page.locator(".hilt-sign-in-as", has_text=re.compile(rf"^{name} \(")).click()
    link = page.get_by_role("link", name=dashboard)
    expect(link).to_be_visible(timeout=TIMEOUT_MS)
    link.click()


def test_every_role_of_the_demo_without_a_proxy(served: Served, browser: Browser) -> None:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        # The page lists the users with their dashboard roles (the DPO and the admin-only
        # data scientist have none: not listed).
        open_sign_in(page, served)
        buttons = page.locator(".hilt-sign-in-as")
        listed = sorted(buttons.all_inner_texts())
        assert listed == [
            "alice (reviewer)",
            "bob (reviewer)",
            "lena (lead, reviewer)",
            "max (lead)",
            "otto (auditor)",
        ]

        pick(page, "otto", "Audit")
        audit = page.locator(".hilt-audit-dashboard")
        expect(audit).to_contain_text("otto (auditor)", timeout=SLOW_MS)
        expect(page.locator(".hilt-unproven")).to_contain_text(DEMO_SIGN_IN)
        expect(page.locator(".hilt-refusal")).to_have_count(0)
        integrity = page.locator(".hilt-integrity")
        expect(integrity).to_contain_text(re.compile(r"signed checkpoints\s*1"), timeout=SLOW_MS)

        with served.admin() as admin:
            head = admin.audit_head().seq
        open_sign_in(page, served)
        pick(page, "alice", "Review queue")  # again: switches role
        expect(page.locator(".hilt-unproven")).to_contain_text(DEMO_SIGN_IN, timeout=SLOW_MS)
        wait_for_case(page)
        click_accept(page)
    finally:
        context.close()

    with served.admin() as admin:
        events = admin.audit_events(after_seq=head)
    signed_in = [e for e in events if e.action == SIGNED_IN_UNPROVEN]
    assert [(e.actor, e.object_id) for e in signed_in] == [("voila-gateway", "alice")]
    assert signed_in[0].payload[UNPROVEN_KEY] == DEMO_SIGN_IN
    decided = [e for e in events if e.action == "decision.record"]
    assert len(decided) == 1
    assert (decided[0].actor, decided[0].role) == ("alice", "reviewer")
    assert decided[0].payload[UNPROVEN_KEY] == DEMO_SIGN_IN
    # Every event alice's page wrote carries the marker (the lease, the decision, ...).
    assert all(e.payload.get(UNPROVEN_KEY) == DEMO_SIGN_IN for e in events if e.actor == "alice")
