"""CaseCard: the case as the reviewer may see it, and nothing more (data minimisation).

Only the fields listed in ``ReviewConfig.display`` are rendered, in that order, with their
labels and format strings. Anything else the item carries (other values, feature values,
ids) is never rendered: the card reads ``item.values`` only through the display list.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.colours import MUTED
from hilt.widgets.contracts.common import FieldSpec, ReviewConfig, ReviewItem

#: Shown for a missing value (None, NaN or an empty string).
MISSING = "—"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _format_candidates(value: Any) -> Iterator[Any]:
    """The value itself, then numeric readings of a text value ("1169" → 1169, 1169.0)."""
    yield value
    if isinstance(value, str):
        for convert in (int, float):
            try:
                yield convert(value.strip())
            except ValueError:
                continue


def format_value(value: Any, fmt: str | None) -> str:
    """Format one display value; never raises.

    ``None``/NaN/empty → "—". With a format string, the value is tried as given and then as
    a number (stores often hand values over as text); if nothing fits, ``str(value)``.
    """
    if _is_missing(value):
        return MISSING
    if fmt:
        for candidate in _format_candidates(value):
            try:
                return fmt.format(candidate)
            except Exception:  # a bad format string or value must not break the panel
                continue
    return str(value)


def _row(spec: FieldSpec, item: ReviewItem) -> str:
    text = format_value(item.values.get(spec.name), spec.format)
    return (
        '<tr><th style="text-align:left;font-weight:500;padding:2px 16px 2px 0;'
        f'color:{MUTED};white-space:nowrap">'
        f"{html.escape(spec.label)}</th>"
        f'<td style="padding:2px 0">{html.escape(text)}</td></tr>'
    )


class CaseCard(widgets.VBox):
    """Shows the display fields of the current case: ``show(item)``; ``show(None)`` clears."""

    def __init__(self, config: ReviewConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.add_class("hilt-case-card")
        self._item: ReviewItem | None = None
        self._table = widgets.HTML()
        self._compose()

    @property
    def item(self) -> ReviewItem | None:
        return self._item

    def show(self, item: ReviewItem | None) -> None:
        self._item = item
        self._compose()

    def _compose(self) -> None:
        item = self._item
        children: tuple[Any, ...] = ()
        if item is None:
            self._table.value = ""
        else:
            rows = "".join(_row(spec, item) for spec in self.config.display)
            self._table.value = (
                '<div style="font-weight:600;margin-bottom:4px">Case</div>'
                f'<table style="border-collapse:collapse">{rows}</table>'
            )
            children = (self._table,)
        self.children = children
