#!/usr/bin/env python
"""Review latency: from a reviewer's Accept click to the next case rendered, server-side.

What it measures
----------------
The time a dashboard kernel spends between the Accept click arriving and the panel having
sent the next case to the browser: the real ``ReviewSession`` (hilt.widgets) on the real
backend of the reviewer dashboard (``open_review_backend``, as notebooks/review.ipynb calls
it in a `hilt serve` kernel), talking to the store service over HTTP with the gateway
token, on behalf of reviewer ``alice``. One iteration is ``accept_button.click()`` (what the
widget's comm handler calls for a click from the browser) until it returns; by then the
session has recorded the decision and leased the next case in one request (POST
/v1/queue/decide-next, ``decide_and_next``: the decision + its audit event, the queue's
choice, the lease + its audit event, the case record; one transaction), taken the progress
counts that came with the lease (queue_status, no request), and recomposed every widget. Each
iteration checks that the session shows a different case afterwards.

"Rendered" here means: every widget state change serialised for the front end. Outside a
kernel ipywidgets would drop its messages (DummyComm); this script installs a comm that
JSON-encodes each message as the kernel would before handing it to ZeroMQ, and counts the
messages and bytes. Not included: the ZeroMQ/websocket hop to the browser and the browser's
own layout and paint (tests/browser measures a whole page load instead). It also prints
the CPU a decision cost this process (the kernel) and the store service's (from /proc): on
a shared machine a steadier comparison than wall time.

Setup (untimed): a temporary workspace from data/hilt.toml behind a sign-in proxy (its
secret's sha256 in ``[access]``, as a deployment for many reviewers has it; the kernel
forwards the proxy's secret with each request, as Voila hands it over), the demo cases
(data/german_credit.csv), the demo's first model (``demo_first_model``: trained on 70 % of
the seed-labelled cases, registered in the store and approved by a lead, the other 30 %, 300
cases, scored into the review queue); a gateway
and an admin token; the store service (``hilt store serve``) as a subprocess on 127.0.0.1.
``min_dwell_ms=0`` (the double-click guard would refuse the benchmark's immediate clicks).
A few warm-up decisions are made first and not counted. Afterwards the decisions are read
back (all accept, all by alice) and ``verify()`` checks the audit log.

Targets (issue 13): median <= 10 ms, p95 <= 20 ms, no growth over 2,000 decisions
(``--drift``: 2,000 more cases scored into the queue, 2,000 timed decisions; the drift line
compares the first and the last quarter). Nothing is asserted: the script
prints whether they were met. The last line of output is one JSON object with every number.

Usage: benchmarks/review_latency.py [--quick] [--decisions N] [--warmup N] [--drift]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import comm
import polars as pl
from comm.base_comm import BaseComm, BuffersType, MaybeDict

from hilt.pipelines.dashboards.review import StoreReviewBackend, open_review_backend
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.scoring import demo_first_model, score_into_queue
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal, ReviewConfig, Reviewer, ReviewItem
from hilt.widgets.contracts.review import (
    Advanced,
    DecisionInput,
    DecisionReceipt,
    QueueStatus,
    ReviewBackend,
)
from hilt.widgets.review.session import ReviewSession

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import (  # noqa: E402
    CONFIG,
    CSV,
    HOLDOUT_SALT,
    begin,
    finish,
    latency_stats,
    operator,
    start_service,
)

REVIEWER = "alice"
GATEWAY = "voila-gateway"
#: The sign-in proxy's secret (the workspace's hilt.toml keeps only its sha256).
PROXY_SECRET = "benchmark-sign-in-proxy-" + "0123456789abcdef" * 2
TARGET_MEDIAN_MS = 10.0
TARGET_P95_MS = 20.0

T = TypeVar("T")


# ---------------------------------------------------------------------------- statistics
def fmt_ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} ms"


# ---------------------------------------------------------------------------- front-end wire
@dataclass
class Wire:
    """What the widgets would have sent to the browser: message and byte counts."""

    messages: int = 0
    bytes: int = 0


WIRE = Wire()


class SerializingComm(BaseComm):
    """A comm that JSON-encodes every message, as the kernel does before sending it."""

    def publish_msg(
        self,
        msg_type: str,
        data: MaybeDict = None,
        metadata: MaybeDict = None,
        buffers: BuffersType = None,
        **keys: Any,
    ) -> None:
        body = {
            "msg_type": msg_type,
            "content": {"comm_id": self.comm_id, "data": data or {}, **keys},
            "metadata": metadata or {},
        }
        WIRE.messages += 1
        WIRE.bytes += len(json.dumps(body, default=str)) + sum(len(b) for b in buffers or [])


def install_serializing_comm() -> None:
    def create(*args: Any, **kwargs: Any) -> BaseComm:
        return SerializingComm(*args, **kwargs)

    comm.create_comm = create


# ---------------------------------------------------------------------------- backend timing
@dataclass
class TimedBackend:
    """Delegates to the dashboard's backend and adds up the time spent in it (the store's
    HTTP round trips), so the total can be split into store and widgets."""

    inner: ReviewBackend
    spent_s: float = 0.0
    calls: int = 0
    by_call: dict[str, list[float]] = field(default_factory=dict)

    def _timed(self, name: str, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            dt = time.perf_counter() - t0
            self.spent_s += dt
            self.calls += 1
            self.by_call.setdefault(name, []).append(dt * 1000)

    def reviewer(self) -> Reviewer:
        return self._timed("reviewer", self.inner.reviewer)

    def review_config(self) -> ReviewConfig:
        return self._timed("review_config", self.inner.review_config)

    def next_item(self) -> ReviewItem | None:
        return self._timed("next_item", self.inner.next_item)

    def submit(self, decision: DecisionInput) -> DecisionReceipt:
        return self._timed("submit", lambda: self.inner.submit(decision))

    def submit_and_next(self, decision: DecisionInput) -> Advanced:
        return self._timed("submit_and_next", lambda: self.inner.submit_and_next(decision))

    def queue_status(self) -> QueueStatus:
        return self._timed("queue_status", self.inner.queue_status)


@dataclass
class Requests:
    """The requests the panel's backend sent the store service, by operation: every
    operation of a ``StoreClient`` is one HTTP request (``perform``). A backend call can
    send none (``queue_status`` answered from the counts that came with the lease)."""

    by_operation: dict[str, int] = field(default_factory=dict)

    def watch(self, store: Store) -> None:
        """Count every operation ``store`` performs from now on."""
        perform = store.perform

        def counted(operation: Operation[Any, Any], arguments: dict[str, Any]) -> Any:
            self.by_operation[operation.name] = self.by_operation.get(operation.name, 0) + 1
            return perform(operation, arguments)

        store.perform = counted  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- setup
@dataclass
class Prepared:
    workspace: Workspace
    model_version: str
    cases: int
    waiting: int
    gateway_token: str
    admin_token: str


def behind_proxy_config(root: Path) -> Path:
    """data/hilt.toml behind the benchmark's sign-in proxy (and so without a local user)."""
    sha = hashlib.sha256(PROXY_SECRET.encode("utf-8")).hexdigest()
    lines = [
        x for x in CONFIG.read_text(encoding="utf-8").splitlines() if not x.startswith("local_user")
    ]
    lines.insert(lines.index("[access]") + 1, f'proxy_secret_sha256 = "{sha}"')
    path = root / "hilt.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(root: Path, extra_cases: int = 0) -> Prepared:
    ws = Workspace.at(root / "ws")
    create_workspace(ws, behind_proxy_config(root), holdout_salt=HOLDOUT_SALT)
    cases = pl.read_csv(CSV, infer_schema=False)
    operator(ws).ingest_cases(cases)
    lead = open_store_as(ws, Identity(name="lena"))
    first = demo_first_model(operator(ws), lead, ws.settings(), ws.root / "models")
    op = operator(ws)
    if extra_cases > 0:
        # Copies of the demo cases under new ids, without their labels, scored by the same
        # model into the queue (enough cases for a long run: --drift).
        copies = pl.concat([cases] * math.ceil(extra_cases / cases.height)).head(extra_cases)
        ids = [f"DRIFT-APP-{k:06d}" for k in range(1, extra_cases + 1)]
        copies = copies.with_columns(pl.Series(ws.settings().use_case.id_column, ids))
        op.ingest_cases(copies.drop(ws.settings().target.column))
        model = TrainedModel.load(first.path)
        score_into_queue(op, model, ids, ws.settings(), first.model)
    waiting = op.queue_status().waiting
    gateway = op.add_user(GATEWAY, "gateway").token
    admin = op.add_user("dana", "admin").token
    return Prepared(ws, first.model, cases.height, waiting, gateway, admin)


