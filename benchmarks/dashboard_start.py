#!/usr/bin/env python
"""Dashboard cold start: from the request of a dashboard page to its first content in a browser.

What it measures
----------------
A running `hilt serve` (``start_dashboards``: the store service and Voila) over a workspace
behind a sign-in proxy, and headless Debian Chromium (/usr/bin/chromium, driven by
Playwright for Python; never ``playwright install``). For each dashboard, a fresh browser
context (its own ``X-Forwarded-User`` and the proxy's secret, so its own Voila kernel: a
cold start every time) requests the page, and the clock stops when the first meaningful
content is on screen (with the CPU seconds the page's kernel and the store service had used
by then: on a shared machine they say what the wall clock cannot):

- review (as alice, a reviewer): a case card showing "Credit amount";
- oversight (as lena, a lead): the queue's health panel;
- audit (as otto, the auditor): the dashboard with its header naming otto; and, separately,
  when the integrity panel shows the verification's verdict over the whole log.

Each page is opened ``--repeat`` times; every run is printed, with the median.

Setup (untimed)
---------------
The workspace is built by benchmarks/verify.py's ``build_workspace`` (a million chained
``decision.record`` events and their decision rows in bulk, then a signed checkpoint), with
few cases that the decisions cycle over; then ``--pending`` fresh cases with a prediction
each, so that the review queue has cases to show.

Targets (from the issue): review's first case <= 2 s; oversight and audit (1,000,000
events) <= 3 s. Nothing about speed is asserted. The last line is one JSON object.

Run it with another checkout's Python (``/path/to/old/.venv/bin/python
benchmarks/dashboard_start.py``) to measure that code: hilt, its notebooks and its Voila
come from the interpreter's installation; only this script and verify.py's builder are
read from here.

Usage: benchmarks/dashboard_start.py [--quick] [--events N] [--repeat N] [--pages ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402
from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402

from benchmarks._common import CONFIG, begin, finish, free_port  # noqa: E402
from benchmarks.verify import (  # noqa: E402
    MODEL_VERSION,
    build_workspace,
    predictions_for,
    synthetic_cases,
)
from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards  # noqa: E402
from hilt.pipelines.store import Identity, open_store_as  # noqa: E402
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER  # noqa: E402
from hilt.pipelines.store.create import create_workspace  # noqa: E402
from hilt.pipelines.workspace import Workspace  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
#: The integrity panel's verdict on the whole log ("✓ OK 1000009 events", "✗ BROKEN at ...").
VERDICT = re.compile(r"[✓✗] (OK|BROKEN)")
TARGETS_S = {"review": 2.0, "oversight": 3.0, "audit": 3.0}
#: Who opens each page, and what on it counts as its first meaningful content.
PAGES: dict[str, tuple[str, str, str]] = {
    "review": ("alice", ".hilt-case-card", "Credit amount"),
    "oversight": ("lena", ".hilt-queue-health", ""),
    "audit": ("otto", ".hilt-audit-dashboard", "otto (auditor)"),
}


def proxied_config(folder: Path, secret: str) -> Path:
    """data/hilt.toml behind a sign-in proxy whose secret is ``secret`` (no local user)."""
    sha = hashlib.sha256(secret.encode()).hexdigest()
    lines = [ln for ln in CONFIG.read_text().splitlines() if not ln.startswith("local_user")]
    lines.insert(lines.index("[access]") + 1, f'proxy_secret_sha256 = "{sha}"')
    path = folder / "hilt.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def add_pending(ws: Workspace, n: int, seed: int) -> None:
    """``n`` fresh cases (PEND-...) with a prediction each: the review queue's work."""
    cases = synthetic_cases(n).with_columns(
        pl.format("PEND-{}", pl.int_range(1, n + 1).cast(pl.String).str.zfill(7)).alias(
            "application_id"
        )
    )
    op = open_store_as(ws, Identity(operator=True))
    op.ingest_cases(cases)
    sha = hashlib.sha256(MODEL_VERSION.encode()).hexdigest()
    op.add_predictions(MODEL_VERSION, predictions_for(cases["application_id"], seed), sha)
    op.close()


