"""The explanation fragment: a pure function of the stored prediction and its context, the
same bytes as the prediction view shows, and recorded by the review session."""

from __future__ import annotations

import json

import pytest

from hilt.widgets import PredictionView, ReviewSession
from hilt.widgets.contracts.explanation import (
    RENDERER,
    ExplanationContext,
    OutOfRange,
    StoredPrediction,
    explanation_sha256,
    render_explanation,
)
from tests.widgets.fakes import FakeBackend, FakeClock, make_config, make_item

PRED = StoredPrediction(
    predicted_label="1",
    score=0.8731,
    contributions={"term": -0.25, "amount": 0.1, "bias": 3.0},
)
CTX = ExplanationContext(
    threshold=0.5,
    uncertain_margin=0.1,
    top_n=5,
    positive_class="1",
    class_labels={"1": "good risk"},
    feature_labels={"amount": "Credit amount", "term": "Duration"},
    out_of_range=(OutOfRange("amount", low=250.0, high=20000.0),),
)
#: sha256 of render_explanation(PRED, CTX) under hilt-explanation/1. Released renderers never
#: change their output (see hilt.widgets.contracts.explanation): if this fails, the rendering of
#: recorded decisions changed, and they no longer re-render byte for byte.
PINNED_SHA256 = "bf055456b93152d7a2617f9ce44e0c0b6e4dfdaee91c229ec1e1cce3243540f2"


def test_rendering_is_a_pure_function_of_prediction_and_context() -> None:
    a = render_explanation(PRED, CTX)
    # A context rebuilt from its recorded JSON, and contributions in another order.
    again = ExplanationContext.from_dict(json.loads(json.dumps(CTX.to_dict())))
    shuffled = StoredPrediction("1", 0.8731, dict(reversed(list(PRED.contributions.items()))))
    b = render_explanation(shuffled, again)
    assert a.html == b.html
    assert a.sha256 == b.sha256 == explanation_sha256(a.html)
    assert "good risk" in a.html and "Duration" in a.html and "out of distribution" in a.html


def test_the_released_renderer_still_renders_as_released() -> None:
    assert CTX.renderer == RENDERER == "hilt-explanation/1"
    assert render_explanation(PRED, CTX).sha256 == PINNED_SHA256


@pytest.mark.parametrize(
    "change",
    [
        {"score": 0.8741},
        {"predicted_label": "0"},
        {"contributions": {"term": -0.26, "amount": 0.1}},
    ],
)
def test_another_prediction_gives_another_hash(change: dict[str, object]) -> None:
    fields = {"predicted_label": "1", "score": 0.8731, "contributions": PRED.contributions}
    other = StoredPrediction(**{**fields, **change})  # type: ignore[arg-type]
    assert render_explanation(other, CTX).sha256 != render_explanation(PRED, CTX).sha256


def test_an_unknown_renderer_version_is_refused() -> None:
    ctx = ExplanationContext.from_dict({**CTX.to_dict(), "renderer": "hilt-explanation/99"})
    with pytest.raises(ValueError, match="unknown explanation renderer"):
        render_explanation(PRED, ctx)


def test_a_malformed_context_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not an explanation context"):
        ExplanationContext.from_dict({"renderer": RENDERER})


def test_the_view_shows_exactly_the_fragment_it_reports() -> None:
    view = PredictionView(make_config())
    item = make_item("c1", features={"amount": 95000.0, "term": 12, "use": "yacht"})
    view.show(item)
    shown = view.shown_explanation()
    assert shown is not None
    on_screen = "".join(w.value for w in view.children)
    assert explanation_sha256(on_screen) == shown.sha256
    # The context holds names and ranges, never the case's values.
    text = json.dumps(shown.context)
    assert "95000" not in text and "yacht" not in text
    assert [o["feature"] for o in shown.context["out_of_range"]] == ["amount", "use"]
    # Rendered again from the stored prediction and the context alone: the same bytes.
    again = render_explanation(
        StoredPrediction(item.predicted_label, item.score, item.contributions),
        ExplanationContext.from_dict(shown.context),
    )
    assert again.html == on_screen


def test_a_hidden_view_reports_no_explanation() -> None:
    view = PredictionView(make_config())
    view.hide()
    view.show(make_item("c1"))
    assert view.shown_explanation() is None
    view.reveal()
    assert view.shown_explanation() is not None
    view.show(make_item("c2", score=None, predicted_label=None, contributions={}))
    assert view.shown_explanation() is None


def test_settings_change_the_context_and_the_hash() -> None:
    view = PredictionView(make_config())
    view.show(make_item("c1", score=0.55))
    first = view.shown_explanation()
    view.uncertain_margin = 0.01
    second = view.shown_explanation()
    assert first is not None and second is not None
    assert first.sha256 != second.sha256
    assert second.context["uncertain_margin"] == 0.01


def test_the_session_records_what_the_reviewer_saw_with_each_decision() -> None:
    backend = FakeBackend(items=[make_item("c1"), make_item("c2")])
    clock = FakeClock()
    session = ReviewSession(backend, clock, min_dwell_ms=0)
    on_screen = "".join(w.value for w in session.prediction_view.children)
    session.decision_bar.press("accept")
    session.decision_bar.press("skip")
    session.decision_bar.press("undo")
    accept, skip, undo = backend.decisions
    assert accept.explanation_sha256 == explanation_sha256(on_screen)
    assert accept.explanation_context is not None
    assert accept.explanation_context["renderer"] == RENDERER
    assert skip.explanation_sha256 is not None and skip.case_id == "c2"
    # An undo compensates; it is not a decision on an explanation.
    assert undo.action == "undo"
    assert undo.explanation_sha256 is None and undo.explanation_context is None


def test_a_blind_judgement_carries_no_explanation() -> None:
    backend = FakeBackend(config=make_config(blind_first=True), items=[make_item("c1")])
    session = ReviewSession(backend, FakeClock(), min_dwell_ms=0)
    session.blind_judgement.choose("0")
    session.decision_bar.press("accept")
    blind, accept = backend.decisions
    assert blind.action == "blind" and not blind.model_shown
    assert blind.explanation_sha256 is None and blind.explanation_context is None
    assert accept.model_shown and accept.explanation_sha256 is not None