# ---------------------------------------------------------------------------- the run
def accept_and_time(session: ReviewSession, backend: TimedBackend) -> tuple[float, float, Wire]:
    """One Accept click; (total ms, ms inside the backend, front-end messages sent)."""
    before = session.item
    if before is None:
        raise RuntimeError("the queue ran dry: no case on screen to accept")
    store_before = backend.spent_s
    wire_before = Wire(WIRE.messages, WIRE.bytes)
    t0 = time.perf_counter()
    session.decision_bar.accept_button.click()
    total_ms = (time.perf_counter() - t0) * 1000
    after = session.item
    if session.status.level != "success":
        raise RuntimeError(f"the accept was not recorded: {session.status.text}")
    if after is None or after.case_id == before.case_id or session.phase != "review":
        raise RuntimeError(f"the next case was not shown (phase {session.phase})")
    sent = Wire(WIRE.messages - wire_before.messages, WIRE.bytes - wire_before.bytes)
    return total_ms, (backend.spent_s - store_before) * 1000, sent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="10 decisions, 1 warm-up")
    p.add_argument("--decisions", type=int, default=None, help="timed decisions (default 200)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first decisions (5)")
    p.add_argument(
        "--drift",
        action="store_true",
        help="2,000 decisions on 2,000 more scored cases: does the round trip grow?",
    )
    args = p.parse_args(argv)
    args.extra_cases = 2000 if args.drift else 0
    if args.decisions is None:
        args.decisions = 2000 if args.drift else 10 if args.quick else 200
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    if args.decisions < 1 or args.warmup < 0:
        p.error("--decisions must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = begin("review_latency", quick=bool(args.quick))
    install_serializing_comm()
    with tempfile.TemporaryDirectory(prefix="hilt-review-latency-") as tmp:
        t_setup = time.perf_counter()
        prep = prepare(Path(tmp), args.extra_cases)
        needed = args.warmup + args.decisions + 1
        if prep.waiting < needed:
            print(
                f"the review queue holds {prep.waiting} cases; "
                f"{needed} are needed (--decisions + --warmup + 1)",
                file=sys.stderr,
            )
            return 2
        service = start_service(prep.workspace, Path(tmp) / "service.log")
        try:
            env = {
                "HILT_STORE_URL": service.url,
                "HILT_GATEWAY_TOKEN": prep.gateway_token,
                "HILT_WORKSPACE": str(prep.workspace.root),
                "HTTP_X_FORWARDED_USER": REVIEWER,
                "HTTP_X_HILT_PROXY_SECRET": PROXY_SECRET,
            }
            access = open_review_backend(env=env)
            if isinstance(access, Refusal):
                print(f"refused: {access.title}: {access.message}", file=sys.stderr)
                return 2
            if not isinstance(access, StoreReviewBackend):
                raise TypeError(f"not the review panel's store backend: {type(access)}")
            requests = Requests()
            requests.watch(access.store)
            backend = TimedBackend(access)
            t_open = time.perf_counter()
            session = ReviewSession(backend, min_dwell_ms=0)
            open_ms = (time.perf_counter() - t_open) * 1000
            setup_s = time.perf_counter() - t_setup
            print(
                f"setup: {prep.cases} demo cases, model {prep.model_version}, "
                f"{prep.waiting} cases in the review queue; store service at {service.url}; "
                f"reviewer {REVIEWER} via the gateway ({setup_s:.1f} s)"
            )
            print(f"panel opened on the first case in {open_ms:.1f} ms")

            for _ in range(args.warmup):
                accept_and_time(session, backend)
            totals: list[float] = []
            in_store: list[float] = []
            wires: list[Wire] = []
            backend.by_call.clear()
            requests.by_operation.clear()
            kernel_cpu0, service_cpu0 = time.process_time(), service.cpu_s()
            for _ in range(args.decisions):
                total_ms, store_ms, sent = accept_and_time(session, backend)
                totals.append(total_ms)
                in_store.append(store_ms)
                wires.append(sent)
            kernel_cpu = (time.process_time() - kernel_cpu0) * 1000 / args.decisions
            service_cpu1 = service.cpu_s()
            service_cpu = (
                (service_cpu1 - service_cpu0) * 1000 / args.decisions
                if service_cpu0 is not None and service_cpu1 is not None
                else None
            )
            widgets_ms = [t - s for t, s in zip(totals, in_store, strict=True)]

            admin = open_store_as(service.url, Identity(token=prep.admin_token))
            try:
                decisions = admin.decisions(limit=10_000)
                report = admin.verify()
            finally:
                admin.close()
        finally:
            service.stop()

    total = latency_stats(totals)
    store = latency_stats(in_store)
    widgets = latency_stats(widgets_ms)
    # The queue is derived from the decisions log, so the store's work grows as it fills:
    # the first and the last quarter of the run, side by side.
    quarter = max(1, len(totals) // 4)
    first_q = latency_stats(totals[:quarter])
    last_q = latency_stats(totals[-quarter:])
    calls = {name: latency_stats(v) for name, v in sorted(backend.by_call.items())}
    per_decision_calls = {name: len(v) / args.decisions for name, v in backend.by_call.items()}
    per_decision_requests = {
        name: n / args.decisions for name, n in sorted(requests.by_operation.items())
    }
    requests_per_click = sum(per_decision_requests.values())
    msgs = sum(w.messages for w in wires) / len(wires)
    kib = sum(w.bytes for w in wires) / len(wires) / 1024
    recorded = [d for d in decisions if d.reviewer == REVIEWER and d.action == "accept"]
    median_ok = total["p50_ms"] is not None and total["p50_ms"] <= TARGET_MEDIAN_MS
    p95_ok = total["p95_ms"] is not None and total["p95_ms"] <= TARGET_P95_MS

    print(
        f"accept click -> next case rendered, {args.decisions} decisions "
        f"({args.warmup} warm-up not counted):"
    )
    print(
        f"  total    median {fmt_ms(total['p50_ms'])}, p95 {fmt_ms(total['p95_ms'])}, "
        f"p99 {fmt_ms(total['p99_ms'])}, max {fmt_ms(total['max_ms'])}, "
        f"mean {fmt_ms(total['mean_ms'])}"
    )
    print(
        f"  store    median {fmt_ms(store['p50_ms'])}, p95 {fmt_ms(store['p95_ms'])} "
        "(backend calls: "
        + ", ".join(
            f"{name} x{per_decision_calls[name]:g} median {fmt_ms(calls[name]['p50_ms'])}"
            for name in calls
        )
        + ")"
    )
    print(
        f"  requests {requests_per_click:g} per click to the store service ("
        + ", ".join(f"{name} x{n:g}" for name, n in per_decision_requests.items())
        + ")"
    )
    print(
        f"  widgets  median {fmt_ms(widgets['p50_ms'])}, p95 {fmt_ms(widgets['p95_ms'])} "
        f"({msgs:.0f} front-end messages, {kib:.1f} KiB JSON per decision)"
    )
    print(
        f"  cpu      per decision: kernel {fmt_ms(kernel_cpu)}, store service "
        f"{fmt_ms(service_cpu)} (process CPU: less the machine's load than wall time is)"
    )
    print(
        f"  drift    first {quarter} decisions median {fmt_ms(first_q['p50_ms'])}, "
        f"last {quarter} median {fmt_ms(last_q['p50_ms'])}"
    )
    print(
        f"read back: {len(recorded)} accept decisions by {REVIEWER} "
        f"(expected {args.warmup + args.decisions}); audit log {report.summary()}"
    )
    print(
        f"targets: median <= {TARGET_MEDIAN_MS:.0f} ms: {'MET' if median_ok else 'MISSED'}; "
        f"p95 <= {TARGET_P95_MS:.0f} ms: {'MET' if p95_ok else 'MISSED'}"
    )
    result.update(
        {
            "decisions": args.decisions,
            "warmup": args.warmup,
            "reviewer": REVIEWER,
            "model_version": prep.model_version,
            "queue_waiting_at_start": prep.waiting,
            "panel_open_ms": round(open_ms, 3),
            "total": total,
            "store": store,
            "widgets": widgets,
            "first_quarter": first_q,
            "last_quarter": last_q,
            "store_calls": calls,
            "store_calls_per_decision": per_decision_calls,
            # HTTP requests to the service per click, as store_concurrency.py counts them.
            "requests_per_click": requests_per_click,
            "store_requests_per_decision": per_decision_requests,
            "cpu_per_decision_ms": {
                "kernel": round(kernel_cpu, 3),
                "service": round(service_cpu, 3) if service_cpu is not None else None,
            },
            "frontend_messages_per_decision": round(msgs, 2),
            "frontend_kib_per_decision": round(kib, 2),
            "recorded_accepts": len(recorded),
            "audit_ok": report.ok,
            "targets": {
                "median_ms": TARGET_MEDIAN_MS,
                "p95_ms": TARGET_P95_MS,
                "median_met": median_ok,
                "p95_met": p95_ok,
            },
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
        }
    )
    finish(result, started)
    return 0 if report.ok and len(recorded) == args.warmup + args.decisions else 1


if __name__ == "__main__":
    sys.exit(main())
