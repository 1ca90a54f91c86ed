"""The oversight dashboard in a real browser: `hilt serve`, headless Debian Chromium.

The workspace double-reviews every case and holds gold cases; before the servers start,
alice rubber-stamps (accepts everything in 1.5 s) and bob disagrees with her once, so the
page has an automation-bias alert and a conflict to settle. Identity arrives as an
authenticating proxy sends it (``X-Forwarded-User``); what the page did is read back
through the store service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import Browser, Page, expect

from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.oversight import add_gold_cases
from hilt.pipelines.loop.scoring import demo_first_model
from hilt.pipelines.store import DecisionRequest, Identity, Store, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.browser.conftest import OpenAs, proxied_context, require_chromium
from tests.browser.pages import TIMEOUT_MS, audit_events, wait_for_kernel_settled
from tests.conftest import CONFIG, CSV, behind_proxy, free_port, operator

pytestmark = pytest.mark.browser


@dataclass
class Oversight:
    server: DashboardServer
    workspace: Workspace
    admin_token: str
    conflict_case: str

    @property
    def url(self) -> str:
        return self.server.dashboard_url("oversight")

    def admin(self) -> Store:
        return open_store_as(
            f"http://{self.server.host}:{self.server.store_port}", Identity(token=self.admin_token)
        )


def _config(tmp: Path) -> Path:
    text = CONFIG.read_text().replace("double_review_share = 0.0", "double_review_share = 1.0")
    assert "double_review_share = 1.0" in text
    path = tmp / "hilt.toml"
    path.write_text(behind_proxy(text))
    return path


@pytest.fixture(scope="module")
def oversight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oversight]:
    require_chromium()
    tmp = tmp_path_factory.mktemp("oversight-browser")
    ws = Workspace.at(tmp / "ws")
    create_workspace(ws, _config(tmp), holdout_salt="oversight-browser")
    op = operator(ws)
    op.ingest_cases(pl.read_csv(CSV, infer_schema=False))
    first = demo_first_model(
        op, open_store_as(ws, Identity(name="lena")), ws.settings(), ws.root / "models"
    )
    add_gold_cases(op, ws.settings(), TrainedModel.load(first.path), first.model, 10)
    alice, bob = open_store_as(ws, Identity(name="alice")), open_store_as(ws, Identity(name="bob"))
    by_alice: set[str] = set()
    for _ in range(25):  # accepts everything, fast
        leased = alice.next_case()
        assert leased is not None
        alice.record_decision(
            DecisionRequest(case_id=leased.case.case_id, action="accept", time_on_item_ms=1500)
        )
        by_alice.add(leased.case.case_id)
    conflict = ""
    for _ in range(4):  # bob takes second reviews, and disagrees with alice once
        leased = bob.next_case()
        assert leased is not None
        cid, model_label = leased.case.case_id, leased.case.predictions[-1].label
        if cid in by_alice and not conflict:
            conflict = cid
            request = DecisionRequest(
                case_id=cid,
                action="override",
                final_label="0" if model_label == "1" else "1",
                reason_code="income-verified",
                time_on_item_ms=12_000,
            )
        else:
            request = DecisionRequest(case_id=cid, action="accept", time_on_item_ms=9000)
        bob.record_decision(request)
    assert conflict and [
        c.case_id for c in open_store_as(ws, Identity(name="lena")).conflicts()
    ] == [conflict]
    # Issue 14: a breach lena opened, known since long before its 72 hours ran out.
    open_store_as(ws, Identity(name="lena")).open_incident(
        "personal_data_breach", "Export mailed to a wrong address.", "2026-01-01T00:00Z"
    )
    admin_token = op.add_user("dana", "admin").token
    server = start_dashboards(ws, port=free_port(), store_port=free_port())
    try:
        yield Oversight(server, ws, admin_token, conflict)
    finally:
        server.stop()


def open_dashboard(context_as: OpenAs, user: str, url: str) -> Page:
    page = context_as(user).new_page()
    page.goto(url, wait_until="commit")
    return page


def wait_for_dashboard(page: Page) -> None:
    expect(page.locator(".hilt-oversight")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator(".hilt-queue-health")).to_contain_text("Waiting", timeout=TIMEOUT_MS)


@dataclass(frozen=True)
class OpenedPage:
    page: Page
    #: From asking for the page to the dashboard on screen.
    visible_s: float


@pytest.fixture(scope="module")
def maxs_page(oversight: Oversight, browser: Browser) -> Iterator[OpenedPage]:
    """max's oversight page, opened once per module (its own browser context, as
    ``context_as`` makes them) and shared by the tests in which he acts on it: the
    module starts one Voila kernel for him instead of one per test."""
    ctx = proxied_context(browser, "max")
    try:
        page = ctx.new_page()
        t0 = time.monotonic()
        page.goto(oversight.url, wait_until="commit")
        wait_for_dashboard(page)
        yield OpenedPage(page, time.monotonic() - t0)
    finally:
        ctx.close()


def test_a_lead_sees_the_alert_settles_the_conflict_and_halts(
    oversight: Oversight,
    maxs_page: OpenedPage,
    context_as: OpenAs,
    record_property: Callable[[str, object], None],
) -> None:
    admin = oversight.admin()
    start = admin.audit_head().seq
    page = maxs_page.page
    wait_for_dashboard(page)
    visible_s = maxs_page.visible_s
    print(f"\noversight dashboard visible: {visible_s:.2f} s")
    record_property("oversight_dashboard_visible_s", round(visible_s, 2))
    root = page.locator(".hilt-oversight")
    expect(root).to_contain_text("max (lead)")
    # Reviewers: alice's rubber-stamping is called out, with the chart beside it (an SVG the
    # page draws, widgets/oversight/charts.py), naming her.
    stats = page.locator(".hilt-reviewer-stats")
    expect(stats).to_contain_text("Automation-bias alerts")
    expect(stats).to_contain_text("possible rubber-stamping")
    expect(stats).to_contain_text("⚠ alice")
    expect(stats.locator("svg")).to_have_count(1)
    expect(stats.locator("svg")).to_be_visible()
    expect(stats.locator("svg .hilt-chart-label", has_text="alice")).to_have_count(1)
    # No widget failed to render (each would show a JavaScript-error box).
    assert page.locator(".jupyter-widgets-error-widget").count() == 0
    expect(page.locator(".hilt-agreement")).to_contain_text("Cohen's kappa")
    expect(page.locator(".hilt-override-reasons")).to_contain_text("Income and employment verified")

    # The conflict: both reviews shown, settled by max.
    adjudication = page.locator(".hilt-adjudication")
    expect(adjudication).to_contain_text("1 case where two reviewers disagree")
    expect(adjudication).to_contain_text("First review (alice)")
    expect(adjudication).to_contain_text("Second review (bob)")
    expect(adjudication.locator(".hilt-case-card")).to_contain_text("Credit amount")
    adjudication.get_by_role("button", name="Settle as bad risk").click()
    expect(page.locator(".hilt-status")).to_contain_text("Settled", timeout=TIMEOUT_MS)
    expect(adjudication).to_contain_text("No conflicts waiting")
    [settled] = [
        d for d in admin.decisions(after_seq=start) if d.case_id == oversight.conflict_case
    ]
    assert (settled.action, settled.reviewer, settled.final_label) == ("adjudicate", "max", "0")

    # Halt: a reason is required; then the banner, and the store, say so.
    control = page.locator(".hilt-system-control")
    expect(control).to_contain_text("Running")
    control.locator("textarea").fill("Complaints about declined applications")
    control.get_by_role("button", name="Halt scoring and retraining").click()
    expect(control).to_contain_text("HALTED by max", timeout=TIMEOUT_MS)
    state = admin.system_state()
    assert state.halted and state.changed_by == "max"
    expect(control.get_by_role("button", name="Resume")).to_be_disabled()
    expect(control).to_contain_text("a second lead must resume it")

    # The model comparison is read only when asked for (MLflow); here there is no challenger.
    page.get_by_role("button", name="Compare challenger with champion").click()
    expect(page.locator(".hilt-model-review")).to_contain_text(
        "No challenger waits", timeout=TIMEOUT_MS
    )

    # A second lead resumes.
    other = open_dashboard(context_as, "lena", oversight.url)
    wait_for_dashboard(other)
    other_control = other.locator(".hilt-system-control")
    expect(other_control).to_contain_text("HALTED by max")
    other_control.get_by_role("button", name="Resume").click()
    expect(other_control).to_contain_text("Running", timeout=TIMEOUT_MS)
    assert not admin.system_state().halted
    events = [(e.action, e.actor) for e in audit_events(admin, start)]
    assert ("system.halted", "max") in events and ("system.resumed", "lena") in events
    assert events.index(("system.halted", "max")) < events.index(("system.resumed", "lena"))
    assert admin.verify().ok
    admin.close()


@pytest.mark.parametrize(
    ("user", "explanation"),
    [
        ("alice", "alice does not have the lead role in this workspace"),
        ("mallory", "mallory is not a user of this workspace"),
    ],
    ids=["reviewer", "not-in-config"],
)
def test_someone_who_is_not_a_lead_is_refused_and_writes_nothing(
    oversight: Oversight, context_as: OpenAs, user: str, explanation: str
) -> None:
    admin = oversight.admin()
    before = (admin.counts(), admin.audit_head())
    page = open_dashboard(context_as, user, oversight.url)
    refusal = page.locator(".hilt-refusal")
    expect(refusal).to_be_visible(timeout=TIMEOUT_MS)
    expect(refusal).to_contain_text("Not an oversight lead here")
    expect(refusal).to_contain_text(explanation)
    assert page.locator(".hilt-oversight").count() == 0
    assert page.locator(".jupyter-widgets button, .jupyter-widgets input").count() == 0
    assert page.locator("select, textarea").count() == 0
    wait_for_kernel_settled(page)  # whatever the page made the kernel do is done
    assert (admin.counts(), admin.audit_head()) == before
    admin.close()


def test_a_lead_sees_the_overdue_breach_records_who_was_told_and_closes_it(
    oversight: Oversight, maxs_page: OpenedPage
) -> None:
    """Issue 14 (AI Act 73, GDPR 33): the open incident lena opened, overdue in words; max
    records that the authority was told and closes it (he did not open it)."""
    page = maxs_page.page
    wait_for_dashboard(page)
    panel = page.locator(".hilt-incidents")
    expect(panel).to_contain_text("OVERDUE INC-", timeout=TIMEOUT_MS)
    expect(panel).to_contain_text("personal_data_breach (GDPR 33(1))")
    expect(panel).to_contain_text("nobody yet")
    panel.get_by_placeholder("Who was told (e.g. the supervisory authority)").fill(
        "Datenschutzbehörde"
    )
    panel.get_by_role("button", name="Record told").click()
    expect(panel).to_contain_text("Datenschutzbehörde at ", timeout=TIMEOUT_MS)
    panel.locator("textarea").fill("Recipient confirmed deletion; authority informed.")
    panel.get_by_role("button", name="Close incident").click()
    expect(panel).to_contain_text("No open incidents.", timeout=TIMEOUT_MS)
    wait_for_kernel_settled(page)
    with oversight.admin() as admin:
        actions = [
            (e.action, e.actor)
            for e in admin.audit_events(limit=100_000)
            if e.action.startswith("incident.")
        ]
    assert actions == [
        ("incident.opened", "lena"),
        ("incident.updated", "max"),
        ("incident.closed", "max"),
    ]
