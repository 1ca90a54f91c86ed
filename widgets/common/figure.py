"""A figure the backend rendered (PNG bytes), as a widget."""

from __future__ import annotations

import ipywidgets as widgets


def figure_image(png: bytes | None, max_width: str = "640px") -> widgets.Image | None:
    """The PNG as an Image at most ``max_width`` wide; None when there is nothing to show."""
    if not png:
        return None
    img = widgets.Image(value=png, format="png")
    img.layout.max_width = max_width
    # No tooltip: the Image view of ipywidgets 8 fails to render with one (it reads a
    # description that an Image does not have); the section headings say what is shown.
    img.add_class("hilt-figure")
    return img
