#!/usr/bin/env python
"""The embedded store's fixed cost: open, one operation, close.

What it measures
----------------
The embedded mode (``open_store_as(workspace, Identity(name=...))``: no service) opens the
store's DuckDB file for the opening (schema, user, config in force) and again for each
operation, under the store's cross-process lock. Timed on a workspace of the demo config
with the 1,000 demo cases, each with a prediction by an approved stand-in model (setup
untimed), in one process, ``--iterations`` times each (after a few untimed warm-ups):

- ``open+read+close``: ``open_store_as`` as the reviewer alice, ``queue_status()``,
  ``close()``;
- ``open+write+close``: the same with ``next_case()`` (a lease: a row and its audit event,
  one transaction);
- ``decision``: on one open store, ``next_case()`` + ``record_decision(accept)``, per
  decision: each operation opens the file itself;
- ``decision, held``: the same inside ``holding(workspace)`` (one connection under the
  lock for the loop; each operation still its own transaction with its audit rows, the
  user and the config looked up again). Code without ``holding`` prints n/a.

Afterwards ``verify()`` checks the audit log. Wall times in ms (p50, p95) and the process's
CPU time per iteration; the load average with each line. Nothing is asserted.

Usage: benchmarks/store_open.py [--quick] [--iterations N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import CONFIG, begin, finish  # noqa: E402
from benchmarks.store_concurrency import seed  # noqa: E402
from hilt.pipelines.store import Identity, open_store_as  # noqa: E402
from hilt.pipelines.store.case_records import DecisionRequest  # noqa: E402
from hilt.pipelines.store.create import create_workspace  # noqa: E402
from hilt.pipelines.workspace import Workspace  # noqa: E402

REVIEWER = "alice"


def timed(step: Callable[[], object], n: int, warmup: int = 2) -> dict[str, Any]:
    """p50 / p95 wall ms and mean CPU ms of ``step`` over ``n`` runs."""
    for _ in range(warmup):
        step()
    wall: list[float] = []
    cpu0 = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        step()
        wall.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - cpu0) * 1000 / n
    wall.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(wall), 2),
        "p95_ms": round(wall[min(n - 1, round(0.95 * (n - 1)))], 2),
        "cpu_ms": round(cpu, 2),
        "load": round(os.getloadavg()[0], 2),
    }


def holding_of(ws: Workspace) -> Callable[[], contextlib.AbstractContextManager[None]] | None:
    """``holding`` bound to ``ws``, or None where the code has none (the code before it)."""
    try:
        from hilt.pipelines.store import holding
    except ImportError:
        return None

    def hold() -> contextlib.AbstractContextManager[None]:
        return holding(ws)

    return hold


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5 iterations of each (a smoke run)")
    p.add_argument("--iterations", type=int, default=None, help="default 200 (--quick: 5)")
    args = p.parse_args()
    n = args.iterations or (5 if args.quick else 200)
    started = time.perf_counter()
    result = begin("store_open", iterations=n)
    with tempfile.TemporaryDirectory(prefix="hilt-store-open-") as tmp:
        ws = Workspace.at(Path(tmp) / "ws")
        create_workspace(ws, CONFIG)
        seed(ws, 1000)
        who = Identity(name=REVIEWER)

        def open_read_close() -> None:
            store = open_store_as(ws, who)
            store.queue_status()
            store.close()

        def open_write_close() -> None:
            store = open_store_as(ws, who)
            store.next_case()
            store.close()

        alice = open_store_as(ws, who)

        def decide() -> None:
            case = alice.next_case()
            assert case is not None, "the queue ran out"
            alice.record_decision(DecisionRequest(case_id=case.case.case_id, action="accept"))

        result["open_read_close"] = timed(open_read_close, n)
        result["open_write_close"] = timed(open_write_close, n)
        result["decision"] = timed(decide, n)
        hold = holding_of(ws)
        result["decision_held"] = None
        if hold is not None:
            with hold():
                result["decision_held"] = timed(decide, n)
        result["verify_ok"] = open_store_as(ws, Identity(name="otto")).verify().ok

    for name, label in (
        ("open_read_close", "open+read+close "),
        ("open_write_close", "open+write+close"),
        ("decision", "decision        "),
        ("decision_held", "decision, held  "),
    ):
        r = result[name]
        if r is None:
            print(f"{label}  n/a (no holding in this code)")
        else:
            print(
                f"{label}  p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                f"CPU {r['cpu_ms']:.1f} ms (n {r['n']}, load {r['load']:.2f})"
            )
    print(f"verify: {'OK' if result['verify_ok'] else 'FAILED'}")
    finish(result, started)
    return 0 if result["verify_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
