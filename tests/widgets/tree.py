"""Look at a widget tree the way the browser could: every string in every trait."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ipywidgets as widgets


def _strings(value: Any, seen: set[int]) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, widgets.Widget):
        yield from widget_strings(value, seen)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, seen)
            yield from _strings(v, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _strings(v, seen)


def widget_strings(root: widgets.Widget, seen: set[int] | None = None) -> Iterator[str]:
    """Every string value of every trait of ``root`` and of every widget reachable from it
    (children, layout, style, …), recursively."""
    seen = set() if seen is None else seen
    if id(root) in seen:
        return
    seen.add(id(root))
    for name in root.trait_names():
        if name in ("comm", "log"):
            continue
        yield from _strings(getattr(root, name), seen)


def all_text(root: widgets.Widget) -> str:
    return "\n".join(widget_strings(root))


def find_widgets(root: widgets.Widget) -> Iterator[widgets.Widget]:
    """``root`` and every widget below it through ``children``."""
    yield root
    for child in getattr(root, "children", ()):
        yield from find_widgets(child)


def visible_buttons(root: widgets.Widget) -> list[str]:
    """Descriptions of the buttons currently in the tree."""
    return [w.description for w in find_widgets(root) if isinstance(w, widgets.Button)]
