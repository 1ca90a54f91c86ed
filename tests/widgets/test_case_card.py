"""CaseCard shows the display fields and nothing else (data minimisation)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hilt.widgets import CaseCard, ReviewSession, format_value
from hilt.widgets.contracts.common import FieldSpec
from tests.widgets.fakes import FakeBackend, FakeClock, make_config, make_item
from tests.widgets.tree import all_text

PERSONAL_VALUE = "Erika Mustermann-Zweig"
FEATURE_ONLY_VALUE = "73.25-secret-feature"


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1169, "{:,.0f} DM", "1,169 DM"),
        ("1169", "{:,.0f} DM", "1,169 DM"),  # text from the store, read as a number
        ("12", "{} months", "12 months"),
        (None, "{:,.0f} DM", "—"),
        (float("nan"), "{:.1f}", "—"),
        ("  ", None, "—"),
        ("car", "{:,.0f} DM", "car"),  # the format does not fit: the plain value
        (5, "{missing}", "5"),  # a broken format string never breaks the panel
        (5, "{:d", "5"),
        ("radio/TV", None, "radio/TV"),
    ],
)
def test_format_value_is_robust(value: object, fmt: str | None, expected: str) -> None:
    assert format_value(value, fmt) == expected


def test_card_shows_labels_and_formatted_values_in_display_order() -> None:
    card = CaseCard(make_config())
    card.show(make_item("c1", values={"amount": "1169", "term": 24, "use": None}))
    text = all_text(card)
    assert "Credit amount" in text and "1,169 DM" in text
    assert "Duration" in text and "24 months" in text
    assert "Purpose" in text and "—" in text
    assert text.index("Credit amount") < text.index("Duration") < text.index("Purpose")


def test_card_escapes_html_in_values() -> None:
    card = CaseCard(make_config())
    card.show(make_item("c1", values={"amount": 1, "term": 1, "use": "<script>x</script>"}))
    text = all_text(card)
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_a_value_outside_the_display_list_appears_nowhere_in_the_panel() -> None:
    item = make_item(
        "c1",
        values={"amount": 1000, "term": 12, "use": "car", "full_name": PERSONAL_VALUE},
        features={"amount": 1000, "term": 12, "use": "car", "age_like": FEATURE_ONLY_VALUE},
    )
    card = CaseCard(make_config())
    card.show(item)
    assert PERSONAL_VALUE not in all_text(card)

    # The whole reviewer panel, with the model's output revealed, holds neither the
    # undeclared value nor a raw feature value; nor the case id.
    session = ReviewSession(FakeBackend(items=[item]), clock=FakeClock())
    text = all_text(session)
    assert session.item is not None and session.item.case_id == "c1"
    assert PERSONAL_VALUE not in text
    assert FEATURE_ONLY_VALUE not in text
    assert "full_name" not in text


def test_no_case_means_an_empty_card() -> None:
    card = CaseCard(make_config())
    card.show(make_item("c1"))
    card.show(None)
    assert card.children == ()


def test_card_follows_the_config_not_the_item() -> None:
    config = replace(make_config(), display=(FieldSpec("use", "Purpose"),))
    card = CaseCard(config)
    card.show(make_item("c1"))
    text = all_text(card)
    assert "Purpose" in text and "car" in text
    assert "1,169" not in text and "1169" not in text