def kernels_of(server: DashboardServer) -> dict[str, int]:
    """Voila's kernels: kernel id -> process id (Voila's children, named by their
    connection file ``kernel-<id>.json``)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        named = re.search(r"kernel-([0-9a-f-]+)\.json", cmdline)
        if int(fields[1]) == server.voila.pid and named:
            found[named.group(1)] = int(stat.parent.name)
    return found


#: The page's kernel, as its script reads it (Voila's page configuration).
PAGE_KERNEL_ID = (
    "() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId"
)


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None: gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_page(
    browser: Browser, server: DashboardServer, name: str, secret: str, timeout_ms: int
) -> dict[str, float | None]:
    """One cold start of dashboard ``name``: seconds to its first content (and, for the
    audit page, to the verification's verdict), and the CPU seconds its kernel had used by
    then (``kernel_cpu_s``: the page's own process, whatever the machine's load); None for
    what did not show in time."""
    user, selector, text = PAGES[name]
    # A warm kernel (started ahead, pipelines/dashboards/kernels.py) has used CPU before
    # the request: what each of Voila's kernels had used by then.
    before = {pid: cpu_s(pid) for pid in kernels_of(server).values()}
    ctx = browser.new_context(
        extra_http_headers={"X-Forwarded-User": user, PROXY_SECRET_HEADER: secret}
    )
    out: dict[str, float | None] = {"first_content_s": None}
    store_before = cpu_s(server.store.pid)
    try:
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(server.dashboard_url(name), wait_until="commit", timeout=timeout_ms)
        shown = page.locator(selector)
        expect(shown).to_be_visible(timeout=timeout_ms)
        if text:
            expect(shown).to_contain_text(text, timeout=timeout_ms)
        out["first_content_s"] = time.perf_counter() - t0
        pid = kernels_of(server).get(page.evaluate(PAGE_KERNEL_ID))
        out["kernel_cpu_s"] = None if pid is None else cpu_s(pid)
        out["kernel_cpu_before_s"] = None if pid is None else before.get(pid, 0.0)
        store_now = cpu_s(server.store.pid)
        if store_before is not None and store_now is not None:
            out["store_cpu_s"] = round(store_now - store_before, 3)
        if name == "audit":
            out["verified_s"] = None
            integrity = page.locator(".hilt-integrity")
            expect(integrity).to_contain_text(VERDICT, timeout=timeout_ms)
            out["verified_s"] = time.perf_counter() - t0
    except AssertionError:
        what = "the verdict" if out["first_content_s"] is not None else "the first content"
        print(f"  {name}: {what} not shown within {timeout_ms / 1000:.0f} s")
    finally:
        ctx.close()
    return out


def seconds(value: float | None) -> str:
    return "timed out" if value is None else f"{value:.2f} s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--quick", action="store_true", help="2,000 events, one run of the review page (smoke)"
    )
    p.add_argument("--events", type=int, default=None, help="decision events in the log")
    p.add_argument("--cases", type=int, default=2_000, help="decided cases (events cycle)")
    p.add_argument("--pending", type=int, default=500, help="cases waiting for review")
    p.add_argument("--repeat", type=int, default=None, help="cold starts of each page")
    p.add_argument("--pages", nargs="+", choices=sorted(PAGES), default=None)
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a page")
    args = p.parse_args(argv)
    if args.events is None:
        args.events = 2_000 if args.quick else 1_000_000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.pages is None:
        args.pages = ["review"] if args.quick else list(PAGES)
    if args.quick:
        args.cases, args.pending = min(args.cases, 500), min(args.pending, 50)
    if args.events < 1 or args.cases < 2 or args.pending < 1 or not 1 <= args.repeat <= 20:
        p.error("--events, --pending positive, --cases at least 2, --repeat 1 to 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-dash-"))
    secret = secrets.token_hex(24)
    result = begin(
        "dashboard_start",
        quick=args.quick,
        hilt=str(Path(sys.prefix).parent),
        generated_events=args.events,
    )
    try:
        ws = Workspace.at(tmp / "ws")
        create_workspace(ws, proxied_config(tmp, secret))
        t = time.perf_counter()
        build_workspace(ws, args.events, args.cases, args.seed)
        add_pending(ws, args.pending, args.seed)
        result["setup_s"] = round(time.perf_counter() - t, 2)
        print(
            f"dashboard cold start: {args.events:,} decision events, {args.pending} cases "
            f"pending, {os.cpu_count()} CPUs, hilt from {sys.prefix}; setup "
            f"{result['setup_s']} s (untimed)"
        )
        t = time.perf_counter()
        server = start_dashboards(ws, port=free_port(), store_port=free_port())
        result["server_start_s"] = round(time.perf_counter() - t, 2)
        runs: dict[str, list[dict[str, float | None]]] = {name: [] for name in args.pages}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
                )
                for i in range(args.repeat):
                    for name in args.pages:
                        run = open_page(browser, server, name, secret, int(args.timeout * 1000))
                        runs[name].append(run)
                        extra = (
                            f", verdict shown {seconds(run['verified_s'])}"
                            if "verified_s" in run
                            else ""
                        )
                        cpu, store = run.get("kernel_cpu_s"), run.get("store_cpu_s")
                        ahead = run.get("kernel_cpu_before_s")
                        print(
                            f"  {name:9s} run {i + 1}: first content "
                            f"{seconds(run['first_content_s'])}{extra}, kernel CPU "
                            f"{'?' if cpu is None else f'{cpu:.2f} s'}"
                            f"{f' ({ahead:.2f} s before the request)' if ahead else ''}"
                            ", store service CPU "
                            f"{'?' if store is None else f'{store:.2f} s'} "
                            f"(load {os.getloadavg()[0]:.2f})"
                        )
                browser.close()
        finally:
            server.stop()
        pages: dict[str, Any] = {}
        for name, got in runs.items():
            first = [r["first_content_s"] for r in got]
            # A page that did not show in time counts as the timeout (so the median says so).
            median = statistics.median(args.timeout if v is None else v for v in first)
            entry: dict[str, Any] = {
                "first_content_s": [None if v is None else round(v, 3) for v in first],
                "kernel_cpu_s": [r.get("kernel_cpu_s") for r in got],
                "kernel_cpu_before_s": [r.get("kernel_cpu_before_s") for r in got],
                "store_cpu_s": [r.get("store_cpu_s") for r in got],
                "median_s": round(median, 3),
                "target_s": TARGETS_S[name],
                "target_met": median <= TARGETS_S[name],
            }
            if name == "audit":
                verified = [r.get("verified_s") for r in got]
                entry["verified_s"] = [None if v is None else round(v, 3) for v in verified]
            pages[name] = entry
            print(
                f"{name}: median first content {median:.2f} s (target <= {TARGETS_S[name]:g} s:"
                f" {'met' if entry['target_met'] else 'not met'})"
            )
        result["pages"] = pages
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finish(result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
