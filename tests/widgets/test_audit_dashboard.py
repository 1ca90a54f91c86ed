"""The audit dashboard with a fake backend: what it shows, what it asks the backend for,
that errors land in the status line, and that nothing in it can write."""

from __future__ import annotations

import html
import inspect
import subprocess
import sys
import threading
from pathlib import Path

import ipywidgets as widgets
import pytest

from hilt.widgets.audit.dashboard import TAB_TITLES, AuditDashboard, audit_panel
from hilt.widgets.common.refusal import RefusalScreen
from hilt.widgets.contracts.audit import (
    AuditBackend,
    EventFilter,
    ExplanationReplay,
    IntegrityReport,
)
from hilt.widgets.contracts.common import Refusal
from tests.widgets.fakes import BackendDown, FakeAuditBackend, make_event
from tests.widgets.tree import all_text, find_widgets, visible_buttons

#: Every control the dashboard may offer: each one searches, pages, verifies or renders.
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
#: Longest wait for a background verification of the fake (it returns at once).
WAIT_S = 10.0
#: What the protocol offers: reads only (a method added to it must be added here, knowingly).
READ_METHODS = {
    "auditor",
    "verify",
    "events",
    "refresh",
    "action_names",
    "recent_decisions",
    "lineage",
    "training_page",
    "explanation",
    "crosscheck",
    "notebooks",
    "notebook_html",
}


def dashboard(backend: FakeAuditBackend | None = None) -> tuple[AuditDashboard, FakeAuditBackend]:
    fake = backend or FakeAuditBackend()
    panel = audit_panel(fake)
    assert isinstance(panel, AuditDashboard)
    panel.integrity.wait(WAIT_S)
    assert panel.status.text == f"Audit log verified: {fake.report.summary}"
    panel.tabs.selected_index = TAB_TITLES.index("Events")
    return panel, fake


def every_button(root: widgets.Widget) -> list[widgets.Button]:
    """Every button reachable from root, shown or not (all tabs and panels)."""
    seen: list[widgets.Button] = []
    for panel in (root.integrity, root.explorer, root.lineage, root.notebooks):
        for name in vars(panel):
            value = getattr(panel, name)
            if isinstance(value, widgets.Button):
                seen.append(value)
    return seen


def test_the_protocol_has_only_read_methods() -> None:
    names = {n for n, _ in inspect.getmembers(AuditBackend) if not n.startswith("_")}
    assert names == READ_METHODS


def test_opening_verifies_and_shows_the_newest_events() -> None:
    fake = FakeAuditBackend()
    dash = audit_panel(fake)
    assert isinstance(dash, AuditDashboard)
    dash.integrity.wait(WAIT_S)
    # Opening reads nothing but who is looking and the verdict; each tab loads when shown.
    assert sorted(n for n, _ in fake.calls) == ["auditor", "verify"]
    assert [n for n, _ in fake.calls][:1] == ["auditor"]
    assert fake.called("verify") == [()]
    assert fake.called("events") == []  # loaded when the tab is first shown
    dash.tabs.selected_index = TAB_TITLES.index("Events")
    assert fake.called("events") == [(EventFilter(), 0, 25)]
    dash.tabs.selected_index = 0
    dash.tabs.selected_index = TAB_TITLES.index("Events")
    assert len(fake.called("events")) == 1
    text = all_text(dash)
    assert "✓ OK 60 events" in text
    assert "otto" in text and "read-only" in text
    assert dash.tabs.titles == TAB_TITLES
    assert "60</b> events match · page 1 of 3" in dash.explorer.summary.value
    assert "C-060" in dash.explorer.results.value and "C-035" not in dash.explorer.results.value
    assert dash.status.text == "60 events match."


def test_the_dashboard_shows_before_the_verdict_and_the_verdict_when_it_comes() -> None:
    release = threading.Event()
    fake = FakeAuditBackend(verify_gate=release)
    dash = audit_panel(fake)  # returns while verify is still running
    assert isinstance(dash, AuditDashboard)
    assert dash.integrity.verifying()
    assert "Verifying the audit log" in dash.integrity.result.value
    assert dash.integrity.verify_button.disabled
    assert "otto" in all_text(dash)
    release.set()
    dash.integrity.wait(WAIT_S)
    assert not dash.integrity.verifying()
    assert "✓ OK 60 events" in dash.integrity.result.value
    assert dash.status.text == f"Audit log verified: {fake.report.summary}"
    assert not dash.integrity.verify_button.disabled


def test_verify_again_runs_one_verification_at_a_time() -> None:
    dash, fake = dashboard()
    release = threading.Event()
    fake.verify_gate = release
    dash.integrity.verify_button.click()
    dash.integrity.verify_button.click()  # while the first is running: ignored
    release.set()
    dash.integrity.wait(WAIT_S)
    assert fake.called("verify") == [(), ()]


