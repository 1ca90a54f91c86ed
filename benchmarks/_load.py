"""The load processes of store_concurrency: the fork server its reviewer processes start
from, and the one-process asyncio load generator of its phase 3b (one simulated reviewer per
token, each on a keep-alive connection of ``_keepalive.py``).

A reviewer's click goes to the service in one of two ways (``CLICKS``): as two requests, the
decision (``POST /v1/decisions``) and then the next lease (``POST /v1/queue/next``), as the
review panel sent it before session 28; or as one, ``POST /v1/queue/decide-next``
(``decide_and_next``: the decision and the next lease in one transaction), as the panel
sends it now after its first lease (``ReviewBackend.submit_and_next``; review_latency.py
times it behind the panel). The routes are the store's own (``Store.<operation>.route``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

from benchmarks._common import Service, latency_stats
from benchmarks._keepalive import KeepAlive
from hilt.pipelines.store import Store

#: How a click is sent: "two" requests (decision, then the next lease) or "one"
#: (decide-next). The value is the requests a click takes.
CLICKS = {"two": 2, "one": 1}
#: Extra time a phase may take beyond its duration before the run gives up on a process.
PHASE_GRACE_S = 90.0

#: What the load processes import, once: in the fork server they are forked from.
PRELOAD = [
    "duckdb",
    "httpx",
    "polars",
    "hilt.pipelines.store",
    "hilt.pipelines.store.modes.client",
    "hilt.pipelines.store.modes.embedded",
    "benchmarks._common",
    "benchmarks._load",
]


def processes() -> ForkServerContext:
    """How the reviewer processes and the asyncio load process start: forked from a fork
    server (a clean process, started once, that imported PRELOAD), not spawned (a fresh
    interpreter importing hilt, polars and DuckDB for each: seconds of CPU per process,
    32 times in the full run, on the cores the phases then share). Each still runs the
    script's top level (its imports found loaded) and its own loop."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class Clicks:
    """A reviewer's click latencies, however the click was sent: a decide-next alone, or a
    decision and the lease that follows it (the two summed: the panel sent them back to
    back), so the two ways are compared on the same thing."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self._decided_ms: float | None = None

    def decided(self, ms: float, *, with_lease: bool) -> None:
        """A decision acknowledged after ``ms``; ``with_lease``: its request leased too."""
        if with_lease:
            self.ms.append(ms)
            self._decided_ms = None
        else:
            self._decided_ms = ms

    def leased(self, ms: float) -> None:
        """A lease after ``ms``: the second half of a click when a decision preceded it."""
        if self._decided_ms is not None:
            self.ms.append(self._decided_ms + ms)
        self._decided_ms = None

    def failed(self) -> None:
        self._decided_ms = None


async def _reviewers(
    url: str,
    tokens: list[str],
    per_token: int,
    duration_s: float,
    cap: int,
    tag: str,
    click: str,
) -> dict[str, Any]:
    """``len(tokens) * per_token`` simulated reviewers on keep-alive connections, each
    leasing then deciding (``accept``), flat out, until ``duration_s`` or ``cap``
    decisions; ``click`` (``CLICKS``): after its first lease a reviewer decides with
    decide-next ("one"), or decides and then leases ("two"). Reviewers sharing a token
    share its lease, so each token has one reviewer at a time on it (``per_token`` > 1
    only queues them)."""
    lease_path = Store.next_case.route.path
    decide_path = (
        Store.decide_and_next.route.path if click == "one" else Store.record_decision.route.path
    )
    latencies: list[float] = []
    clicks: list[Clicks] = []
    acked: list[tuple[str, str]] = []
    errors: dict[str, int] = {}
    budget = [cap]
    # One keep-alive connection per simulated reviewer (``_keepalive.py``: httpx took more
    # CPU a request than the service, and the generator was the limit).
    connections = [KeepAlive(url) for _ in range(len(tokens) * per_token)]
    try:
        t0 = time.perf_counter()
        deadline = t0 + duration_s

        async def reviewer(index: int, token: str, lock: asyncio.Lock) -> None:
            headers = {"authorization": f"Bearer {token}"}
            http = connections[index]
            mine = Clicks()
            clicks.append(mine)
            leased: Any = None
            i = 0
            while time.perf_counter() < deadline and budget[0] > 0:
                async with lock:  # one lease per token at a time
                    budget[0] -= 1
                    if leased is None:
                        start = time.perf_counter()
                        status, leased = await http.request("POST", lease_path, headers)
                        if status != 200 or leased is None:
                            key = f"lease: {status}"
                            errors[key] = errors.get(key, 0) + 1
                            leased = None
                            mine.failed()
                            if status == 200:
                                return  # the queue is empty
                            continue
                        mine.leased((time.perf_counter() - start) * 1000.0)
                    case_id = leased["case"]["case_id"]
                    request_id = f"{tag}-{index:03d}-{i:06d}"
                    i += 1
                    start = time.perf_counter()
                    status, answer = await http.request(
                        "POST",
                        decide_path,
                        headers,
                        {"case_id": case_id, "action": "accept", "request_id": request_id},
                    )
                    ms = (time.perf_counter() - start) * 1000.0
                    if status != 200:
                        errors[str(status)] = errors.get(str(status), 0) + 1
                        leased = None  # lease again: the reviewer's own live lease first
                        mine.failed()
                        continue
                    latencies.append(ms)
                    decided = answer["decision"] if click == "one" else answer
                    acked.append((request_id, str(decided["decision_id"])))
                    mine.decided(ms, with_lease=click == "one")
                    leased = answer["leased"] if click == "one" else None
                    if click == "one" and leased is None:
                        key = f"lease: {status}"
                        errors[key] = errors.get(key, 0) + 1
                        return  # the queue is empty

        for k, token in enumerate(tokens):  # sign in (a token's first use reads the store)
            path = Store.whoami.route.path
            await connections[k].request("GET", path, {"authorization": f"Bearer {token}"})
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + duration_s
        locks = [asyncio.Lock() for _ in tokens]
        await asyncio.gather(
            *(
                reviewer(k * len(tokens) + j, token, locks[j])
                for k in range(per_token)
                for j, token in enumerate(tokens)
            )
        )
        wall = time.perf_counter() - t0
    finally:
        for connection in connections:
            await connection.close()
    return {
        "latencies_ms": latencies,
        "click_ms": [ms for c in clicks for ms in c.ms],
        "acked": acked,
        "errors": errors,
        "wall_s": wall,
        "generator_cpu_s": time.process_time() - cpu0,
    }


def _main(conn: Connection, job: dict[str, Any]) -> None:
    cpus = job.pop("cpus", None)
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    try:
        conn.send(("result", asyncio.run(_reviewers(**job))))
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))


def one_process_load(
    service: Service,
    tokens: list[str],
    duration_s: float,
    cap: int,
    tag: str,
    click: str,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The saturation load from ONE asyncio process (keep-alive connections, one simulated
    reviewer per token, ``click`` as in ``CLICKS``), so that the load generator does not
    take the service's cores the way 32 reviewer processes do; its own CPU seconds and
    the service's (from /proc) beside the wall time. Returns the phase's numbers and the
    acknowledged (request id, decision id) pairs."""
    ctx = processes()
    parent, child = ctx.Pipe()
    # The service on one core, the generator on the others (when there are two or more):
    # neither takes the other's CPU. Every thread of the service is pinned (new ones
    # inherit it), and put back as it was afterwards.
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    service_cpus, generator_cpus = {cpus[-1]}, cpus[:-1]
    before = _pin(service.process.pid, service_cpus) if pinned else None
    job = {"url": service.url, "tokens": tokens, "per_token": 1, "duration_s": duration_s}
    job |= {"cap": cap, "tag": tag, "click": click, "cpus": generator_cpus if pinned else None}
    proc = ctx.Process(target=_main, args=(child, job))
    service_cpu0 = service.cpu_s()
    try:
        proc.start()
        child.close()
        if not parent.poll(duration_s + PHASE_GRACE_S):
            proc.kill()
            raise RuntimeError("the asyncio load generator did not finish in time")
        kind, r = parent.recv()
        proc.join(10)
    finally:
        if before is not None:
            _pin(service.process.pid, before)
    if kind != "result":
        raise RuntimeError(f"the asyncio load generator failed: {r}")
    service_cpu1 = service.cpu_s()
    wall = float(r["wall_s"])
    acked = [(str(a), str(b)) for a, b in r["acked"]]
    service_cpu = (
        round(service_cpu1 - service_cpu0, 2)
        if service_cpu0 is not None and service_cpu1 is not None
        else None
    )
    stats: dict[str, Any] = {
        "simulated_reviewers": len(tokens),
        "requests_per_click": CLICKS[click],
        "duration_s": round(wall, 3),
        "decisions": len(acked),
        "throughput_per_s": round(len(acked) / wall, 2) if wall > 0 else None,
        **latency_stats(r["latencies_ms"]),
        "click": latency_stats(r["click_ms"]),
        "errors": r["errors"],
        "generator_cpu_s": round(float(r["generator_cpu_s"]), 2),
        "service_cpu_s": service_cpu,
        # What the service does with one core, whatever share of it the machine gave it.
        "decisions_per_service_cpu_s": round(len(acked) / service_cpu, 1) if service_cpu else None,
        # The same, as review_latency.py prints it (cpu_per_decision_ms.service).
        "service_cpu_ms_per_decision": round(service_cpu * 1000 / len(acked), 2)
        if service_cpu and acked
        else None,
        "pinned": {"service": sorted(service_cpus), "generator": generator_cpus}
        if pinned
        else None,
    }
    return stats, acked


def _pin(pid: int, cpus: set[int]) -> set[int]:
    """Pin every thread of process ``pid`` to ``cpus``; returns its affinity before."""
    before = os.sched_getaffinity(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)
    return before
