"""Every character hilt.widgets can put on a page is one the reference font covers.

A glyph no installed font has renders as an empty box (the refusal's lock did: U+1F512).
Icons are inline SVG (widgets/common/icons.py); text keeps to what DejaVu Sans covers,
the font matplotlib installs with the project and Jupyter's theme falls back to on Linux.
Docstrings are not shown, so they are not checked; every other string literal is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib
from matplotlib.ft2font import FT2Font

import hilt.widgets

WIDGETS = Path(hilt.widgets.__file__).resolve().parent
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def shown_characters(root: Path) -> dict[str, set[str]]:
    """Non-ASCII character → the files whose string literals (not docstrings) use it."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in skip:
                    continue
                for ch in node.value:
                    if ord(ch) > 127:
                        found.setdefault(ch, set()).add(str(path.relative_to(root)))
    return found


def covered(font: Path) -> set[int]:
    return set(FT2Font(str(font)).get_charmap())


def test_every_shown_character_is_in_the_reference_font() -> None:
    cmap = covered(FONT)
    used = shown_characters(WIDGETS)
    assert "—" in used  # the scan sees the f-strings and constants the widgets show
    missing = {
        f"U+{ord(ch):04X} {ch!r}": sorted(files)
        for ch, files in used.items()
        if ord(ch) not in cmap
    }
    assert not missing, f"glyphs no theme font covers (use widgets/common/icons.py): {missing}"


def test_the_check_catches_the_old_lock_glyph(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text('"""doc 🔒 is fine."""\nICON = "🔒"\n', encoding="utf-8")
    used = shown_characters(tmp_path)
    assert set(used) == {"🔒"}
    assert ord("🔒") not in covered(FONT)
