"""The oversight dashboard's components with a fake backend: what the lead sees, and what
each click sends (or refuses to send)."""

from __future__ import annotations

import ipywidgets as widgets

from hilt.widgets.common.formats import minutes, seconds
from hilt.widgets.common.refusal import RefusalScreen
from hilt.widgets.common.status import StatusLine
from hilt.widgets.contracts.common import Refusal, Reviewer
from hilt.widgets.oversight.adjudication import AdjudicationPanel
from hilt.widgets.oversight.dashboard import OversightDashboard, oversight_panel
from hilt.widgets.oversight.model_review import ModelReview
from hilt.widgets.oversight.monitor_views import QueueHealthView, ReviewerStatsView
from hilt.widgets.oversight.system_control import SystemControl
from hilt.widgets.review.session import ReviewSession
from tests.widgets.fakes import (
    PNG_1PX,
    BackendDown,
    FakeBackend,
    FakeClock,
    FakeOversightBackend,
    SharedSystem,
    make_comparison,
    make_config,
    make_item,
    make_overview,
)
from tests.widgets.tree import all_text, find_widgets, visible_buttons


def button(root: widgets.Widget, description: str) -> widgets.Button:
    found = [
        w
        for w in find_widgets(root)
        if isinstance(w, widgets.Button) and w.description == description
    ]
    assert len(found) == 1, (description, visible_buttons(root))
    return found[0]


def images(root: widgets.Widget) -> list[widgets.Image]:
    return [w for w in find_widgets(root) if isinstance(w, widgets.Image)]


# ---------------------------------------------------------------------------- the whole page
def test_the_dashboard_shows_queue_reviewers_alerts_and_agreement() -> None:
    backend = FakeOversightBackend()
    page = OversightDashboard(backend)
    text = all_text(page)
    assert "max" in text and "(lead)" in text
    # Queue health.
    health = page.queue_view.text.value
    for label, value in (("Waiting", "17"), ("Being reviewed", "2"), ("Oldest waiting", "95 min")):
        assert label in health and value in health
    assert "40 (312 in all)" in health
    # Reviewers: both rows, alice flagged, the alerts spelled out.
    table = page.reviewer_view.table.value
    assert "⚠ alice" in table and "bob" in table and "⚠ bob" not in table
    assert "50% (3/6)" in table and "100% (5/5)" in table
    assert "1.2 s" in table and "9.5 s" in table
    alerts = page.reviewer_view.alerts_html.value
    assert "Automation-bias alerts (2)" in alerts
    assert "alice accepted 100% of 40 model outputs" in alerts
    # Agreement and reasons; the two charts, drawn in the page (no image from the backend).
    assert "0.58" in page.agreement_view.text.value
    assert "Income verified" in page.reasons_view.table.value
    assert images(page) == []
    charts = [page.reviewer_view.chart, page.reasons_view.chart]
    assert all(c.value.startswith("<svg") and c in find_widgets(page) for c in charts)
    assert "alice" in charts[0].value and "Income verified" in charts[1].value
    # The comparison is not read at start-up (it needs the model registry).
    assert backend.comparison_calls == 0
    assert "Compare challenger with champion" in visible_buttons(page)


def test_no_alert_and_no_reasons_chart_when_there_is_nothing_to_show() -> None:
    overview = make_overview(alerts=(), reasons=())
    page = OversightDashboard(FakeOversightBackend(overview_value=overview))
    assert "No automation-bias alert" in page.reviewer_view.alerts_html.value
    assert "⚠" not in page.reviewer_view.table.value
    assert "No overrides yet" in page.reasons_view.table.value
    assert images(page) == []
    assert page.reasons_view.chart.value == ""
    assert page.reasons_view.chart not in find_widgets(page)
    # No reviewer has decided: no reviewer chart either.
    page.reviewer_view.show((), (), 30, (0.95, 5.0))
    assert page.reviewer_view.chart.value == ""
    assert "No reviewer has decided yet" in page.reviewer_view.table.value
    assert page.reviewer_view.chart not in find_widgets(page)


def test_backend_errors_land_in_the_status_line_and_refresh_reads_again() -> None:
    backend = FakeOversightBackend(fail_overview=BackendDown("the store service is down"))
    page = OversightDashboard(backend)
    assert page.status.level == "error"
    assert "the store service is down" in page.status.text
    backend.fail_overview = None
    button(page, "Refresh").click()
    assert page.status.text == ""
    assert "17" in page.queue_view.text.value
    assert backend.overview_calls == 2


