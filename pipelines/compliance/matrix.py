"""The compliance matrix: each obligation of the catalogue (``obligations.py``), the tests
that prove it, and their last result.

The tests are found by a static scan of tests/ (``ast``: no test is imported or run):
``@pytest.mark.obligation("AI Act 12", ...)`` on a test function or method, on a test
class, or in a module's ``pytestmark``. The last results come from the file the test run
writes (``build/test-results.json``: pytest node id → outcome, by the plugin in
tests/conftest.py); a test the file does not name is "not run". ``hilt docs compliance``
prints the matrix; docs/compliance.md is the matrix without results (so it changes only
when a marker or the catalogue does), kept fresh by a test.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hilt.pipelines.compliance.obligations import NAME, OBLIGATIONS, Obligation
from hilt.pipelines.errors import InputError
from hilt.pipelines.paths import DOCS_DIR, PROJECT_ROOT

TESTS_DIR = PROJECT_ROOT / "tests"
#: Written by the test run (tests/conftest.py): {"tests": {node id: outcome}}.
RESULTS_PATH = PROJECT_ROOT / "build" / "test-results.json"
MATRIX_PATH = DOCS_DIR / "compliance.md"
REFRESH_COMMAND = "hilt docs compliance --write docs/compliance.md"
NOT_RUN = "not run"


@dataclass(frozen=True)
class MarkedTest:
    #: The pytest node id without parameters: "tests/x/test_y.py::test_z" (or ::Class::test_z).
    nodeid: str
    obligations: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class Row:
    obligation: Obligation
    #: (node id, last result) of each test that proves it.
    tests: tuple[tuple[str, str], ...]

    @property
    def covered(self) -> bool:
        return bool(self.tests)


def _obligation_names(decorator: ast.expr) -> list[str] | None:
    """The names of ``pytest.mark.obligation("…", …)``, or None if it is another marker."""
    if not isinstance(decorator, ast.Call):
        return None
    f = decorator.func
    if not (
        isinstance(f, ast.Attribute)
        and f.attr == "obligation"
        and isinstance(f.value, ast.Attribute)
        and f.value.attr == "mark"
    ):
        return None
    names = []
    for arg in decorator.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            raise InputError(
                f"line {decorator.lineno}: obligation(...) takes string literals only, so that "
                "the matrix can be read without running the tests"
            )
        names.append(arg.value)
    return names


def _marks(decorators: Iterable[ast.expr]) -> list[str]:
    found: list[str] = []
    for d in decorators:
        found += _obligation_names(d) or []
    return found


def _module_marks(tree: ast.Module) -> list[str]:
    """``pytestmark = pytest.mark.obligation(...)`` or a list of marks."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            values = node.value.elts if isinstance(node.value, ast.List) else [node.value]
            found += _marks(values)
    return found


def scan_source(source: str, relpath: str) -> list[MarkedTest]:
    """The marked tests of one test module's source (``relpath``: its path in node ids)."""
    try:
        tree = ast.parse(source, filename=relpath)
    except SyntaxError as e:
        raise InputError(f"{relpath}: not valid Python ({e.msg}, line {e.lineno})") from None
    try:
        return _marked(tree, relpath)
    except InputError as e:
        raise InputError(f"{relpath}: {e}") from None


def _marked(tree: ast.Module, relpath: str) -> list[MarkedTest]:
    module = _module_marks(tree)
    out: list[MarkedTest] = []

    def add(
        node: ast.FunctionDef | ast.AsyncFunctionDef, prefix: str, inherited: list[str]
    ) -> None:
        if not node.name.startswith("test"):
            return
        names = [*inherited, *_marks(node.decorator_list)]
        if names:
            unique = tuple(dict.fromkeys(names))
            out.append(MarkedTest(f"{relpath}::{prefix}{node.name}", unique, node.lineno))

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            add(node, "", module)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            inherited = [*module, *_marks(node.decorator_list)]
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    add(item, f"{node.name}::", inherited)
    return out


def scan_tests(tests_dir: Path = TESTS_DIR, root: Path = PROJECT_ROOT) -> list[MarkedTest]:
    """Every marked test under ``tests_dir`` (files named test_*.py), in path order."""
    out: list[MarkedTest] = []
    for path in sorted(tests_dir.rglob("test_*.py")):
        relpath = path.relative_to(root).as_posix()
        out += scan_source(path.read_text(encoding="utf-8"), relpath)
    return out


