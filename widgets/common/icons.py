"""The dashboards' icons as inline SVG, drawn in the text's colour (``currentColor``).

No icon is a font glyph: a glyph no installed font covers renders as an empty box (the
refusal's lock did). Text may use only characters the reference font covers
(``tests/widgets/test_glyphs.py`` checks every string of hilt.widgets against DejaVu Sans,
the font matplotlib installs with the project and Jupyter's theme falls back to).
"""

from __future__ import annotations


def _svg(body: str, size: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="{size}" '
        f'height="{size}" fill="none" stroke="currentColor" stroke-width="2" '
        f'stroke-linecap="round" stroke-linejoin="round" role="img" aria-label="{label}" '
        f'class="hilt-icon" style="vertical-align:-0.15em">{body}</svg>'
    )


def lock_svg(size: str = "1em") -> str:
    """A padlock: the refusal screen's icon."""
    return _svg(
        '<rect x="4" y="11" width="16" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/>',
        size,
        "locked",
    )


def warning_svg(size: str = "1em") -> str:
    """A triangle with an exclamation mark: the unproven-identity banner's icon."""
    return _svg(
        '<path d="M12 3 2 21h20L12 3z"/><path d="M12 10v5"/><path d="M12 18h.01"/>',
        size,
        "warning",
    )
