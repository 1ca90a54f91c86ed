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
import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"pipelines": "hilt.pipelines", "widgets": "hilt.widgets"}


def python_files(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.py"))


@functools.cache
def parsed(path: Path) -> ast.Module:
    """The syntax tree of ``path``, read once per session (each rule walks every file)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def module_name(path: Path, root: Path = REPO) -> str:
    """hilt.pipelines.store.core for pipelines/store/core.py (and the package for __init__)."""
    rel = path.relative_to(root).with_suffix("")
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
    #: ``from module import ...`` (rather than ``import module``).
    from_import: bool = False
    #: ``pkg.sub`` counted for ``from pkg import sub`` (not written as such).
    derived: bool = False


@functools.cache
def imports(path: Path, module: str | None = None, root: Path = REPO) -> tuple[Imported, ...]:
    """Every import of ``path`` (the module ``module``, by default the one at that path),
    relative ones resolved; ``from pkg import sub`` also counts as an import of ``pkg.sub``."""
    tree = parsed(path)
    me = module or module_name(path, root)
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
            found.append(Imported(module, names, node.lineno, from_import=True))
            found += [Imported(f"{module}.{n}", (), node.lineno, derived=True) for n in names]
    return tuple(found)


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def code_files(root: Path = REPO) -> list[Path]:
    return python_files(root / "pipelines", root / "widgets")


def where(path: Path, i: Imported, root: Path) -> str:
    return f"{path.relative_to(root)}:{i.line} imports {i.module}"


# Each rule is a function of the tree it reads, so that test_the_rules_flag_a_bad_tree can
# show each one catching a synthetic offender (a rule that cannot fail proves nothing).


def heavy_offenders(allowed: str | tuple[str, ...], library: str, root: Path = REPO) -> list[str]:
    """Modules outside ``allowed`` (modules or packages) that import ``library``."""
    rooms = (allowed,) if isinstance(allowed, str) else allowed
    return [
        where(path, i, root)
        for path in code_files(root)
        if not any(under(module_name(path, root), room) for room in rooms)
        for i in imports(path, root=root)
        if under(i.module, library)
    ]


def widget_offenders(root: Path = REPO) -> list[str]:
    return [
        where(path, i, root)
        for path in python_files(root / "widgets")
        for i in imports(path, root=root)
        if i.module.split(".")[0] in {"duckdb", "mlflow", "xgboost", "papermill"}
        or under(i.module, "hilt.pipelines")
    ]


def widgets_in_pipelines(root: Path = REPO) -> list[str]:
    return [
        where(path, i, root)
        for path in python_files(root / "pipelines")
        for i in imports(path, root=root)
        if under(i.module, "hilt.widgets")
        and not under(i.module, "hilt.widgets.contracts")
        # ``from hilt.widgets import contracts`` names the package itself
        and i.module != "hilt.widgets"
    ]


def store_offenders(root: Path = REPO) -> list[str]:
    others = ("loop", "dashboards", "compliance", "cli")
    return [
        where(path, i, root)
        for path in python_files(root / "pipelines" / "store")
        for i in imports(path, root=root)
        if any(under(i.module, f"hilt.pipelines.{room}") for room in others)
    ]


def private_offenders(root: Path = REPO) -> list[str]:
    bad = []
    for path in code_files(root):
        me = module_name(path, root)
        for i in imports(path, root=root):
            if i.module == me or not i.module.startswith("hilt."):
                continue
            private = [n for n in i.names if n.startswith("_") and not n.startswith("__")]
            hidden = [p for p in i.module.split(".") if p.startswith("_") and p != "__init__"]
            if private or hidden:
                bad.append(
                    f"{path.relative_to(root)}:{i.line} from {i.module}: {private or hidden}"
                )
    return bad


def unrooted_offenders(root: Path = REPO) -> list[str]:
    """``import pipelines.x`` / ``from widgets import y``: the folders, not ``hilt.``."""
    bad = []
    for path in python_files(root / "pipelines", root / "widgets", root / "tests"):
        tree = parsed(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            bad += [
                f"{path.relative_to(root)}:{node.lineno} imports {n}"
                for n in names
                if n.split(".")[0] in {"pipelines", "widgets"}
            ]
    return bad


def relative_offenders(root: Path = REPO) -> list[str]:
    """``from . import x`` / ``from .mod import y`` / ``from ..pkg import z``, anywhere in
    the code or the tests."""
    return [
        f"{path.relative_to(root)}:{node.lineno} from {'.' * node.level}{node.module or ''}"
        for path in python_files(root / "pipelines", root / "widgets", root / "tests")
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.ImportFrom) and node.level
    ]


def through_the_root_offenders(root: Path = REPO) -> list[str]:
    """``import hilt``, ``from hilt import pipelines`` or ``from hilt.pipelines import
    store``: a room reached through the package root and used as ``pipelines.store.x``
    hides from every rule above which module it uses. Name the module in full."""
    bad = []
    for path in code_files(root):
        for i in imports(path, root=root):
            if i.derived:
                continue
            if not i.from_import:  # import hilt / import hilt.pipelines
                if i.module == "hilt" or i.module in ROOTS.values():
                    bad.append(where(path, i, root))
            elif i.module == "hilt":
                bad.append(f"{path.relative_to(root)}:{i.line} from hilt import {i.names}")
            elif i.module in ROOTS.values():
                folder = root / i.module.split(".")[1]
                rooms = [n for n in i.names if (folder / n).is_dir()]
                if rooms:
                    bad.append(f"{path.relative_to(root)}:{i.line} from {i.module} import {rooms}")
    return bad


#: "A module past ~600 lines is asking to be split by responsibility" (the charter); the
#: margin lets a module near it grow a little before it must be split.
LONGEST_MODULE = 650


def long_modules(root: Path = REPO, limit: int = LONGEST_MODULE) -> list[str]:
    """Modules of the code longer than ``limit`` lines."""
    found = []
    for path in code_files(root):
        with path.open(encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > limit:
            found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("duckdb", "hilt.pipelines.store"),
        ("mlflow", "hilt.pipelines.loop.tracking"),
        # Dask training sits next to the model: the one module that imports dask.
        ("xgboost", ("hilt.pipelines.loop.model", "hilt.pipelines.loop.model_dask")),
        ("dask", "hilt.pipelines.loop.model_dask"),
        ("distributed", "hilt.pipelines.loop.model_dask"),
        # The runner executes notebooks; its parameters module reads their parameters cells.
        ("papermill", ("hilt.pipelines.loop.runner", "hilt.pipelines.loop.run_parameters")),
    ],
)
def test_a_heavy_library_is_imported_only_in_its_room(
    library: str, allowed: str | tuple[str, ...]
) -> None:
    assert heavy_offenders(allowed, library) == []


def test_widgets_never_import_pipelines_nor_the_heavy_backends() -> None:
    assert widget_offenders() == []


def test_pipelines_import_from_widgets_only_the_contracts() -> None:
    assert widgets_in_pipelines() == []


def test_the_store_depends_on_no_other_room() -> None:
    """The store is the bottom of the house: loop, dashboards, compliance and cli build on it,
    never the other way round."""
    assert store_offenders() == []


def test_no_module_imports_a_private_name_of_another() -> None:
    assert private_offenders() == []


def test_imports_go_through_the_hilt_root() -> None:
    assert unrooted_offenders() == []


def test_no_relative_imports() -> None:
    """One way to name a module: through the ``hilt`` root, in full."""
    assert relative_offenders() == []


def test_no_room_is_imported_through_the_package_root() -> None:
    assert through_the_root_offenders() == []


def test_no_module_is_too_long_to_name_what_it_does() -> None:
    """A module past the limit holds several responsibilities: split it into modules named
    for each (as operations.py, records.py and steps/retrain.py were in issue 13)."""
    assert long_modules() == []


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


BAD_TREE = {
    # One offence per line; each rule below must name the lines meant for it.
    "pipelines/__init__.py": "",
    "pipelines/store/__init__.py": "",
    "pipelines/store/core.py": "import mlflow\nfrom hilt.pipelines.loop import model\n",
    "pipelines/store/_hidden.py": "",
    "pipelines/loop/__init__.py": "",
    "pipelines/loop/model.py": (
        "from . import runner\n"
        "from .runner import go\n"
        "from ..store import core\n"
        "from hilt.pipelines.store.core import _secret\n"
        "from hilt.widgets.review import session\n"
        "import pipelines.store\n"
    ),
    "pipelines/loop/runner.py": (
        "from hilt import pipelines\nimport hilt.pipelines\nfrom hilt.pipelines import store\n"
    ),
    "widgets/__init__.py": "",
    "widgets/review/__init__.py": "",
    "widgets/review/session.py": "import duckdb\nfrom hilt.pipelines.store import core\n",
    "tests/test_x.py": "from .helpers import thing\n",
    "widgets/review/long.py": "x = 1\n" * (LONGEST_MODULE + 1),
    "widgets/review/just_short.py": "x = 1\n" * LONGEST_MODULE,
}


def test_the_rules_flag_a_bad_tree(tmp_path: Path) -> None:
    """Every rule, run on a synthetic tree with offenders, names them: none can pass for
    want of looking (a wrong folder, a missed import form)."""
    for rel, text in BAD_TREE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    root = tmp_path
    assert heavy_offenders("hilt.pipelines.loop.tracking", "mlflow", root) == [
        "pipelines/store/core.py:1 imports mlflow"
    ]
    assert store_offenders(root) == [
        "pipelines/store/core.py:2 imports hilt.pipelines.loop",
        "pipelines/store/core.py:2 imports hilt.pipelines.loop.model",
    ]
    assert widget_offenders(root) == [
        "widgets/review/session.py:1 imports duckdb",
        "widgets/review/session.py:2 imports hilt.pipelines.store",
        "widgets/review/session.py:2 imports hilt.pipelines.store.core",
    ]
    assert widgets_in_pipelines(root) == [
        "pipelines/loop/model.py:5 imports hilt.widgets.review",
        "pipelines/loop/model.py:5 imports hilt.widgets.review.session",
    ]
    assert private_offenders(root) == [
        "pipelines/loop/model.py:4 from hilt.pipelines.store.core: ['_secret']",
        "pipelines/loop/model.py:4 from hilt.pipelines.store.core._secret: ['_secret']",
    ]
    assert unrooted_offenders(root) == ["pipelines/loop/model.py:6 imports pipelines.store"]
    assert relative_offenders(root) == [
        "pipelines/loop/model.py:1 from .",
        "pipelines/loop/model.py:2 from .runner",
        "pipelines/loop/model.py:3 from ..store",
        "tests/test_x.py:1 from .helpers",
    ]
    assert through_the_root_offenders(root) == [
        "pipelines/loop/runner.py:1 from hilt import ('pipelines',)",
        "pipelines/loop/runner.py:2 imports hilt.pipelines",
        "pipelines/loop/runner.py:3 from hilt.pipelines import ['store']",
    ]
    assert long_modules(root) == [f"widgets/review/long.py: {LONGEST_MODULE + 1} lines"]


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
    for path in code_files():
        text = path.read_text(encoding="utf-8")
        for name in sorted(names):
            if re.search(rf"[\"']{re.escape(name)}[\"']", text):
                found.append(f"{path.relative_to(REPO)} names {name!r}")
    assert found == []
