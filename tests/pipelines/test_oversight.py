"""The oversight backend on a real store (embedded), the choice of a gold set, the charts."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import polars as pl
import pytest

from hilt.pipelines.dashboards.oversight import StoreOversightBackend, open_oversight_backend
from hilt.pipelines.errors import InputError, PermissionDeniedError
from hilt.pipelines.loop.oversight import choose_gold
from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.oversight import ReasonCount, ReviewerStats
from hilt.widgets.oversight.charts import reasons_chart, reviewer_chart, ticks
from tests.conftest import CONFIG, operator, predictions_for, stand_in


def test_a_gold_set_holds_the_wanted_share_of_model_errors() -> None:
    candidates = [f"c{i}" for i in range(10)]
    truth = dict.fromkeys(candidates, "1")
    predicted = {c: ("0" if i % 3 == 0 else "1") for i, c in enumerate(candidates)}  # 4 wrong
    chosen = choose_gold(candidates, truth, predicted, 6, 0.5)
    assert len(chosen) == 6
    assert sum(1 for c in chosen if predicted[c] != truth[c]) == 3
    assert chosen == [c for c in candidates if c in chosen]  # the given order is kept
    # Short of errors: all of them, the rest from the others.
    few = choose_gold(candidates, truth, predicted, 9, 0.9)
    assert sum(1 for c in few if predicted[c] != truth[c]) == 4 and len(few) == 9
    assert choose_gold(candidates, truth, predicted, 3, 0.0) == ["c1", "c2", "c4"]
    with pytest.raises(InputError):
        choose_gold(candidates, truth, predicted, 0, 0.5)


def test_the_charts_are_svg_name_only_reviewers_and_escape_every_text() -> None:
    def stats(name: str, median_s: float | None, rate: float | None) -> ReviewerStats:
        return ReviewerStats(name, 10, 1, 9, 1, rate, None, median_s, 0, 0, None)

    svg = reviewer_chart(
        [stats("alice", 1.2, 1.0), stats("bob", 9.5, 0.7), stats("lena", None, None)],
        {"alice"},
        alert_accept_rate=0.95,
        alert_median_seconds=5.0,
    )
    ElementTree.fromstring(svg)  # well-formed
    assert svg.startswith("<svg") and labels(svg) == ["alice", "bob"]
    assert "alert: accept ≥ 95%, median ≤ 5 s" in svg
    assert ticks(10.45) == [0, 5, 10, 15] and ticks(9.0) == [0, 2, 4, 6, 8, 10]
    assert ticks(0.3) == [0, 0.1, 0.2, 0.3]
    assert ticks(0) == [0, 1]
    bars = reasons_chart([ReasonCount("x", "Other", 2), ReasonCount("y", "Income verified", 7)])
    assert labels(bars) == ["Income verified", "Other"]  # the most frequent on top
    # A name is text, never markup.
    hostile = reviewer_chart(
        [stats("<script>x</script>", 2.0, 0.5)],
        set(),
        alert_accept_rate=0.95,
        alert_median_seconds=5.0,
    )
    assert "<script>" not in hostile and labels(hostile) == ["<script>x</script>"]


def labels(svg: str) -> list[str]:
    """The chart's labels (reviewer names, reasons), top to bottom as drawn."""
    root = ElementTree.fromstring(svg)
    texts = [t for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("class")]
    return [t.text or "" for t in texts]


@pytest.fixture
def ws(tmp_path: Path, cases_frame: pl.DataFrame) -> Workspace:
    """Every case double-reviewed; alice and bob disagree on one case."""
    config = tmp_path / "hilt.toml"
    config.write_text(
        CONFIG.read_text().replace("double_review_share = 0.0", "double_review_share = 1.0")
    )
    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, config)
    new = cases_frame.head(30).drop("risk")
    operator(ws).ingest_cases(new)
    # Labelled history, never queued: the snapshot the stand-in model is registered on.
    operator(ws).ingest_cases(cases_frame.slice(30, 30))
    model = stand_in(ws)
    operator(ws).add_predictions(model.model, predictions_for(new), model.sha256)
    return ws


