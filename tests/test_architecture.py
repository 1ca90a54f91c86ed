"""House rules that a test can see: the dependency direction between the rooms, where the
heavy libraries may be imported, the use-case boundary, and no reaching into another
module's private names (../shared/ARCHITECTURE.md, "Rooms").

Imports are read from the source (``ast``), every form counted: ``import x``,
``from x import y``, relative imports resolved against the module's package, and
``from hilt import pipelines`` / ``from hilt.pipelines import store`` as the modules they
name.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"pipelines": "hilt.pipelines", "widgets": "hilt.widgets"}


def python_files(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.py"))


def module_name(path: Path) -> str:
    """hilt.pipelines.store.core for pipelines/store/core.py (and the package for __init__)."""
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    parts[0] = ROOTS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class Imported:
    module: str
    #: The names taken from it (``from module import a, b``); empty for ``import module``.
    names: tuple[str, ...]
    line: int


def imports(path: Path, module: str | None = None) -> list[Imported]:
    """Every import of ``path`` (the module ``module``, by default the one at that path),
    relative ones resolved; ``from pkg import sub`` also counts as an import of ``pkg.sub``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[Imported] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Imported(a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = tuple(a.name for a in node.names)
            found.append(Imported(module, names, node.lineno))
            found += [Imported(f"{module}.{n}", (), node.lineno) for n in names]
    return found


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


CODE = python_files(REPO / "pipelines", REPO / "widgets")


def offenders(allowed: str, library: str) -> list[str]:
    """Modules outside ``allowed`` (a module or a package) that import ``library``."""
    return [
        f"{path.relative_to(REPO)}:{i.line} imports {i.module}"
        for path in CODE
        if not under(module_name(path), allowed)
        for i in imports(path)
        if under(i.module, library)
    ]


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("duckdb", "hilt.pipelines.store"),
        ("mlflow", "hilt.pipelines.loop.tracking"),
        ("xgboost", "hilt.pipelines.loop.model"),
        ("papermill", "hilt.pipelines.loop.runner"),
    ],
)
def test_a_heavy_library_is_imported_only_in_its_room(library: str, allowed: str) -> None:
    assert offenders(allowed, library) == []


def test_widgets_never_import_pipelines_nor_the_heavy_backends() -> None:
    bad = [
        f"{path.relative_to(REPO)}:{i.line} imports {i.module}"
        for path in python_files(REPO / "widgets")
        for i in imports(path)
        if i.module.split(".")[0] in {"duckdb", "mlflow", "xgboost", "papermill"}
        or under(i.module, "hilt.pipelines")
    ]
    assert bad == []


def test_pipelines_import_from_widgets_only_the_contracts() -> None:
    bad = [
        f"{path.relative_to(REPO)}:{i.line} imports {i.module}"
        for path in python_files(REPO / "pipelines")
        for i in imports(path)
        if under(i.module, "hilt.widgets")
        and not under(i.module, "hilt.widgets.contracts")
        # ``from hilt.widgets import contracts`` names the package itself
        and i.module != "hilt.widgets"
    ]
    assert bad == []


def test_the_store_depends_on_no_other_room() -> None:
    """The store is the bottom of the house: loop, dashboards, compliance and cli build on it,
    never the other way round."""
    others = ("loop", "dashboards", "compliance", "cli")
    bad = [
        f"{path.relative_to(REPO)}:{i.line} imports {i.module}"
        for path in python_files(REPO / "pipelines" / "store")
        for i in imports(path)
        if any(under(i.module, f"hilt.pipelines.{room}") for room in others)
    ]
    assert bad == []


def test_no_module_imports_a_private_name_of_another() -> None:
    bad = []
    for path in CODE:
        me = module_name(path)
        for i in imports(path):
            if i.module == me or not i.module.startswith("hilt."):
                continue
            private = [n for n in i.names if n.startswith("_") and not n.startswith("__")]
            hidden = [p for p in i.module.split(".") if p.startswith("_") and p != "__init__"]
            if private or hidden:
                bad.append(
                    f"{path.relative_to(REPO)}:{i.line} from {i.module}: {private or hidden}"
                )
    assert bad == []


def test_imports_go_through_the_hilt_root() -> None:
    bad = []
    for path in python_files(REPO / "pipelines", REPO / "widgets", REPO / "tests"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            bad += [
                f"{path.relative_to(REPO)}:{node.lineno} imports {n}"
                for n in names
                if n.split(".")[0] in {"pipelines", "widgets"}
            ]
    assert bad == []


def test_no_relative_imports_in_the_code() -> None:
    """One way to name a module: through the ``hilt`` root, in full."""
    bad = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in CODE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert bad == []


def test_the_rules_see_every_form_of_import(tmp_path: Path) -> None:
    """The checks above would miss nothing that imports a module: relative imports, the
    package form and aliases all resolve to the module they name."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from hilt import pipelines\n"
        "from hilt.pipelines import store as s\n"
        "from .model import TrainParams\n"
        "from ..store import _private\n"
        "import duckdb as d\n",
        encoding="utf-8",
    )
    seen = imports(probe, "hilt.pipelines.loop.probe")
    found = {i.module for i in seen}
    names = {n for i in seen for n in i.names}
    assert {
        "hilt.pipelines",
        "hilt.pipelines.store",
        "hilt.pipelines.loop.model",
        "hilt.pipelines.store._private",
        "duckdb",
    } <= found
    assert "_private" in names


def test_no_module_names_a_column_of_the_demo_data_set() -> None:
    """A different tabular use case must need only a different hilt.toml."""
    config = tomllib.loads((REPO / "data" / "hilt.toml").read_text())
    names = set(config["columns"]) | {
        config["use_case"]["id_column"],
        config["use_case"]["subject_column"],
        config["target"]["column"],
    }
    # Words that are also ordinary English are checked as quoted strings only.
    found = []
    for path in CODE:
        text = path.read_text(encoding="utf-8")
        for name in sorted(names):
            if re.search(rf"[\"']{re.escape(name)}[\"']", text):
                found.append(f"{path.relative_to(REPO)} names {name!r}")
    assert found == []
