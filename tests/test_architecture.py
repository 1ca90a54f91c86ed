"""House rules that a test can see: the dependency direction and the use-case boundary."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = [REPO / "pipelines", REPO / "widgets"]


def python_files(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_names_a_column_of_the_demo_data_set() -> None:
    """A different tabular use case must need only a different hilt.toml."""
    config = tomllib.loads((REPO / "data" / "hilt.toml").read_text())
    names = set(config["columns"]) | {
        config["use_case"]["id_column"],
        config["use_case"]["subject_column"],
        config["target"]["column"],
    }
    # Words that are also ordinary English are checked as quoted strings only.
    offenders = []
    for path in python_files(*CODE_DIRS):
        text = path.read_text(encoding="utf-8")
        for name in sorted(names):
            if re.search(rf"[\"']{re.escape(name)}[\"']", text):
                offenders.append(f"{path.relative_to(REPO)} names {name!r}")
    assert offenders == []


def test_widgets_never_import_the_heavy_backends() -> None:
    bad = []
    for path in python_files(REPO / "widgets"):
        for mod in imported_modules(path):
            if mod.split(".")[0] in {"duckdb", "mlflow", "xgboost"} or mod.startswith(
                "hilt.pipelines"
            ):
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert bad == []


def test_imports_go_through_the_hilt_root() -> None:
    bad = []
    for path in python_files(*CODE_DIRS, REPO / "tests"):
        for mod in imported_modules(path):
            if mod.split(".")[0] in {"pipelines", "widgets"}:
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert bad == []