def test_the_backend_settles_a_conflict_and_halts_as_the_identified_lead(ws: Workspace) -> None:
    alice, bob = open_store_as(ws, Identity(name="alice")), open_store_as(ws, Identity(name="bob"))
    leased = alice.next_case()
    assert leased is not None
    cid, model = leased.case.case_id, leased.case.predictions[-1].label
    alice.record_decision(DecisionRequest(case_id=cid, action="accept", time_on_item_ms=800))
    assert bob.next_case().case.case_id == cid  # type: ignore[union-attr]
    bob.record_decision(
        DecisionRequest(
            case_id=cid,
            action="override",
            final_label="0" if model == "1" else "1",
            reason_code="data-error",
            time_on_item_ms=7000,
        )
    )
    refused = open_oversight_backend(str(ws.root), env={"JUPYTERHUB_USER": "bob"})
    assert isinstance(refused, Refusal) and "lead role" in refused.message
    backend = open_oversight_backend(str(ws.root), env={"JUPYTERHUB_USER": "max"})
    assert isinstance(backend, StoreOversightBackend)
    overview = backend.overview()
    assert overview.queue.adjudication_waiting == 1
    oversight = ws.settings().oversight
    assert (overview.alert_accept_rate, overview.alert_median_seconds) == (
        oversight.alert_accept_rate,
        oversight.alert_median_seconds,
    )
    assert {"alice", "bob"} <= {r.reviewer for r in overview.reviewers}
    assert [r.label for r in overview.reasons] == [ws.settings().review.reason_codes["data-error"]]
    [conflict] = backend.conflicts()
    settings = ws.settings()
    assert set(conflict.item.values) == set(settings.fields.display)  # nothing else shown
    assert not set(conflict.item.values) & set(settings.fields.personal)
    assert (conflict.first_reviewer, conflict.second_reviewer) == ("alice", "bob")
    receipt = backend.adjudicate(cid, model, "Both documents checked.")
    assert (receipt.case_id, receipt.final_label) == (cid, model)
    assert backend.conflicts() == ()
    state = backend.halt("Checking the scores of the last batch")
    assert state.halted and state.changed_by == "max"
    with pytest.raises(PermissionDeniedError):
        backend.resume()
    lena = open_oversight_backend(str(ws.root), env={"HTTP_X_FORWARDED_USER": "lena"})
    assert isinstance(lena, StoreOversightBackend)
    assert not lena.resume().halted


@pytest.mark.obligation("AI Act 73", "AI Act 14")
def test_the_backend_shows_open_incidents_and_a_second_lead_closes_a_serious_one(
    workspace: Workspace,
) -> None:
    from hilt.widgets.contracts.oversight import IncidentBackend

    lena_store = open_store_as(workspace, Identity(name="lena"))
    opened = lena_store.open_incident("serious_incident", "Scores wrong for one branch.")
    lena_store.open_incident("malfunction", "Slow.", "2020-01-01T00:00:00Z")
    late = lena_store.open_incident("personal_data_breach", "Lost laptop.", "2020-01-01T00:00Z")
    lena = open_oversight_backend(str(workspace.root), env={"JUPYTERHUB_USER": "lena"})
    max_ = open_oversight_backend(str(workspace.root), env={"JUPYTERHUB_USER": "max"})
    assert isinstance(lena, StoreOversightBackend) and isinstance(max_, StoreOversightBackend)
    assert isinstance(max_, IncidentBackend)
    views = max_.open_incidents()
    assert views[0].incident_id == late.incident_id and views[0].overdue  # overdue first
    assert {v.incident_id for v in views if not v.overdue} >= {opened.incident_id}
    mine = {v.incident_id: v for v in lena.open_incidents()}[opened.incident_id]
    assert not mine.can_close and "four eyes" in (mine.why_not or "")
    with pytest.raises(PermissionDeniedError):
        lena.close_incident(opened.incident_id, "Mine.")
    told = max_.record_told(opened.incident_id, "Market surveillance authority", None)
    assert told.told and told.told[0].startswith("Market surveillance authority at ")
    closed = max_.close_incident(opened.incident_id, "Fixed and reported.")
    assert closed.incident_id == opened.incident_id
    assert opened.incident_id not in {v.incident_id for v in max_.open_incidents()}
