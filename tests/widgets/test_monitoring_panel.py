"""The oversight dashboard's monitoring panel (EU AI Act Arts. 72, 26(5)) with a fake
backend: the latest verdict in words and colour, each finding, and the halt from there."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from hilt.widgets.contracts.monitoring import MonitoringFinding, MonitoringSummary
from hilt.widgets.oversight.dashboard import OversightDashboard
from hilt.widgets.oversight.monitoring_panel import MonitoringPanel, halt_reason
from tests.widgets.fakes import FakeOversightBackend
from tests.widgets.test_oversight_dashboard import button
from tests.widgets.tree import all_text, visible_buttons

BREACHED = MonitoringSummary(
    run_id="run-7",
    seq=42,
    at="2026-12-07T01:00:00Z",
    model_version="hilt-german-credit/v1",
    window_days=30,
    cases=300,
    worst="breach",
    findings=(
        MonitoringFinding("feature_drift", "credit_amount", "psi", 0.31, 0.25, "breach"),
        MonitoringFinding("score_drift", None, "psi", 0.12, 0.1, "warning"),
    ),
    notebook="20261207T010000Z-monitor-run-7.ipynb",
)


@dataclass
class MonitoredBackend(FakeOversightBackend):
    summary: MonitoringSummary | None = None

    def latest_monitoring(self) -> MonitoringSummary | None:
        return self.summary


@pytest.mark.obligation("AI Act 72", "AI Act 26(5)")
def test_a_breach_shows_with_its_findings_and_a_lead_halts_from_the_panel() -> None:
    backend = MonitoredBackend(summary=BREACHED)
    page = OversightDashboard(backend)
    assert page.monitoring is not None
    text = all_text(page.monitoring)
    assert "Thresholds breached" in text
    assert "credit_amount" in text and "feature_drift" in text and "scores" in text
    assert "20261207T010000Z-monitor-run-7.ipynb" in text
    button(page.monitoring, "Halt because of this run").click()
    assert backend.system.events == [("halt", "max")]
    assert backend.system.reason == halt_reason(BREACHED)
    assert "run-7" in str(backend.system.reason) and "feature_drift" in str(backend.system.reason)
    assert page.system.halted


def test_no_breach_offers_no_halt_and_never_run_says_so() -> None:
    quiet = MonitoredBackend(summary=dataclasses.replace(BREACHED, worst="none", findings=()))
    panel = MonitoringPanel(quiet)
    assert "No threshold crossed" in all_text(panel)
    assert "Halt because of this run" not in visible_buttons(panel)
    never = MonitoringPanel(MonitoredBackend())
    assert "has not run yet" in all_text(never)


def test_a_backend_without_monitoring_shows_no_panel() -> None:
    assert OversightDashboard(FakeOversightBackend()).monitoring is None