def test_refusals_show_nothing_that_writes() -> None:
    screen = oversight_panel(Refusal("Not an oversight lead here", "alice is a reviewer."))
    assert isinstance(screen, RefusalScreen)
    assert visible_buttons(screen) == []
    assert "Not an oversight lead here" in all_text(screen)
    broken = oversight_panel(FakeOversightBackend(fail_lead=BackendDown("token revoked")))
    assert isinstance(broken, RefusalScreen)
    assert "token revoked" in all_text(broken)
    assert isinstance(oversight_panel(FakeOversightBackend()), OversightDashboard)


def test_formatting_of_durations() -> None:
    assert (seconds(None), seconds(1.25), seconds(600)) == ("\u2013", "1.2 s", "10.0 min")
    assert (minutes(5), minutes(180), minutes(3 * 1440)) == ("5 min", "3.0 h", "3.0 days")
    view = QueueHealthView()
    view.show(None)
    assert "not available" in view.text.value
    stats = ReviewerStatsView()
    assert "No reviewer has decided yet" in stats.table.value


# ---------------------------------------------------------------------------- halt and resume
def test_halt_needs_a_reason_resume_is_disabled_for_the_halter_and_a_refusal_is_shown() -> None:
    """The panel's part: a halt without a reason is not sent, Resume is offered to another
    lead only, and a refusal the backend gives lands in the status line. The rule that the
    halting lead cannot resume is the store's
    (tests/pipelines/store/test_snapshot_and_halt.py); here the fake refuses in its place."""
    shared = SharedSystem()
    backend = FakeOversightBackend(system=shared)
    status = StatusLine()
    control = SystemControl(backend, "max", status)
    assert "Running" in control.banner.value
    button(control, "Halt scoring and retraining").click()
    assert status.level == "error" and "needs a reason" in status.text
    assert shared.events == []  # nothing was sent
    changes: list[bool] = []
    control.on_change(lambda s: changes.append(s.halted))
    control.reason.value = "Drift in incoming applications"
    button(control, "Halt scoring and retraining").click()
    assert shared.events == [("halt", "max")] and shared.reason == "Drift in incoming applications"
    assert changes == [True] and control.halted
    assert "HALTED by max" in control.banner.value
    assert "Drift in incoming applications" in control.banner.value
    resume = button(control, "Resume")
    assert resume.disabled
    assert "a second lead must resume it" in all_text(control)
    resume.click()  # a click that got through anyway: the fake's refusal is shown
    assert status.level == "error" and "cannot resume" in status.text
    assert shared.halted
    # Another lead, on the same system.
    other_status = StatusLine()
    other = SystemControl(
        FakeOversightBackend(me=Reviewer("lena", ("lead",)), system=shared), "lena", other_status
    )
    assert "HALTED by max" in other.banner.value
    assert not button(other, "Resume").disabled
    button(other, "Resume").click()
    assert other_status.level == "success"
    assert shared.events == [("halt", "max"), ("resume", "lena")]
    assert "Running" in other.banner.value


def test_a_halt_on_the_dashboard_reads_the_overview_again() -> None:
    backend = FakeOversightBackend()
    page = OversightDashboard(backend)
    calls = backend.overview_calls
    page.system.reason.value = "Model drift"
    button(page, "Halt scoring and retraining").click()
    assert backend.overview_calls == calls + 1
    assert page.status.level == "success"


# ---------------------------------------------------------------------------- adjudication
def test_a_lead_settles_a_conflict_seeing_the_case_the_model_and_both_reviews() -> None:
    backend = FakeOversightBackend()
    status = StatusLine()
    settled: list[str] = []
    panel = AdjudicationPanel(backend, make_config(), status)
    panel.on_adjudicated(lambda r: settled.append(r.final_label))
    assert panel.selected is not None and panel.selected.item.case_id == "APP-7"
    reviews = panel.reviews.value
    assert "First review (alice): <b>good risk</b>" in reviews
    assert "Second review (bob): <b>bad risk</b>" in reviews
    assert "Model: <b>good risk</b>" in reviews
    card = all_text(panel.case_card)
    assert "Credit amount" in card and "1,169 DM" in card
    panel.comment.value = "Documents confirm the lower risk."
    button(panel, "Settle as bad risk").click()
    assert backend.adjudications == [("APP-7", "0", "Documents confirm the lower risk.")]
    assert settled == ["0"]
    assert status.level == "success" and "APP-7" in status.text
    assert "No conflicts waiting" in panel.summary.value
    assert visible_buttons(panel) == []


def test_the_backends_refusal_to_let_a_reviewer_of_the_case_adjudicate_is_shown() -> None:
    """The store decides who may adjudicate (tests/pipelines/store/test_oversight.py); the
    panel shows the refusal (the fake's, here) and keeps the conflict waiting."""
    backend = FakeOversightBackend(me=Reviewer("alice", ("lead", "reviewer")))
    status = StatusLine()
    panel = AdjudicationPanel(backend, make_config(), status)
    button(panel, "Settle as good risk").click()
    assert backend.adjudications == []
    assert status.level == "error" and "cannot adjudicate" in status.text
    assert panel.selected is not None  # still waiting


