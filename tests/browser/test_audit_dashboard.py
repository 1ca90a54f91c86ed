"""The audit dashboard in a real browser: `hilt serve`, headless Debian Chromium, over a
workspace that went round the loop twice (real MLflow and papermill runs).

An auditor (``X-Forwarded-User: otto``) sees the log verified and follows a decision back to
the training run and the snapshot that MLflow names, with the explanation identical to what
the reviewer saw; a reviewer is refused. Neither writes anything: the audit head and every
table's row count are read back through the store service before and after.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.runs import run_info
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.audit_records import AuditHead
from tests.audit_helpers import AuditedLoop, audited_loop
from tests.browser.conftest import OpenAs, require_chromium
from tests.browser.pages import wait_for_kernel_settled
from tests.conftest import free_port, operator, proxied_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The log is verified in the background after the page shows: allow for a loaded machine.
SLOW_MS = 90_000
READ_ONLY_BUTTONS = {
    "Verify again",
    "Search",
    "Clear filters",
    "Refresh",
    "◀ Newer",
    "Older ▶",
    "Show its lineage",
    "Reload list",
    "Show lineage",
    "Cross-check with MLflow",
    "◀ Earlier",
    "Later ▶",
    "Open",
}


@dataclass
class Served:
    loop: AuditedLoop
    server: DashboardServer
    admin_token: str

    @property
    def audit_url(self) -> str:
        return self.server.dashboard_url("audit")

    def admin(self) -> Store:
        return open_store_as(
            f"http://{self.server.host}:{self.server.store_port}", Identity(token=self.admin_token)
        )

    def state(self) -> tuple[AuditHead, dict[str, int]]:
        admin = self.admin()
        try:
            return admin.audit_head(), admin.counts()
        finally:
            admin.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_chromium()
    root = tmp_path_factory.mktemp("audit-browser")
    loop = audited_loop(root, config=proxied_config(root))
    admin_token = operator(loop.ws).add_user("dana", "admin").token
    server = start_dashboards(loop.ws, port=free_port(), store_port=free_port())
    try:
        yield Served(loop, server, admin_token)
    finally:
        server.stop()


def buttons(page: Page) -> set[str]:
    return {b.inner_text().strip() for b in page.locator(".jupyter-widgets button").all()}


def test_an_auditor_sees_the_log_verified_and_a_decisions_lineage(
    served: Served, context_as: OpenAs
) -> None:
    loop = served.loop
    before = served.state()
    page = context_as("otto").new_page()
    page.goto(served.audit_url, wait_until="commit")

    integrity = page.locator(".hilt-integrity")
    expect(integrity).to_contain_text(f"✓ OK {before[0].seq} events", timeout=SLOW_MS)
    expect(integrity).to_contain_text(before[0].hash)
    expect(page.locator(".hilt-audit-dashboard")).to_contain_text("otto (auditor)")

    page.get_by_role("tab", name="Lineage").click()
    lineage = page.locator(".hilt-lineage")
    recent = lineage.locator("select").first
    expect(recent).to_be_visible()
    # The newest decision comes first (after the placeholder): alice's on a v2 prediction.
    recent.select_option(index=1)
    expect(lineage.locator(".hilt-lineage-step").first).to_be_visible(timeout=SLOW_MS)
    settings = loop.ws.settings()
    configure(loop.ws, settings=settings)
    mlflow_run = run_info(loop.second.run_id)
    assert mlflow_run.snapshot_sha256
    expect(lineage).to_contain_text(loop.decision.decision_id)
    expect(lineage).to_contain_text(f"run id{loop.second.run_id}")
    expect(lineage).to_contain_text(f"sha256{mlflow_run.snapshot_sha256}")
    expect(lineage).to_contain_text(f"{registered_model_name(settings)}/v2")
    expect(lineage).to_contain_text("Every link of this chain is in the records.")
    expect(lineage).to_contain_text(
        f"Identical to what the reviewer saw (sha256 {loop.decision.explanation_sha256})"
    )
    replayed = lineage.locator(".hilt-replayed-explanation")
    expect(replayed).to_contain_text("Model prediction")
    expect(lineage).to_contain_text("The decisions that trained this model: 60")

    # Nothing on the page could write: only reading controls, no free-text area.
    # Each tab reads the log when first shown (the explorer's first page, the runs' list):
    # wait for what it read before the next click (the page sends only the latest tab
    # while the kernel is busy, as a person who clicks through quickly would see).
    shown_when_read = {
        "Events": (".hilt-event-explorer", "events match"),
        "Notebooks": (".hilt-notebooks", "retrain"),
        "Integrity": (".hilt-integrity", f"OK {before[0].seq} events"),
    }
    for tab, (panel, text) in shown_when_read.items():
        page.get_by_role("tab", name=tab).click()
        expect(page.locator(panel)).to_be_visible(timeout=SLOW_MS)
        expect(page.locator(panel)).to_contain_text(text, timeout=SLOW_MS)
    assert buttons(page) <= READ_ONLY_BUTTONS, buttons(page)
    assert page.locator("textarea").count() == 0
    wait_for_kernel_settled(page)  # whatever the clicks made the kernel do is done
    assert served.state() == before


def test_a_reviewer_is_refused_the_audit_dashboard(served: Served, context_as: OpenAs) -> None:
    before = served.state()
    page = context_as("alice").new_page()
    page.goto(served.audit_url)
    refusal = page.locator(".hilt-refusal")
    expect(refusal).to_be_visible(timeout=SLOW_MS)
    expect(refusal).to_contain_text("Not an auditor here")
    expect(refusal).to_contain_text("alice does not have the auditor role in this workspace")
    assert page.locator(".jupyter-widgets button, .jupyter-widgets input").count() == 0
    assert page.locator("select, textarea").count() == 0
    assert page.locator(".hilt-audit-dashboard").count() == 0
    assert not re.search(r"\bOK \d+ events\b", page.content())
    wait_for_kernel_settled(page)
    assert served.state() == before
