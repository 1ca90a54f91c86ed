"""PredictionView: label, score with uncertainty cue, reason codes, OOD badge, hide/reveal."""

from __future__ import annotations

import pytest

from hilt.widgets import PredictionView
from tests.widgets.fakes import make_config, make_item
from tests.widgets.tree import all_text


def test_shows_predicted_class_label_and_score() -> None:
    view = PredictionView(make_config())
    view.show(make_item("c1", score=0.8731, predicted_label="1"))
    text = all_text(view)
    assert "good risk" in text
    assert "0.87" in text
    assert "threshold 0.50" in text
    assert view.model_visible


@pytest.mark.obligation("AI Act 13")
def test_uncertain_badge_near_the_threshold_only() -> None:
    view = PredictionView(make_config())
    view.show(make_item("c1", score=0.53))
    assert ">uncertain<" in all_text(view)
    view.show(make_item("c1", score=0.95))
    assert ">uncertain<" not in all_text(view)
    view.uncertain_margin = 0.5
    assert ">uncertain<" in all_text(view)


@pytest.mark.obligation("AI Act 13", "AI Act 14(4)(c)")
def test_top_five_reasons_by_absolute_contribution_bias_ignored() -> None:
    contributions = {
        "bias": 9.0,
        "amount": 0.4,
        "term": -0.9,
        "f3": 0.05,
        "f4": -0.3,
        "f5": 0.2,
        "f6": 0.01,
        "f7": 0.1,
    }
    view = PredictionView(make_config())
    item = make_item("c1", contributions=contributions)
    view.show(item)
    top = view.top_contributions(item)
    assert [name for name, _ in top] == ["term", "amount", "f4", "f5", "f7"]
    text = all_text(view)
    assert "Duration" in text  # the display label of "term"
    assert "Credit amount" in text
    assert "-0.90" in text and "+0.40" in text
    assert "+9.00" not in text and "f6" not in text and "f3" not in text
    assert "#b91c1c" in view.reasons.value and "#15803d" in view.reasons.value


@pytest.mark.obligation("AI Act 13", "AI Act 14(4)(a)")
def test_ood_badge_names_features_outside_the_training_range() -> None:
    view = PredictionView(make_config())
    view.show(make_item("c1", features={"amount": 1000.0, "term": 12, "use": "car"}))
    assert "out of distribution" not in all_text(view)

    view.show(make_item("c1", features={"amount": 95000.0, "term": 12, "use": "yacht"}))
    text = all_text(view)
    assert "out of distribution" in text
    assert "Credit amount" in text and "Purpose" in text
    assert "yacht" not in text and "95000" not in text  # the feature, never the value


def test_hidden_view_holds_none_of_the_model_output() -> None:
    view = PredictionView(make_config())
    view.hide()
    view.show(make_item("c1", score=0.8731, features={"amount": 99999.0}))
    text = all_text(view)
    assert "0.87" not in text
    assert "good risk" not in text
    assert "out of distribution" not in text
    assert "Duration" not in text
    assert "hidden" in text
    assert not view.model_visible
    view.reveal()
    assert "0.87" in all_text(view)
    assert view.model_visible


def test_no_prediction() -> None:
    view = PredictionView(make_config())
    item = make_item("c1", score=None, predicted_label=None, prediction_id=None, contributions={})
    view.show(item)
    assert "No model prediction" in all_text(view)
    assert not view.model_visible
