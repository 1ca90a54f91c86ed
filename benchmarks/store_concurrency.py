#!/usr/bin/env python
"""Many reviewers, one store: decision latency, throughput and durability in both modes.

What it measures
----------------
N reviewer processes (default 32) record ``accept`` decisions on distinct cases, each with
its own unique ``request_id``, in four phases on one temporary workspace:

1. service, paced: every reviewer waits a random exponential pause (mean 2 s,
   ``--mean-interval``) before each decision, so the store is offered N x 0.5 decisions/s,
   through the store service
   (``hilt store serve`` as a subprocess, HTTP on 127.0.0.1, one token per reviewer);
1b. service, paced, one request per click: as 1, but each decision is sent as the review
   panel sends it since session 28: ``decide_and_next`` (POST /v1/queue/decide-next, the
   decision and the reviewer's next lease in one transaction), after a first lease;
2. service, paced while an auditor verifies: as 1, while one more client (a thread of this
   script, an auditor's token) calls ``verify()`` on the service in a loop, back to back:
   verify runs on the service's own read connection, so the reviewers' p95 should stay
   near the idle phase's (the issue's aim: within 2x);
3. service, saturation: every reviewer records decisions flat out (no pauses) for a fixed
   number of seconds or decisions, whichever comes first;
3b. service, saturation from ONE asyncio process: the same flat-out lease-then-accept loop,
   one simulated reviewer per token on keep-alive connections (``_keepalive.py``), so the
   load generator does not take the service's cores as 32 processes do on a small
   machine (on two or more CPUs the service is pinned to one and the generator to the
   others for the phase); it prints its own CPU seconds and the service's (from /proc)
   beside the wall time; run twice, a click as two requests (decision, then lease) and as
   one (decide-next);
4. embedded, paced: as 1, but each process opens the store itself
   (``open_store_as(path, Identity(name=...))``), which takes the cross-process lock and
   opens the DuckDB file for every operation;
5. embedded, saturation: as 3, in embedded mode.

Each reviewer takes the next case from the queue (``next_case``, as the review panel does: a
decision needs the reviewer's live lease), then pauses, then decides; in the one-request
phases (1b, 3b's second run) the decision leases the next case (``decide_and_next``) and
only the first lease is a request of its own. Latency is measured client-side around each
decision's call, ``record_decision`` or ``decide_and_next`` (including HTTP,
authentication, the audit chain and the commit; a retry of the same request_id after a
transport error counts into the same call). Each phase also reports its clicks (``click``:
the decision and the next lease, as the panel needs them): the decide-next call alone, or
a decision's call plus the lease call that follows it (sent back to back), so that the two
ways compare on the same thing (``requests_per_click``: 1 or 2). After each mode the
decisions are read back through the store (``decisions()`` paging with ``after_seq``):
*lost* = acknowledged decision ids missing from the store; *duplicated* = request ids stored
more than once. Then ``verify()`` checks the audit chain, the checkpoints and the records
against their events.

Finally a RAW baseline: one DuckDB connection on a fresh file, one transaction per row into
a table with the store's own ``decisions`` DDL, with and without an ``audit_log`` row chained
onto the previous one (read head, sha256, insert) - the floor any design on DuckDB starts at.

Setup (untimed): a workspace from data/hilt.toml; the demo cases (data/german_credit.csv)
plus synthetic copies with new application ids (BENCH-APP-0000001...) so that every decision
has its own case; one deterministic prediction per case, by a stand-in model registered and
approved by a lead (only the champion's predictions are taken); one reviewer token per process
(rev01, rev02, ... role reviewer). The worker processes are started once (forked from a fork
server that imported hilt once) and reused.

Targets (issue 13): service p95 <= 10 ms at 32 x 0.5 decisions/s; saturation >= 500
decisions/s with the audit chain, measured with the one-process load generator (3b);
0 lost. The first two are printed for each way of sending a click (the decision's p95 for
two requests, the decide-next call's for one). Nothing is asserted: the script prints whether each
target was met. The last line of output is one JSON object with every number.

Usage: benchmarks/store_concurrency.py [--quick] [--workers N] [--paced-seconds S] ...
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerProcess
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from hilt.pipelines.errors import HiltError, StoreError
from hilt.pipelines.store import DecisionRequest, Identity, Store, open_store_as
from hilt.pipelines.store.audit.chain import (
    GENESIS_HASH,
    canonical_json,
    chain_hash,
    utc_timestamp,
)
from hilt.pipelines.store.case_records import Decision, LeasedCase
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.modes.client import StoreClient
from hilt.pipelines.store.registry_records import ModelEvaluation
from hilt.pipelines.store.schema import create_statements
from hilt.pipelines.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import (  # noqa: E402
    CONFIG,
    CSV,
    Service,
    begin,
    cleanup,
    finish,
    latency_stats,
    operator,
    start_service,
)
from benchmarks._load import (  # noqa: E402
    CLICKS,
    PHASE_GRACE_S,
    Clicks,
    one_process_load,
    processes,
)

MEAN_INTERVAL_S = 2.0
TARGET_P95_MS = 10.0
#: Decisions/s flat out (issue 13), measured with the one-process load generator.
TARGET_SATURATION_PER_S = 500.0
#: Attempts per decision: a transport error or a busy store is retried with the same
#: request_id (the store's idempotency key), so a retry can never record twice.
ATTEMPTS = 3
#: The options that size the phases (seconds, the saturation cap, the raw baseline's rows).
PHASES = (
    "paced_seconds",
    "sat_seconds",
    "sat_decisions",
    "embedded_paced_seconds",
    "embedded_sat_seconds",
    "raw_rows",
)
#: How each way of sending a click is named in the printed lines.
CLICK_TEXT = {
    "two": "two requests per click (decision, then the next lease)",
    "one": "one request per click (decide-next)",
}


# ---------------------------------------------------------------------------- statistics
def fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


# ---------------------------------------------------------------------------- workers
def _open_for(job: dict[str, Any]) -> Store:
    if job["mode"] == "service":
        client = StoreClient(str(job["url"]), str(job["token"]), timeout_s=30.0)
        client.whoami()  # opens the keep-alive connection before the clock starts
        return client
    return open_store_as(Path(job["workspace"]), Identity(name=str(job["user"])))


def _run_phase(index: int, job: dict[str, Any], store: Store, start_at: float) -> dict[str, Any]:
    rng = random.Random(int(job["seed"]))
    mean = float(job["mean_interval_s"])
    cases: list[str] = list(job["cases"])
    tag = str(job["tag"])
    one_request = job["click"] == "one"
    wait = start_at - time.time()
    if wait > 0:
        time.sleep(wait)
    t0 = time.perf_counter()
    deadline = t0 + float(job["duration_s"])
    latencies: list[float] = []
    clicks = Clicks()
    acked: list[tuple[str, str]] = []
    errors: dict[str, int] = {}
    retries = 0
    exhausted = True
    # The case to decide on next, None when the reviewer must lease one.
    leased: LeasedCase | None = None
    dry = False
    for i in range(len(cases)):
        # The reviewer takes the next case from the queue, as the review panel does (a
        # decision needs their live lease): with a lease of its own (at first, after each
        # decision sent alone, after a failed one) or with the decision (decide-next).
        if leased is None:
            start = time.perf_counter()
            try:
                leased = store.next_case()
            except HiltError as e:
                key = f"lease: {type(e).__name__}"
                errors[key] = errors.get(key, 0) + 1
                clicks.failed()
                continue
            clicks.leased((time.perf_counter() - start) * 1000.0)
            if leased is None:
                exhausted = True
                break
        case_id = leased.case.case_id
        if mean > 0:
            pause = rng.expovariate(1.0 / mean)
            if time.perf_counter() + pause >= deadline:
                exhausted = False
                break
            time.sleep(pause)
        elif time.perf_counter() >= deadline:
            exhausted = False
            break
        request = DecisionRequest(
            case_id=case_id,
            action="accept",
            request_id=f"{tag}-{index:02d}-{i:06d}",
            time_on_item_ms=rng.randint(3_000, 90_000),
        )
        # Unless the decision says otherwise, the next turn leases (a failed decision: the
        # reviewer's own live lease comes back first).
        leased = None
        start = time.perf_counter()
        for attempt in range(ATTEMPTS):
            try:
                if one_request:
                    done = store.decide_and_next(request)
                    decision, leased = done.decision, done.leased
                else:
                    decision = store.record_decision(request)
            except StoreError as e:  # unreachable, busy, driver failure: retry, same id
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                if attempt + 1 < ATTEMPTS:
                    retries += 1
                    time.sleep(0.05 * (attempt + 1))
                    continue
                clicks.failed()
            except HiltError as e:  # the store refused the request: not retried
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                clicks.failed()
            else:
                ms = (time.perf_counter() - start) * 1000.0
                latencies.append(ms)
                clicks.decided(ms, with_lease=one_request)
                acked.append((str(request.request_id), decision.decision_id))
                if one_request and leased is None:  # nothing waits for this reviewer
                    dry = True
            break
        if dry:
            exhausted = True
            break
    end = time.perf_counter()
    return {
        "latencies_ms": latencies,
        "click_ms": clicks.ms,
        "acked": acked,
        "errors": errors,
        "retries": retries,
        "elapsed_s": end - t0,
        "ended_at": time.time(),
        "exhausted": exhausted,
    }


def worker_main(index: int, conn: Connection) -> None:
    """A reviewer process: set up a phase, wait for the common start, run it, report."""
    conn.send(("ready", None))
    while True:
        kind, job = conn.recv()
        if kind == "stop":
            return
        store: Store | None = None
        try:
            t = time.perf_counter()
            store = _open_for(job)
            conn.send(("set", time.perf_counter() - t))
            kind, start_at = conn.recv()
            if kind != "go":
                return
            conn.send(("result", _run_phase(index, job, store, float(start_at))))
        except Exception as e:
            conn.send(("failed", f"{type(e).__name__}: {e}"))
        finally:
            if store is not None:
                store.close()


@dataclass
class WorkerPool:
    size: int
    procs: list[ForkServerProcess] = field(default_factory=list)
    conns: list[Connection] = field(default_factory=list)

    def start(self, timeout_s: float) -> float:
        ctx = processes()
        t = time.perf_counter()
        for i in range(self.size):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(i + 1, child), daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        self._expect("ready", time.monotonic() + timeout_s)
        return time.perf_counter() - t

    def _expect(self, kind: str, deadline: float) -> list[Any]:
        out: list[Any] = []
        for i, conn in enumerate(self.conns):
            left = deadline - time.monotonic()
            if left <= 0 or not conn.poll(left):
                raise RuntimeError(f"worker {i + 1} did not answer {kind!r} in time")
            got, value = conn.recv()
            if got != kind:
                raise RuntimeError(f"worker {i + 1}: expected {kind!r}, got {got!r}: {value}")
            out.append(value)
        return out

    def run(
        self,
        jobs: list[dict[str, Any]],
        duration_s: float,
        ready: Callable[[], None] | None = None,
    ) -> tuple[float, list[Any]]:
        """Send each worker its job, wait for all to be set up, call ``ready``, start them
        together."""
        for conn, job in zip(self.conns, jobs, strict=True):
            conn.send(("setup", job))
        self._expect("set", time.monotonic() + 120.0)
        if ready is not None:
            ready()
        start_at = time.time() + 0.3
        for conn in self.conns:
            conn.send(("go", start_at))
        results = self._expect("result", time.monotonic() + duration_s + PHASE_GRACE_S)
        return start_at, results

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop", None))
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)


# ---------------------------------------------------------------------------- setup
def predictions_for(case_ids: pl.Series) -> pl.DataFrame:
    """Deterministic stand-in predictions, as tests/conftest.py makes them."""
    n = case_ids.len()
    scores = [((i * 37) % 100) / 100 for i in range(n)]
    return pl.DataFrame(
        {
            "case_id": case_ids,
            "score": scores,
            "label": ["1" if s >= 0.5 else "0" for s in scores],
            "explanation": ['{"duration": -0.25, "credit_amount": 0.1}'] * n,
        }
    )


#: The stand-in model the predictions are added under (the store takes them only from its
#: champion, with the sha256 it was registered with): its sha256 is that of its name.
MODEL = "bench-model/v1"
STAND_IN_METRICS: dict[str, float | None] = {"auc": 0.8, "accuracy": 0.75, "brier": 0.18}


def approve_stand_in(ws: Workspace) -> str:
    """Register ``MODEL`` as the operator, its evaluation made up to pass the gate on a
    snapshot the store makes, and have the lead lena approve it. Returns its sha256."""
    op = operator(ws)
    sha = hashlib.sha256(MODEL.encode()).hexdigest()
    evaluation = ModelEvaluation(
        snapshot_sha256=op.snapshot().sha256,
        metrics=STAND_IN_METRICS,
        gaps={"sex": 0.0, "age": 0.0},
    )
    op.register_model(MODEL, sha, "bench-run", evaluation)
    open_store_as(ws, Identity(name="lena")).promote_model(MODEL)
    return sha


def seed(ws: Workspace, n_cases: int) -> list[str]:
    """The demo cases plus synthetic copies with new ids; one prediction each, by the
    approved stand-in model."""
    op = operator(ws)
    demo = pl.read_csv(CSV, infer_schema=False)
    op.ingest_cases(demo)
    sha = approve_stand_in(ws)
    op.add_predictions(MODEL, predictions_for(demo["application_id"]), sha)
    ids = demo["application_id"].to_list()
    extra = max(0, n_cases - demo.height)
    if extra:
        reps = math.ceil(extra / demo.height)
        copies = pl.concat([demo] * reps).head(extra)
        new_ids = pl.Series("application_id", [f"BENCH-APP-{k:07d}" for k in range(1, extra + 1)])
        copies = copies.with_columns(new_ids)
        op.ingest_cases(copies)
        op.add_predictions(MODEL, predictions_for(copies["application_id"]), sha)
        ids.extend(new_ids.to_list())
    return [str(i) for i in ids]


class CaseAllocator:
    """Hands out disjoint slices of case ids, so that every decision has its own case."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.next = 0

    def take(self, n: int) -> list[str]:
        if self.next + n > len(self.ids):
            raise RuntimeError(f"not enough cases seeded ({len(self.ids)})")
        out = self.ids[self.next : self.next + n]
        self.next += n
        return out