def test_a_broken_chain_is_shown_as_broken() -> None:
    broken = IntegrityReport(
        ok=False,
        summary="BROKEN at seq 17: hash-mismatch: the stored hash does not match the entry",
        events=60,
        head_seq=60,
        head_hash="a" * 64,
        checkpoints=1,
        public_key=None,
    )
    dash, _ = dashboard(FakeAuditBackend(report=broken))
    assert "✗ BROKEN at seq 17: hash-mismatch" in dash.integrity.result.value
    assert "none pinned" in dash.integrity.result.value


def test_filters_and_paging_go_to_the_backend() -> None:
    dash, fake = dashboard()
    ex = dash.explorer
    ex.actor.value = " alice "
    ex.action.value = "decision."
    ex.since.value = "2030-01-01"
    ex.search_button.click()
    query = fake.called("events")[-1][0]
    assert query == EventFilter(actor="alice", action="decision.", since="2030-01-01")
    assert ex.page is not None and ex.page.total == 30
    ex.next_button.click()
    assert fake.called("events")[-1][1:] == (25, 25)
    assert ex.next_button.disabled  # 30 events: page 2 is the last
    ex.next_button.click()
    assert fake.called("events")[-1][1:] == (25, 25)  # nothing past the end
    ex.prev_button.click()
    assert fake.called("events")[-1][1:] == (0, 25)
    ex.clear_button.click()
    assert fake.called("events")[-1] == (EventFilter(), 0, 25)


def test_refresh_pages_under_the_new_head() -> None:
    dash, fake = dashboard()
    fake.rows.insert(0, make_event(61))
    dash.explorer.search_button.click()
    assert "C-061" not in dash.explorer.results.value  # the explorer pages under its head
    fake.head = 61
    dash.explorer.refresh_button.click()
    assert fake.called("refresh") == [()]
    assert "C-061" in dash.explorer.results.value


def test_a_refused_filter_goes_to_the_status_line() -> None:
    dash, fake = dashboard()
    fake.fail["events"] = BackendDown("since must be an ISO-8601 time, e.g. 2025-01-31T12:00:00Z")
    dash.explorer.since.value = "yesterday"
    dash.explorer.search_button.click()
    assert dash.status.level == "error"
    assert "Search refused: since must be an ISO-8601 time" in dash.status.text


def test_a_decision_from_the_events_opens_in_the_lineage_tab() -> None:
    dash, fake = dashboard()
    ex = dash.explorer
    assert ex.decision_choice.value == "d60"
    ex.decision_choice.value = "d59"
    ex.lineage_button.click()
    assert dash.tabs.selected_index == TAB_TITLES.index("Lineage")
    assert fake.called("lineage") == [("d59",)]
    assert fake.called("explanation") == [("d59",)]
    assert dash.lineage.decision_id.value == "d59"


def test_lineage_shows_the_chain_the_explanation_and_the_training_decisions() -> None:
    dash, fake = dashboard()
    lp = dash.lineage
    assert fake.called("recent_decisions") == []  # listed when the tab is first shown
    dash.tabs.selected_index = TAB_TITLES.index("Lineage")
    assert fake.called("recent_decisions") == [(50,)]
    lp.recent.value = "d58"
    chain = lp.chain.value
    assert chain.index("Decision") < chain.index("Training run") < chain.index("Snapshot")
    assert "run-abc" in chain and "5" * 64 in chain
    assert "Every link of this chain is in the records." in chain
    assert f"Identical to what the reviewer saw (sha256 {'c' * 64})" in lp.explanation.value
    # The fragment exactly as recorded, not escaped: it is what the reviewer's panel showed.
    assert '<div class="fragment">Predicted: <b>good risk</b></div>' in lp.explanation.value
    assert "The decisions that trained this model: 45" in lp.training_html.value
    assert "t1" in lp.training_html.value
    assert dash.status.level == "success"
    lp.next_button.click()
    assert fake.called("training_page") == [("d58", 20, 20)]
    lp.prev_button.click()
    assert fake.called("training_page")[-1] == ("d58", 0, 20)
    lp.mlflow_button.click()
    assert fake.called("crosscheck") == [("d58",)]
    assert "MLflow&#x27;s record" in lp.chain.value
    assert dash.status.text == "MLflow agrees with the audit log."


@pytest.mark.parametrize(
    ("replay", "shown"),
    [
        (ExplanationReplay("d60", "differs", "DIFFERS from what the reviewer saw"), "✗ DIFFERS"),
        (
            ExplanationReplay("d60", "not-recorded", "Recorded without the hash of it"),
            "? Recorded without",
        ),
        (ExplanationReplay("d60", "not-shown", "The model's output was hidden"), "? The model"),
    ],
    ids=["differs", "not-recorded", "not-shown"],
)
def test_explanation_verdicts_say_what_they_are(replay: ExplanationReplay, shown: str) -> None:
    dash, _ = dashboard(FakeAuditBackend(replay=replay))
    dash.lineage.show("d60")
    assert shown in html.unescape(dash.lineage.explanation.value)


