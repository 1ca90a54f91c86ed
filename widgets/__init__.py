"""hilt.widgets: ipywidget components for reviewers, leads and auditors.

Widgets depend only on small protocols (``hilt.widgets.contracts``), never on duckdb,
mlflow or xgboost, so dashboards start fast and tests use fakes. Each component is a Box that only
coordinates what it is given; settings are traitlets; callbacks are registered with
``on_…(fn)``; errors go to a ``StatusLine`` (print() is invisible in Voila).

Layout: ``contracts/`` (pure: protocols, records, the explanation renderer; the only part
``hilt.pipelines`` imports), ``review/``, ``oversight/``, ``audit/`` (one module per
component, grouped by dashboard) and ``common/`` (status line, refusal screen, tables,
colours).

Reviewer experience:

- ``ReviewSession(backend, clock=time.monotonic)``: the reviewer's panel over a
  ``ReviewBackend`` (leases, progress, timing, blind-first, undo, shortcuts, status line).
- ``review_panel(access)``: for dashboards; a ``ReviewSession`` for a ``ReviewBackend``, a
  ``RefusalScreen`` for a ``Refusal`` (``hilt.widgets.review.panel``); never raises.
- ``CaseCard(config)``: only the display fields the config allows, formatted.
- ``PredictionView(config)``: predicted class, score with an uncertainty cue, top reason
  codes as a signed bar chart, out-of-distribution badge; ``hide()`` / ``reveal()``.
- ``DecisionBar(config, status=None)``: Accept, Override, Flag, Skip, Undo and their
  panels; emits ``DecisionIntent`` to ``on_decision(fn)``.
- ``BlindJudgement(config, status=None)``: the reviewer's own judgement before the model's
  output is shown; ``on_judgement(fn)``.
- ``KeyboardShortcuts(class_labels)``: a / o / f / s / u and digits, ignored while typing
  (anywidget, inline ES module, nothing from a CDN); ``on_shortcut(fn)``, ``handle_key()``.
- ``StatusLine()``: one line of plain text for info, success and errors.
- ``RefusalScreen(title, message)``: a friendly refusal with nothing that writes.

The names above are loaded when first used (PEP 562), not when the package is imported:
importing ``hilt.widgets.contracts`` (as the store service does) goes through this file and
must not load ipywidgets.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hilt.widgets.common.refusal import RefusalScreen
    from hilt.widgets.common.status import StatusLine
    from hilt.widgets.review.blind_judgement import BlindJudgement
    from hilt.widgets.review.case_card import CaseCard, format_value
    from hilt.widgets.review.decision_bar import DecisionBar, DecisionIntent
    from hilt.widgets.review.keyboard import KeyboardShortcuts, Shortcut
    from hilt.widgets.review.panel import review_panel
    from hilt.widgets.review.prediction_view import PredictionView
    from hilt.widgets.review.session import ReviewSession

#: Public name → the module that defines it.
_HOMES = {
    "BlindJudgement": "hilt.widgets.review.blind_judgement",
    "CaseCard": "hilt.widgets.review.case_card",
    "DecisionBar": "hilt.widgets.review.decision_bar",
    "DecisionIntent": "hilt.widgets.review.decision_bar",
    "KeyboardShortcuts": "hilt.widgets.review.keyboard",
    "PredictionView": "hilt.widgets.review.prediction_view",
    "RefusalScreen": "hilt.widgets.common.refusal",
    "ReviewSession": "hilt.widgets.review.session",
    "Shortcut": "hilt.widgets.review.keyboard",
    "StatusLine": "hilt.widgets.common.status",
    "format_value": "hilt.widgets.review.case_card",
    "review_panel": "hilt.widgets.review.panel",
}

__all__ = [
    "BlindJudgement",
    "CaseCard",
    "DecisionBar",
    "DecisionIntent",
    "KeyboardShortcuts",
    "PredictionView",
    "RefusalScreen",
    "ReviewSession",
    "Shortcut",
    "StatusLine",
    "format_value",
    "review_panel",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