def paced_cap(duration_s: float, mean_interval_s: float) -> int:
    """Decisions a paced reviewer could need: 3x the mean count plus slack (bounded)."""
    return math.ceil(3 * duration_s / mean_interval_s) + 20


def needed_cases(args: argparse.Namespace) -> int:
    """Cases enough for every phase to reach its cap: three paced service phases, the
    embedded one, four saturation phases (the processes', the two one-process ones, the
    embedded one)."""
    per_worker = (
        3 * paced_cap(args.paced_seconds, args.mean_interval)
        + paced_cap(args.embedded_paced_seconds, args.mean_interval)
        + 4 * math.ceil(args.sat_decisions / args.workers)
    )
    return int(per_worker * args.workers)


# ---------------------------------------------------------------------------- phases
def run_phase(
    pool: WorkerPool,
    alloc: CaseAllocator,
    *,
    name: str,
    mode: str,
    tag: str,
    duration_s: float,
    per_worker: int,
    mean_interval_s: float,
    conn_info: list[dict[str, Any]],
    seed_base: int,
    click: str = "two",
    service: Service | None = None,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """One phase on every worker of ``pool``; ``click`` (``CLICKS``): how each reviewer
    sends a decision and the next lease; ``service``: the service whose CPU the phase's
    decisions cost (leave it out when something else runs on it meanwhile). Prints its
    line; returns its numbers and the acknowledged (request id, decision id) pairs."""
    jobs = []
    for i in range(pool.size):
        jobs.append(
            {
                "mode": mode,
                "tag": tag,
                "cases": alloc.take(per_worker),
                "mean_interval_s": mean_interval_s,
                "duration_s": duration_s,
                "seed": seed_base + i,
                "click": click,
                **conn_info[i],
            }
        )
    # The service's CPU from when every reviewer is set up (signed in) to the phase's end.
    service_cpu: list[float | None] = [None]

    def ready() -> None:
        service_cpu[0] = service.cpu_s() if service is not None else None

    start_at, results = pool.run(jobs, duration_s, ready)
    service_cpu0 = service_cpu[0]
    service_cpu1 = service.cpu_s() if service is not None else None
    latencies: list[float] = []
    click_ms: list[float] = []
    acked: list[tuple[str, str]] = []
    errors: dict[str, int] = {}
    retries = 0
    exhausted = 0
    for r in results:
        latencies.extend(r["latencies_ms"])
        click_ms.extend(r["click_ms"])
        acked.extend((str(a), str(b)) for a, b in r["acked"])
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + int(v)
        retries += int(r["retries"])
        exhausted += 1 if r["exhausted"] else 0
    wall = max(float(r["ended_at"]) for r in results) - start_at
    offered = pool.size / mean_interval_s if mean_interval_s > 0 else None
    stats: dict[str, Any] = {
        "workers": pool.size,
        "requests_per_click": CLICKS[click],
        "offered_per_s": offered,
        "duration_s": round(wall, 3),
        "decisions": len(acked),
        "throughput_per_s": round(len(acked) / wall, 2) if wall > 0 else None,
        **latency_stats(latencies),
        "click": latency_stats(click_ms),
        "errors": errors,
        "retries": retries,
        "workers_out_of_cases": exhausted,
    }
    if service_cpu0 is not None and service_cpu1 is not None and acked:
        # The service's CPU a decision (and its lease), as phase 3b and review_latency.py
        # report it: what the machine's load changes far less than the latencies (in a
        # paced phase it includes what the service does while idle).
        stats["service_cpu_ms_per_decision"] = round(
            (service_cpu1 - service_cpu0) * 1000 / len(acked), 2
        )
    offered_text = f"offered {offered:.1f}/s, " if offered else "flat out, "
    print(
        f"  {name}: {offered_text}{len(acked)} decisions in {wall:.1f} s = "
        f"{stats['throughput_per_s']}/s; latency p50 {fmt_ms(stats['p50_ms'])} ms, "
        f"p95 {fmt_ms(stats['p95_ms'])} ms, p99 {fmt_ms(stats['p99_ms'])} ms, "
        f"max {fmt_ms(stats['max_ms'])} ms; errors {errors or 0}, retries {retries}"
    )
    cpu = stats.get("service_cpu_ms_per_decision")
    print(f"    {click_line(stats)}" + (f"; service CPU {cpu} ms a decision" if cpu else ""))
    return stats, acked


def click_line(stats: dict[str, Any]) -> str:
    """A phase's clicks as the panel sends them: the decision and the next lease, whether in
    two requests (their latencies summed) or in one."""
    click = stats["click"]
    how = "2 requests" if stats["requests_per_click"] == 2 else "1 request, decide-next"
    return (
        f"a click (decision + next lease, {how}): p50 {fmt_ms(click['p50_ms'])} ms, "
        f"p95 {fmt_ms(click['p95_ms'])} ms, p99 {fmt_ms(click['p99_ms'])} ms"
    )


# ---------------------------------------------------------------------------- one-process load
def async_saturation(
    service: Service, tokens: list[str], duration_s: float, cap: int, tag: str, click: str
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Phase 3b (``_load.one_process_load``), its line printed."""
    stats, acked = one_process_load(service, tokens, duration_s, cap, tag, click)
    pinned = stats["pinned"]
    print(
        f"  saturation, one asyncio process ({len(tokens)} simulated reviewers, keep-alive), "
        f"{CLICK_TEXT[click]}: {stats['decisions']} decisions in {stats['duration_s']:.1f} s"
        f" = {stats['throughput_per_s']}/s; latency p50 {fmt_ms(stats['p50_ms'])} ms, p95 "
        f"{fmt_ms(stats['p95_ms'])} ms, p99 {fmt_ms(stats['p99_ms'])} ms; {click_line(stats)}; "
        f"errors {stats['errors'] or 0}; CPU: generator {stats['generator_cpu_s']} s, service "
        f"{stats['service_cpu_s']} s of {stats['duration_s']:.1f} s wall = "
        f"{stats['decisions_per_service_cpu_s']} decisions per CPU-second of the service "
        f"({stats['service_cpu_ms_per_decision']} ms a decision)"
        + (
            f" (pinned: service on CPU {pinned['service'][0]}, generator on CPU "
            f"{','.join(map(str, pinned['generator']))})"
            if pinned
            else " (not pinned: one CPU)"
        )
    )
    return stats, acked


def read_back(store: Store, page: int = 10_000) -> list[Decision]:
    """Every decision, through the store's own paging (``after_seq``); bounded."""
    out: list[Decision] = []
    after = 0
    total = store.counts()["decisions"]
    for _ in range(total // page + 2):
        batch = store.decisions(after_seq=after, limit=page)
        if not batch:
            break
        out.extend(batch)
        after = batch[-1].seq
    return out


def durability(
    stored: list[Decision], acked: list[tuple[str, str]], tags: tuple[str, ...]
) -> dict[str, int]:
    mine = [d for d in stored if d.request_id is not None and d.request_id.startswith(tags)]
    stored_ids = {d.decision_id for d in mine}
    per_request: dict[str, int] = {}
    for d in mine:
        assert d.request_id is not None
        per_request[d.request_id] = per_request.get(d.request_id, 0) + 1
    acked_requests = {rid for rid, _ in acked}
    return {
        "acknowledged": len(acked),
        "stored": len(mine),
        "lost": sum(1 for _, did in acked if did not in stored_ids),
        "duplicated": sum(1 for n in per_request.values() if n > 1),
        "stored_not_acknowledged": sum(1 for rid in per_request if rid not in acked_requests),
    }


class VerifyLoop:
    """An auditor calling ``verify()`` on the service back to back, in a thread, until
    stopped; the duration of each call."""

    def __init__(self, url: str, token: str) -> None:
        self.client = StoreClient(url, token, timeout_s=120.0)
        self.durations_s: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="auditor-verify", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                ok = self.client.verify().ok
            except HiltError:
                ok = False
            self.durations_s.append(time.perf_counter() - t)
            self.failures += 0 if ok else 1

    def __enter__(self) -> VerifyLoop:
        self.client.whoami()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(180)
        self.client.close()


def service_mode(
    args: argparse.Namespace,
    pool: WorkerPool,
    ws: Workspace,
    alloc: CaseAllocator,
    tokens: list[str],
    admin_token: str,
    auditor_token: str,
    tmp: Path,
) -> dict[str, Any]:
    print("service mode (hilt store serve, HTTP on 127.0.0.1):")
    t = time.perf_counter()
    svc = start_service(ws, tmp / "service.log")
    print(f"  service up in {time.perf_counter() - t:.2f} s at {svc.url}")
    try:
        info = [{"url": svc.url, "token": tok} for tok in tokens]

        def paced_phase(
            name: str, tag: str, seed_base: int, click: str = "two", alone: bool = True
        ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            return run_phase(
                pool,
                alloc,
                name=name,
                mode="service",
                tag=tag,
                duration_s=args.paced_seconds,
                per_worker=paced_cap(args.paced_seconds, args.mean_interval),
                mean_interval_s=args.mean_interval,
                conn_info=info,
                seed_base=seed_base,
                click=click,
                service=svc if alone else None,
            )

        paced, acked_p = paced_phase("paced", "svc-paced", 1000)
        paced_one, acked_p1 = paced_phase(
            "paced, one request per click (decide-next)", "svc-click-paced", 1200, "one"
        )
        with VerifyLoop(svc.url, auditor_token) as auditor:
            verifying, acked_v = paced_phase(
                "paced, an auditor verifying in a loop", "svc-verify", 1500, alone=False
            )
        calls = auditor.durations_s
        verifying["verify_calls"] = len(calls)
        verifying["verify_failures"] = auditor.failures
        verifying["verify_mean_s"] = round(sum(calls) / len(calls), 3) if calls else None
        ratio = (
            round(verifying["p95_ms"] / paced["p95_ms"], 2)
            if verifying["p95_ms"] and paced["p95_ms"]
            else None
        )
        verifying["p95_vs_idle"] = ratio
        print(
            f"  the auditor's loop: {len(calls)} verify calls (mean "
            f"{verifying['verify_mean_s']} s, {auditor.failures} not OK); reviewers' p95 "
            f"{fmt_ms(verifying['p95_ms'])} ms vs {fmt_ms(paced['p95_ms'])} ms idle = {ratio}x"
        )
        sat, acked_s = run_phase(
            pool,
            alloc,
            name="saturation",
            mode="service",
            tag="svc-sat",
            duration_s=args.sat_seconds,
            per_worker=math.ceil(args.sat_decisions / args.workers),
            mean_interval_s=0.0,
            conn_info=info,
            seed_base=2000,
            service=svc,
        )
        one_process, acked_a = async_saturation(
            svc, tokens, args.sat_seconds, args.sat_decisions, "svc-async", "two"
        )
        one_process_one, acked_a1 = async_saturation(
            svc, tokens, args.sat_seconds, args.sat_decisions, "svc-click-async", "one"
        )
        admin = StoreClient(svc.url, admin_token, timeout_s=120.0)
        try:
            t = time.perf_counter()
            stored = read_back(admin)
            read_s = time.perf_counter() - t
            t = time.perf_counter()
            report = admin.verify()
            verify_s = time.perf_counter() - t
        finally:
            admin.close()
    finally:
        svc.stop()
    dur = durability(stored, acked_p + acked_p1 + acked_v + acked_s + acked_a + acked_a1, ("svc-",))
    print(
        f"  read back {len(stored)} decisions through the service in {read_s:.2f} s: "
        f"acknowledged {dur['acknowledged']}, lost {dur['lost']}, duplicated "
        f"{dur['duplicated']}, stored but not acknowledged {dur['stored_not_acknowledged']}"
    )
    print(f"  verify through the service: {report.summary()} ({verify_s:.2f} s)")
    return {
        "paced": paced,
        "paced_while_verifying": verifying,
        "saturation": sat,
        "saturation_one_process": one_process,
        # The click as the review panel sends it: one request (decide-next) after the first
        # lease; the phases above send a decision and then a lease.
        "paced_one_request": paced_one,
        "saturation_one_process_one_request": one_process_one,
        **dur,
        "verify_ok": report.ok,
        "verify_events": report.events,
        "verify_s": round(verify_s, 3),
    }


def embedded_mode(
    args: argparse.Namespace,
    pool: WorkerPool,
    ws: Workspace,
    alloc: CaseAllocator,
    users: list[str],
) -> dict[str, Any]:
    print("embedded mode (open_store_as(path, Identity(name=...)): lock + open per operation):")
    info = [{"workspace": str(ws.root), "user": u} for u in users]
    paced, acked_p = run_phase(
        pool,
        alloc,
        name="paced",
        mode="embedded",
        tag="emb-paced",
        duration_s=args.embedded_paced_seconds,
        per_worker=paced_cap(args.embedded_paced_seconds, args.mean_interval),
        mean_interval_s=args.mean_interval,
        conn_info=info,
        seed_base=3000,
    )
    sat, acked_s = run_phase(
        pool,
        alloc,
        name="saturation",
        mode="embedded",
        tag="emb-sat",
        duration_s=args.embedded_sat_seconds,
        per_worker=math.ceil(args.sat_decisions / args.workers),
        mean_interval_s=0.0,
        conn_info=info,
        seed_base=4000,
    )
    op = operator(ws)
    stored = read_back(op)
    t = time.perf_counter()
    report = op.verify()
    verify_s = time.perf_counter() - t
    dur = durability(stored, acked_p + acked_s, ("emb-",))
    print(
        f"  read back {dur['stored']} embedded-mode decisions: acknowledged "
        f"{dur['acknowledged']}, lost {dur['lost']}, duplicated {dur['duplicated']}, "
        f"stored but not acknowledged {dur['stored_not_acknowledged']}"
    )
    print(f"  verify (whole store, both modes): {report.summary()} ({verify_s:.2f} s)")
    return {
        "paced": paced,
        "saturation": sat,
        **dur,
        "verify_ok": report.ok,
        "verify_events": report.events,
        "verify_s": round(verify_s, 3),
    }


# ---------------------------------------------------------------------------- raw baseline
#: Named, so the baseline keeps working when the store's decisions table gains columns.
RAW_COLUMNS = (
    "decision_id, request_id, case_id, prediction_id, model_version, reviewer, reviewer_role,"
    " action, predicted_label, final_label, reason_code, comment_sealed, time_on_item_ms,"
    " model_shown, created_at, seq"
)


def raw_baseline(ws: Workspace, path: Path, rows: int) -> dict[str, Any]:
    """One open DuckDB connection, one transaction per row: the floor of any design here."""
    print(f"raw DuckDB baseline (one open connection, one transaction per row, {rows} rows):")
    ddl = [
        s
        for s in create_statements(ws.settings())
        if s.startswith(("CREATE TABLE decisions", "CREATE TABLE audit_log"))
    ]
    con = duckdb.connect(str(path))
    out: dict[str, Any] = {"rows": rows}
    try:
        for statement in ddl:
            con.execute(statement)
        for variant in ("insert", "chained"):
            latencies: list[float] = []
            t0 = time.perf_counter()
            for i in range(rows):
                start = time.perf_counter()
                decision_id = uuid.uuid4().hex
                now = time.time()
                con.execute("BEGIN TRANSACTION")
                seq = i + 1
                if variant == "chained":
                    head = con.execute(
                        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
                    ).fetchall()
                    seq = int(head[0][0]) + 1 if head else 1
                    prev = str(head[0][1]) if head else GENESIS_HASH
                    entry = canonical_json(
                        {
                            "seq": seq,
                            "ts": utc_timestamp_now(now),
                            "actor": "rev01",
                            "role": "reviewer",
                            "action": "decision.record",
                            "object_type": "case",
                            "object_id": f"RAW-{i:07d}",
                            "payload": {"decision_id": decision_id, "final_label": "1"},
                        }
                    )
                    con.execute(
                        "INSERT INTO audit_log VALUES (?, ?, ?, ?)",
                        [seq, entry, prev, chain_hash(prev, entry)],
                    )
                con.execute(
                    f"INSERT INTO decisions ({RAW_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, to_timestamp(?), ?)",
                    [
                        decision_id,
                        f"raw-{variant}-{i:07d}",
                        f"RAW-{i:07d}",
                        i + 1,
                        "bench-model-1",
                        "rev01",
                        "reviewer",
                        "accept",
                        "1",
                        "1",
                        None,
                        None,
                        12_000,
                        True,
                        now,
                        seq,
                    ],
                )
                con.execute("COMMIT")
                latencies.append((time.perf_counter() - start) * 1000.0)
            wall = time.perf_counter() - t0
            stats = {"per_s": round(rows / wall, 1), **latency_stats(latencies)}
            out[variant] = stats
            label = "decision row only" if variant == "insert" else "decision + chained audit row"
            print(
                f"  {label}: {stats['per_s']}/s; p50 {fmt_ms(stats['p50_ms'])} ms, "
                f"p95 {fmt_ms(stats['p95_ms'])} ms, p99 {fmt_ms(stats['p99_ms'])} ms"
            )
    finally:
        con.close()
    return out


def utc_timestamp_now(epoch_s: float) -> str:
    return utc_timestamp(datetime.fromtimestamp(epoch_s, UTC))


# ---------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small, fast variant (smoke test)")
    p.add_argument("--workers", type=int, default=None, help="reviewer processes (default 32)")
    p.add_argument("--paced-seconds", type=float, default=None, help="service paced phase")
    p.add_argument("--sat-seconds", type=float, default=None, help="service saturation phase")
    p.add_argument(
        "--sat-decisions",
        type=int,
        default=None,
        help="cap on decisions per saturation phase, over all workers",
    )
    p.add_argument("--embedded-paced-seconds", type=float, default=None)
    p.add_argument("--embedded-sat-seconds", type=float, default=None)
    p.add_argument("--raw-rows", type=int, default=None, help="rows per raw-baseline variant")
    p.add_argument(
        "--mean-interval",
        type=float,
        default=MEAN_INTERVAL_S,
        help=f"mean pause (s) before each paced decision (default {MEAN_INTERVAL_S:g})",
    )
    p.add_argument(
        "--min-cases",
        type=int,
        default=0,
        help="seed at least this many cases (to measure on a bigger store)",
    )
    p.add_argument("--skip-embedded", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = p.parse_args(argv)
    defaults: dict[str, Any] = (
        # Quick: every phase runs and decides (6 reviewers x 4 s at 0.5/s: ~12 paced
        # decisions; none at all has a chance of 1 in ~160,000), its figures mean little.
        {
            "workers": 6,
            "paced_seconds": 4.0,
            "sat_seconds": 1.5,
            "sat_decisions": 500,
            "embedded_paced_seconds": 3.0,
            "embedded_sat_seconds": 1.5,
            "raw_rows": 100,
        }
        if args.quick
        else {
            "workers": 32,
            "paced_seconds": 40.0,
            "sat_seconds": 10.0,
            "sat_decisions": 10_000,
            "embedded_paced_seconds": 20.0,
            "embedded_sat_seconds": 10.0,
            "raw_rows": 3000,
        }
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not 1 <= args.workers <= 99:
        p.error("--workers must be between 1 and 99")
    if not args.mean_interval > 0:
        p.error("--mean-interval must be more than 0 seconds")
    for name in PHASES:
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be more than 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-concurrency-"))
    pool = WorkerPool(args.workers)
    result = begin(
        "store_concurrency",
        quick=args.quick,
        workers=args.workers,
        mean_interval_s=args.mean_interval,
        # What each phase was asked for (seconds; decisions and rows for the caps).
        phases={name: getattr(args, name) for name in PHASES},
    )
    try:
        print(
            f"store concurrency: {args.workers} reviewer processes, "
            f"{os.cpu_count()} CPUs, workspace {tmp / 'ws'}"
        )
        print(f"  started {args.workers} worker processes in {pool.start(120.0):.2f} s")
        ws = Workspace.at(tmp / "ws")
        create_workspace(ws, CONFIG)
        n_cases = max(needed_cases(args), args.min_cases)
        t = time.perf_counter()
        ids = seed(ws, n_cases)
        print(
            f"  seeded {len(ids)} cases with one prediction each in {time.perf_counter() - t:.2f} s"
        )
        op = operator(ws)
        users = [f"rev{i:02d}" for i in range(1, args.workers + 1)]
        tokens = [op.add_user(u, "reviewer").token for u in users]
        admin_token = op.add_user("bench-admin", "admin").token
        auditor_token = op.add_user("bench-auditor", "auditor").token
        result["cases"] = len(ids)
        alloc = CaseAllocator(ids)

        result["service"] = service_mode(
            args, pool, ws, alloc, tokens, admin_token, auditor_token, tmp
        )
        if not args.skip_embedded:
            result["embedded"] = embedded_mode(args, pool, ws, alloc, users)
        result["raw"] = raw_baseline(ws, tmp / "raw.duckdb", args.raw_rows)

        svc = result["service"]
        p95 = svc["paced"]["p95_ms"]
        sat = svc["saturation_one_process"]["throughput_per_s"]
        lost = svc["lost"] + (result["embedded"]["lost"] if "embedded" in result else 0)
        ratio = svc["paced_while_verifying"]["p95_vs_idle"]
        # The click as the panel sends it (decide-next: the decision and the next lease).
        p95_one = svc["paced_one_request"]["p95_ms"]
        sat_one = svc["saturation_one_process_one_request"]["throughput_per_s"]
        targets = {
            "service_paced_p95_le_10ms": p95 is not None and p95 <= TARGET_P95_MS,
            "service_paced_p95_le_10ms_one_request": p95_one is not None
            and p95_one <= TARGET_P95_MS,
            "p95_while_verifying_le_2x_idle": ratio is not None and ratio <= 2.0,
            "service_saturation_ge_500_per_s": sat is not None and sat >= TARGET_SATURATION_PER_S,
            "service_saturation_ge_500_per_s_one_request": sat_one is not None
            and sat_one >= TARGET_SATURATION_PER_S,
            "zero_lost": lost == 0,
            "verify_ok": bool(svc["verify_ok"])
            and bool(result.get("embedded", {}).get("verify_ok", True)),
        }
        result["targets"] = targets
        yes = {True: "yes", False: "no"}
        print("targets:")
        print(
            f"  service p95 <= {TARGET_P95_MS:g} ms at {args.workers} x "
            f"{1 / args.mean_interval:g}/s: "
            f"{fmt_ms(p95)} ms -> target met: {yes[targets['service_paced_p95_le_10ms']]}"
        )
        print(
            f"    the same, one request per click (decide-next, the next lease included): "
            f"{fmt_ms(p95_one)} ms -> target met: "
            f"{yes[targets['service_paced_p95_le_10ms_one_request']]}"
        )
        print(
            f"  service saturation >= {TARGET_SATURATION_PER_S:g}/s with the audit chain (one "
            f"asyncio load process): {sat}/s -> target met: "
            f"{yes[targets['service_saturation_ge_500_per_s']]}"
        )
        print(
            f"    the same, one request per click (decide-next): {sat_one}/s -> target met: "
            f"{yes[targets['service_saturation_ge_500_per_s_one_request']]}"
        )
        print(
            f"  reviewers' p95 while an auditor verifies in a loop <= 2x idle: {ratio}x "
            f"-> target met: {yes[targets['p95_while_verifying_le_2x_idle']]}"
        )
        print(f"  0 lost: {lost} lost -> target met: {yes[targets['zero_lost']]}")
        print(f"  verify OK after the run: {yes[targets['verify_ok']]}")
    finally:
        pool.stop()
        cleanup(tmp, args.keep)
    finish(result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