def unknown_names(
    marked: Iterable[MarkedTest], catalogue: Iterable[Obligation] = OBLIGATIONS
) -> list[tuple[str, str]]:
    """(node id, name) of each marker naming no obligation of the catalogue."""
    known = {o.name for o in catalogue}
    return [(t.nodeid, n) for t in marked for n in t.obligations if n not in known]


def load_results(path: Path = RESULTS_PATH) -> dict[str, str]:
    """node id → outcome of the last run that ran it; empty when no run wrote the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a test-results file ({type(e).__name__})") from None
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, dict):
        raise InputError(f"{path}: not a test-results file (no 'tests' object)")
    return {str(k): str(v) for k, v in tests.items()}


def result_of(nodeid: str, results: Mapping[str, str]) -> str:
    """The last result of a test, over all its parameters: failed if any failed, passed if
    any passed (and none failed), skipped if all were skipped, else not run."""
    outcomes = {v for k, v in results.items() if k == nodeid or k.startswith(nodeid + "[")}
    for outcome in ("failed", "passed", "skipped"):
        if outcome in outcomes:
            return outcome
    return NOT_RUN


def build(
    marked: Iterable[MarkedTest],
    results: Mapping[str, str] | None = None,
    catalogue: Iterable[Obligation] = OBLIGATIONS,
) -> list[Row]:
    """One row per obligation of the catalogue, in its order."""
    marked = list(marked)
    rows = []
    for obligation in catalogue:
        tests = tuple(
            (t.nodeid, result_of(t.nodeid, results) if results is not None else "")
            for t in marked
            if obligation.name in t.obligations
        )
        rows.append(Row(obligation, tests))
    return rows


def uncovered(rows: Iterable[Row]) -> list[str]:
    return [r.obligation.name for r in rows if not r.covered]


def counts(rows: list[Row]) -> str:
    missing = uncovered(rows)
    return (
        f"{len(rows)} obligations, {len(rows) - len(missing)} proven by a test, "
        f"{len(missing)} without a test" + (f": {', '.join(missing)}" if missing else "")
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row], with_results: bool) -> str:
    """The matrix as Markdown; ``with_results``: each test's last result beside it."""
    lines = [
        "# Compliance matrix",
        "",
        "Generated by `hilt docs compliance` from the obligation catalogue",
        "(`pipelines/compliance/obligations.py`) and the tests that carry",
        f'`@pytest.mark.obligation("…")`. Do not edit: run `{REFRESH_COMMAND}`.',
        "",
        counts(rows) + ".",
        "",
        "| obligation | title | what hilt does | tests that prove it |",
        "|---|---|---|---|",
    ]
    for row in rows:
        o = row.obligation
        if row.tests:
            proofs = "<br>".join(
                f"`{nodeid}`" + (f" ({result})" if with_results else "")
                for nodeid, result in row.tests
            )
        else:
            proofs = "**none**"
        lines.append(f"| {o.name} | {_cell(o.title)} | {_cell(o.hilt)} | {proofs} |")
    missing = uncovered(rows)
    lines += ["", "## Without a test", ""]
    lines += [f"- {name}" for name in missing] or ["(none)"]
    return "\n".join(lines) + "\n"


def check_names(marked: list[MarkedTest]) -> None:
    """InputError naming each marker that is no obligation of the catalogue."""
    bad = unknown_names(marked)
    if bad:
        listed = "; ".join(f"{nodeid}: {name!r}" for nodeid, name in bad)
        raise InputError(f"obligation markers that name no obligation of the catalogue: {listed}")
    malformed = [o.name for o in OBLIGATIONS if not NAME.match(o.name)]
    if malformed:
        raise InputError(f"catalogue names that are not like 'AI Act 14(4)(e)': {malformed}")


def generate(tests_dir: Path = TESTS_DIR, results: Path | None = None) -> list[Row]:
    """The matrix from tests/ (and, if given, a results file)."""
    marked = scan_tests(tests_dir, tests_dir.parent)
    check_names(marked)
    return build(marked, load_results(results) if results is not None else None)


def write_results(outcomes: Mapping[str, str], path: Path = RESULTS_PATH) -> None:
    """Merge a test run's outcomes (node id → passed / failed / skipped) into the results
    file, atomically: a run of some tests keeps the others' last results."""
    try:
        merged = load_results(path)
    except InputError:
        merged = {}
    merged.update(outcomes)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(
        json.dumps({"tests": dict(sorted(merged.items()))}, indent=1) + "\n", encoding="utf-8"
    )
    temporary.replace(path)