def test_lineage_problems_are_listed_and_an_unknown_decision_is_an_error() -> None:
    dash, fake = dashboard()
    lp = dash.lineage
    lp.show("")
    assert dash.status.text == "Choose a decision, or paste its id."
    fake.fail["lineage"] = BackendDown("unknown decision id")
    lp.decision_id.value = "nope"
    lp.show_button.click()
    assert dash.status.level == "error"
    assert dash.status.text == "No lineage: unknown decision id"
    assert lp.children == (lp.chooser,)


def test_notebooks_are_listed_and_shown_sandboxed() -> None:
    dash, fake = dashboard()
    assert fake.called("notebooks") == []
    dash.tabs.selected_index = TAB_TITLES.index("Notebooks")
    assert fake.called("notebooks") == [()]
    nb = dash.notebooks
    assert "20300102T100000Z-retrain-run-abc.ipynb" in nb.listing.value
    assert "b" * 64 in nb.listing.value and "matches" in nb.listing.value
    nb.open_button.click()
    assert fake.called("notebook_html") == [("run-abc",)]
    frame = nb.viewer.value
    assert frame.startswith('<iframe class="hilt-notebook-frame" sandbox=""')
    assert "<script>" not in frame  # the page is an attribute value, escaped, inert
    assert html.escape(fake.page_html, quote=True) in frame
    assert nb.viewer in nb.children


def test_a_notebook_that_does_not_match_its_hash_is_not_shown() -> None:
    dash, fake = dashboard()
    dash.tabs.selected_index = TAB_TITLES.index("Notebooks")
    fake.fail["notebook_html"] = BackendDown("the file does not match the sha256 the log recorded")
    dash.notebooks.open_button.click()
    assert dash.status.level == "error"
    assert dash.status.text.startswith("Not shown: the file does not match")
    assert dash.notebooks.viewer not in dash.notebooks.children


def test_no_control_writes_and_clicking_everything_only_reads() -> None:
    dash, fake = dashboard()
    dash.lineage.show("d60")
    dash.notebooks.show("run-abc")
    buttons = every_button(dash)
    assert {b.description for b in buttons} == READ_ONLY_BUTTONS
    assert set(visible_buttons(dash)) <= READ_ONLY_BUTTONS
    for b in buttons:
        b.click()
    assert {name for name, _ in fake.calls} <= READ_METHODS
    # No text input that could send free text anywhere but a filter or a decision id.
    inputs = [w for w in find_widgets(dash) if isinstance(w, widgets.Textarea)]
    assert inputs == []


def test_a_refusal_is_a_refusal_screen() -> None:
    panel = audit_panel(Refusal("Not an auditor here", "alice does not have the auditor role"))
    assert isinstance(panel, RefusalScreen)
    assert visible_buttons(panel) == []
    assert "alice does not have the auditor role" in all_text(panel)


def test_an_identity_that_cannot_be_confirmed_is_refused() -> None:
    fake = FakeAuditBackend()
    fake.fail["auditor"] = BackendDown("the store service is unreachable")
    panel = audit_panel(fake)
    assert isinstance(panel, RefusalScreen)
    assert "the store service is unreachable" in all_text(panel)
    assert fake.called("verify") == []


def test_a_background_verdict_is_sent_to_the_page_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verdict that lands while Voila's page loads the widgets' states is dropped by the
    page; the panel sends the verdict's widgets again after a moment."""
    from hilt.widgets.audit import integrity_panel

    monkeypatch.setattr(integrity_panel, "RESEND_AFTER_S", (0.05,))
    sent: list[str] = []
    resent = threading.Event()

    def record(widget: widgets.Widget, key: object) -> None:
        if key is None:  # a whole state sent again (a changed trait names its key)
            sent.append(type(widget).__name__)
        if len(sent) >= 4:
            resent.set()

    monkeypatch.setattr(widgets.Widget, "send_state", lambda self, key=None: record(self, key))
    panel, fake = dashboard()
    assert resent.wait(WAIT_S), sent
    assert panel.integrity.report == fake.report
    assert "IntegrityPanel" in sent and "Button" in sent and "HTML" in sent
    # "Verify again" on the caller's thread sends nothing again: the page is connected.
    sent.clear()
    panel.integrity.run()
    assert sent == []


def test_a_kernel_that_exits_while_verifying_waits_for_the_verdict() -> None:
    # Left running at exit, the verifying thread is stopped as the interpreter finalises;
    # inside the store's database library that aborted the process (CI: exit -6). The panel
    # has the exiting interpreter wait for it: the verdict is reached, the exit is clean.
    code = (
        "import threading, time\n"
        "from hilt.widgets.audit.integrity_panel import IntegrityPanel\n"
        "from hilt.widgets.common.status import StatusLine\n"
        "from tests.widgets.fakes import FakeAuditBackend\n"
        "class Slow(FakeAuditBackend):\n"
        "    def verify(self):\n"
        "        time.sleep(1.0)\n"
        "        print('verdict reached', flush=True)\n"
        "        return super().verify()\n"
        "IntegrityPanel(Slow(), StatusLine()).start()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "verdict reached"
