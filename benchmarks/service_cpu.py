#!/usr/bin/env python
"""The store service's CPU per lease and per decision, in process (no HTTP).

What it measures
----------------
The owning process's own work for one reviewer's round: ``next_case`` (the lease: choose
from the live queue, the lease row and its audit event, the commit, the case as the reviewer
sees it) and ``record_decision`` (the facts it checks, the decision and its chained audit
row, the commit), through the service's own group committer (``--group N``: N reviewers'
leases share one transaction, then their decisions another; 1 by default, the dearest
case, each commit alone), by 32 reviewers in turn; the CPU of a group is shared equally
by its requests. Each is timed in CPU time of the
thread (``time.thread_time``), which other work on a shared machine inflates far less than
wall time; the median and p95 are printed, and the pair's mean; and the DuckDB statements
per lease and per decision (counted on the connection, whatever the load). HTTP (FastAPI,
JSON) is not included: ``store_concurrency.py`` phase 3b measures decisions per
CPU-second of the whole service.

Setup (untimed): a workspace from data/hilt.toml with N cases (the demo cases plus synthetic
copies, one prediction each by an approved stand-in model, as ``store_concurrency.py`` seeds
them), 32 reviewers, a few warm-up pairs.

Usage: benchmarks/service_cpu.py [--quick] [--pairs N] [--cases N] [--group N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import CONFIG, begin, cleanup, finish, operator, percentile  # noqa: E402
from benchmarks.store_concurrency import seed  # noqa: E402
from hilt.pipelines.store.case_records import Decision, DecisionRequest, LeasedCase  # noqa: E402
from hilt.pipelines.store.config_watch import ConfigWatch  # noqa: E402
from hilt.pipelines.store.create import create_workspace  # noqa: E402
from hilt.pipelines.store.modes.embedded import connect  # noqa: E402
from hilt.pipelines.store.modes.service import Queued, StoreService  # noqa: E402
from hilt.pipelines.store.operations import Store  # noqa: E402
from hilt.pipelines.workspace import Workspace  # noqa: E402

REVIEWERS = 32
WARMUP = 20


class Counting:
    """The connection, counting the statements run on it (``execute``): a figure the load
    of a shared machine does not change."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.statements = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        return self._con.execute(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def measure(ws: Workspace, pairs: int, group: int = 1) -> dict[str, float]:
    """CPU per lease and per decision, run as the service runs them: through its group
    committer, ``group`` reviewers' leases in one group, then their decisions in one."""
    con = connect(ws)
    con.execute("SET threads = 1")  # as `hilt store serve` runs it
    try:
        watch = ConfigWatch(ws, owner=True)
        counting = Counting(con)
        service = StoreService(
            ws, watch.admit(con, despite_drift=False), cast(Any, counting), config=watch
        )
        users = [service.lookup(f"rev{i:02d}") for i in range(1, REVIEWERS + 1)]
        lease_ms: list[float] = []
        lease_sql = decide_sql = 0
        decide_ms: list[float] = []
        rounds = (WARMUP + pairs + group - 1) // group
        for k in range(rounds):
            who = [users[(k * group + j) % REVIEWERS] for j in range(group)]
            leases: list[Future[LeasedCase | None]] = [Future() for _ in who]
            n0 = counting.statements
            t0 = time.thread_time()
            with service.mutex:
                service._commit_group(
                    [
                        (u, Store.next_case, {"strategy": None}, f)
                        for u, f in zip(who, leases, strict=True)
                    ]
                )
            t1 = time.thread_time()
            n1 = counting.statements
            answers: list[Future[Decision]] = [Future() for _ in who]
            queued: list[Queued] = []
            for j, (u, lease, done) in enumerate(zip(who, leases, answers, strict=True)):
                leased = lease.result()
                assert leased is not None, "the queue ran out of cases"
                request = DecisionRequest(
                    case_id=leased.case.case_id,
                    action="accept",
                    request_id=f"cpu-{k:06d}-{j:02d}",
                )
                queued.append((u, Store.record_decision, {"request": request}, done))
            n2 = counting.statements
            t2 = time.thread_time()
            with service.mutex:
                service._commit_group(queued)
            for done in answers:
                done.result()
            t3 = time.thread_time()
            if k * group >= WARMUP:
                lease_sql += n1 - n0
                decide_sql += counting.statements - n2
                lease_ms.extend([(t1 - t0) * 1000 / group] * group)
                decide_ms.extend([(t3 - t2) * 1000 / group] * group)
    finally:
        con.close()
    pairs = len(lease_ms)
    lease_ms.sort()
    decide_ms.sort()
    return {
        "lease_median_ms": round(percentile(lease_ms, 50) or 0.0, 2),
        "lease_p95_ms": round(percentile(lease_ms, 95) or 0.0, 2),
        "decision_median_ms": round(percentile(decide_ms, 50) or 0.0, 2),
        "decision_p95_ms": round(percentile(decide_ms, 95) or 0.0, 2),
        "pair_mean_ms": round((sum(lease_ms) + sum(decide_ms)) / pairs, 2),
        "statements_per_lease": round(lease_sql / pairs, 2),
        "statements_per_decision": round(decide_sql / pairs, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small, fast variant")
    p.add_argument("--pairs", type=int, default=None, help="timed lease + decision pairs")
    p.add_argument("--cases", type=int, default=None, help="cases in the store")
    p.add_argument("--group", type=int, default=1, help="requests a group commit shares")
    args = p.parse_args(argv)
    pairs = args.pairs or (100 if args.quick else 500)
    n_cases = args.cases or (3_000 if args.quick else 26_752)
    started = time.perf_counter()
    group = max(1, min(args.group, REVIEWERS))
    run = begin("service_cpu", quick=args.quick, pairs=pairs, cases=n_cases, group=group)
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-service-cpu-"))
    try:
        ws = Workspace.at(tmp / "ws")
        create_workspace(ws, CONFIG)
        seed(ws, max(n_cases, WARMUP + pairs + group))
        op = operator(ws)
        for i in range(1, REVIEWERS + 1):
            op.add_user(f"rev{i:02d}", "reviewer")
        result = measure(ws, pairs, group)
    finally:
        cleanup(tmp, keep=False)
    print(
        f"service CPU per lease: median {result['lease_median_ms']} ms, p95 "
        f"{result['lease_p95_ms']} ms; per decision: median {result['decision_median_ms']} "
        f"ms, p95 {result['decision_p95_ms']} ms; a pair on average {result['pair_mean_ms']} "
        f"ms ({pairs} pairs, {n_cases} cases, {group} a group)"
    )
    print(
        f"DuckDB statements per lease {result['statements_per_lease']}, per decision "
        f"{result['statements_per_decision']} (BEGIN and COMMIT included)"
    )
    pair = result["pair_mean_ms"]
    print(f"one core would carry at most {1000 / pair:.0f} lease + decision pairs/s (no HTTP)")
    finish(run | result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
