"""widgets/contracts is pure: importing it (as the store service and the command line do)
loads no UI library, and it imports nothing but the standard library and itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hilt.widgets

CONTRACTS = Path(__file__).resolve().parents[2] / "widgets" / "contracts"
UI_LIBRARIES = ("ipywidgets", "anywidget", "traitlets")
MODULES = ["hilt.widgets", "hilt.widgets.contracts"] + [
    f"hilt.widgets.contracts.{p.stem}"
    for p in sorted(CONTRACTS.glob("*.py"))
    if p.stem != "__init__"
]


@pytest.mark.parametrize("module", MODULES)
def test_importing_leaves_the_ui_libraries_out(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"print(','.join(sorted(m for m in {UI_LIBRARIES!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "", f"import {module} loads {done.stdout.strip()}"


def test_contracts_import_only_the_standard_library_and_themselves() -> None:
    bad = []
    for path in sorted(CONTRACTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and not name.startswith(
                    "hilt.widgets.contracts"
                ):
                    bad.append(f"{path.name} imports {name}")
    assert bad == []


def test_the_package_root_still_offers_its_public_names() -> None:
    """``from hilt.widgets import ReviewSession`` works; the names load on first use."""
    for name in hilt.widgets.__all__:
        value = getattr(hilt.widgets, name)
        assert value.__name__ == name
    assert set(hilt.widgets.__all__) <= set(dir(hilt.widgets))
    with pytest.raises(AttributeError):
        _ = hilt.widgets.NoSuchWidget
