"""One button per target class: the reviewer's blind judgement, the lead's adjudication."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from hilt.widgets.contracts.common import ReviewConfig


def class_buttons(
    config: ReviewConfig,
    description: Callable[[str], str],
    tooltip: Callable[[int, str], str],
    choose: Callable[[str], object],
) -> dict[str, widgets.Button]:
    """Class → its button, in the config's order. A button reads ``description(label)``,
    explains itself with ``tooltip(index, label)``, and a click calls ``choose(cls)``."""
    buttons: dict[str, widgets.Button] = {}
    for i, cls in enumerate(config.classes):
        label = config.class_label(cls)
        button = widgets.Button(
            description=description(label),
            tooltip=tooltip(i, label),
            layout=widgets.Layout(width="auto"),
        )
        button.on_click(lambda _b, cls=cls: choose(cls))
        buttons[cls] = button
    return buttons