def test_settling_on_the_dashboard_updates_the_counts() -> None:
    backend = FakeOversightBackend()
    page = OversightDashboard(backend)
    assert page.adjudication is not None
    calls = backend.overview_calls
    button(page, "Settle as good risk").click()
    assert backend.overview_calls == calls + 1
    assert backend.conflict_items == []


# ---------------------------------------------------------------------------- models
def test_the_comparison_loads_on_demand_and_approve_calls_the_backend() -> None:
    backend = FakeOversightBackend()
    status = StatusLine()
    review = ModelReview(backend, status)
    decided: list[str] = []
    review.on_decided(lambda d: decided.append(d.action))
    assert review.phase == "idle" and backend.comparison_calls == 0
    button(review, "Compare challenger with champion").click()
    assert backend.comparison_calls == 1 and review.phase == "loaded"
    details = review.details.value
    assert "0.731" in details and "0.702" in details  # auc, both models
    assert "female" in details and "0.610" in details and "0.580" in details
    assert "floor" in details
    assert "version 2" in review.summary.value and "trained by dana" in review.summary.value
    assert [i.value for i in images(review)] == [PNG_1PX]
    approve = button(review, "Approve: make it the champion")
    assert not approve.disabled
    approve.click()
    assert backend.approved == ["run-7"] and decided == ["approved"]
    assert status.level == "success" and "Approved" in status.text
    assert "Approve: make it the champion" not in visible_buttons(review)


def test_approve_and_reject_are_disabled_for_the_author_and_a_refusal_is_shown() -> None:
    """The panel's part of four eyes: the author is offered no Approve or Reject, and a
    click that gets through shows the backend's refusal (the fake's here; the store's own
    rule is tested in tests/pipelines/test_oversight_runs.py)."""
    backend = FakeOversightBackend(me=Reviewer("dana", ("lead",)))
    status = StatusLine()
    review = ModelReview(backend, status)
    review.load()
    assert button(review, "Approve: make it the champion").disabled
    assert button(review, "Reject").disabled
    assert "four eyes" in review.why_not.value
    button(review, "Approve: make it the champion").click()  # the fake's refusal is shown
    assert backend.approved == []
    assert status.level == "error" and "trained run run-7" in status.text


def test_a_rejection_needs_a_reason() -> None:
    backend = FakeOversightBackend()
    status = StatusLine()
    review = ModelReview(backend, status)
    review.load()
    button(review, "Reject").click()
    assert backend.rejected == [] and status.level == "error"
    review.reason.value = "Subgroup gap grew for the youngest group."
    button(review, "Reject").click()
    assert backend.rejected == [("run-7", "Subgroup gap grew for the youngest group.")]
    assert status.level == "success"


def test_the_panel_offers_no_approve_for_a_challenger_whose_gate_failed() -> None:
    backend = FakeOversightBackend(comparison_value=make_comparison(gate="rejected"))
    review = ModelReview(backend, StatusLine())
    review.load()
    assert button(review, "Approve: make it the champion").disabled
    assert not button(review, "Reject").disabled
    assert "gate did not pass" in review.why_not.value


def test_no_challenger_says_so() -> None:
    review = ModelReview(FakeOversightBackend(comparison_value=None), StatusLine())
    review.load()
    assert review.phase == "none"
    assert "No challenger waits" in review.summary.value
    assert visible_buttons(review) == ["Check again"]


# ---------------------------------------------------------------------------- manual review
def test_a_case_without_a_prediction_is_decided_by_override_alone() -> None:
    """While the system is halted, new cases reach reviewers without a model prediction:
    the panel says so, Accept is off, an override with a reason decides the case."""
    manual = make_item("c1", score=None, predicted_label=None, prediction_id=None, contributions={})
    backend = FakeBackend(items=[manual])
    clock = FakeClock()
    session = ReviewSession(backend, clock)
    assert "No model prediction for this case" in all_text(session)
    bar = session.decision_bar
    assert bar.accept_button.disabled
    clock.advance(20)
    bar.override_button.click()
    bar.target_buttons.value = "0"
    bar.reason_dropdown.value = "other"
    bar.comment_area.value = "Decided on the documents; no model while halted."
    bar.confirm_override_button.click()
    [decision] = backend.decisions
    assert (decision.action, decision.final_label, decision.prediction_id) == (
        "override",
        "0",
        None,
    )
    assert decision.time_on_item_ms == 20_000
