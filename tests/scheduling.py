"""The order in which `make test` hands whole test files to its workers: longest first.

pytest-xdist's ``--dist loadfile`` gives each worker one file at a time, and by default
orders the files by their number of tests. A file with a few long tests (the benchmarks'
quick runs, the simulation, the end-to-end CLI runs) then starts last and one worker works
alone at the end while the other waits. Handing out the longest files first (with
``--no-loadscope-reorder``, so xdist keeps the collection order) is the classic
longest-processing-time rule: the tail is at most one short file.

The seconds per file come from ``tests/durations.json``, written by ``make test-durations``
from the JUnit report of the last ``make test`` (``build/test-junit.xml``); a file that is
not in it yet (a new one) counts as ``UNKNOWN_S``. Only the order changes: every test still
runs, each file whole on one worker (module fixtures).

This module holds no tests; ``python tests/scheduling.py [JUNIT]`` rewrites the file.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).with_name("durations.json")
DEFAULT_JUNIT = Path(__file__).resolve().parents[1] / "build" / "test-junit.xml"
#: Seconds assumed for a test file the durations do not know yet.
UNKNOWN_S = 10.0


def recorded() -> dict[str, float]:
    """Seconds per test file (path relative to the repository, '/'), as last recorded."""
    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()}


def longest_files_first(items: list[pytest.Item], rootdir: Path) -> None:
    """Reorder ``items`` in place: whole files, longest recorded first; the order of the
    tests inside a file and of files with equal times is kept."""
    seconds = recorded()
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(file_of(item, rootdir), len(first_seen))

    def key(item: pytest.Item) -> tuple[float, int]:
        f = file_of(item, rootdir)
        return (-seconds.get(f, UNKNOWN_S), first_seen[f])

    items.sort(key=key)  # stable: the tests of a file keep their order


def file_of(item: pytest.Item, rootdir: Path) -> str:
    path = Path(str(item.path))
    try:
        return path.relative_to(rootdir).as_posix()
    except ValueError:
        return path.as_posix()


def from_junit(report: Path) -> dict[str, float]:
    """Seconds per test file from a JUnit report (each test's time: setup, call, teardown)."""
    per_file: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        classname = case.get("classname", "")
        # "tests.pipelines.test_cli" or "tests.pipelines.test_cli.TestClass"
        parts = classname.split(".")
        for cut in range(len(parts), 0, -1):
            candidate = "/".join(parts[:cut]) + ".py"
            if (DURATIONS.parent.parent / candidate).is_file():
                per_file[candidate] += float(case.get("time", "0") or 0)
                break
    return {k: round(v, 1) for k, v in sorted(per_file.items(), key=lambda kv: -kv[1])}


def main(argv: list[str]) -> int:
    report = Path(argv[1]) if len(argv) > 1 else DEFAULT_JUNIT
    if not report.is_file():
        print(f"error: no JUnit report at {report} (run `make test` first)", file=sys.stderr)
        return 2
    seconds = from_junit(report)
    if not seconds:
        print(f"error: {report} names no test file of this repository", file=sys.stderr)
        return 2
    DURATIONS.write_text(json.dumps(seconds, indent=0) + "\n")
    print(f"{DURATIONS}: {len(seconds)} files, {sum(seconds.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
