#!/usr/bin/env python
"""Dashboard memory per reviewer: what one more reviewer costs a dashboard host.

What it measures
----------------
The deployment of issue 15: a store service (`hilt store serve`) and, as on another host,
the dashboards only (``start_remote_dashboards``: `hilt serve --store-url`, Voila with the
gateway token, no workspace). ``--reviewers`` reviewers behind a sign-in proxy open the
review page one after the other, each in a session of their own (their own
``X-Forwarded-User``, so their own Voila kernel, as in a browser). A page's request returns
once Voila has run review.ipynb in its kernel, i.e. once the reviewer's first case is
leased and rendered; then, with every kernel still alive:

- each reviewer's kernel process: RSS, PSS and USS (``/proc/PID/smaps_rollup``; PSS divides
  the pages shared between processes, such as the Python libraries, among them; USS counts
  only the kernel's own pages: what one more kernel takes at least, PSS what it takes with
  its share of the libraries, RSS what it would take alone);
- the Voila server process: RSS and PSS before the first page and after each one (its
  growth per extra reviewer: the page's handlers, the kernel's channels);
- the store service's RSS at the end (one per store, not per reviewer).

Nothing about memory is asserted. The last line is one JSON object.

Usage: benchmarks/dashboard_memory.py [--quick] [--reviewers N] [--pending N]
"""

from __future__ import annotations

import argparse
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

import httpx  # noqa: E402

from benchmarks._common import Service, begin, finish, free_port, start_service  # noqa: E402
from benchmarks.dashboard_start import add_pending, proxied_config  # noqa: E402
from benchmarks.verify import build_workspace  # noqa: E402
from hilt.pipelines.dashboards.remote import start_remote_dashboards  # noqa: E402
from hilt.pipelines.store import Identity, open_store_as  # noqa: E402
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER  # noqa: E402
from hilt.pipelines.store.create import create_workspace  # noqa: E402
from hilt.pipelines.workspace import Workspace  # noqa: E402

MB = 1024 * 1024


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (its private pages only) of process ``pid`` in MB, from
    /proc/PID/smaps_rollup."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            kb[key] = int(rest.split()[0])
    uss = kb["Private_Clean"] + kb["Private_Dirty"]
    return {
        name: round(value * 1024 / MB, 1)
        for name, value in (("rss_mb", kb["Rss"]), ("pss_mb", kb["Pss"]), ("uss_mb", uss))
    }


def kernel_process(voila_pid: int, kernel_id: str) -> int:
    """The process of the dashboard kernel ``kernel_id``, a child of Voila ``voila_pid``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == voila_pid and f"kernel-{kernel_id}.json".encode() in cmdline:
            return int(proc.name)
    raise RuntimeError(f"no process of kernel {kernel_id} under Voila ({voila_pid})")


def open_review_page(url: str, user: str, secret: str, timeout_s: float) -> tuple[str, float]:
    """The review page as ``user`` sees it: (its kernel's id, seconds until served)."""
    t = time.perf_counter()
    r = httpx.get(
        url,
        headers={"X-Forwarded-User": user, PROXY_SECRET_HEADER: secret},
        timeout=timeout_s,
    )
    r.raise_for_status()
    found = re.search(r'"kernelId": "([0-9a-f-]+)"', r.text)
    if found is None:
        raise RuntimeError("no kernel id in the review page")
    return found.group(1), time.perf_counter() - t


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--quick", action="store_true", help="1 reviewer (smoke; no per-extra-reviewer figure)"
    )
    p.add_argument("--reviewers", type=int, default=None, help="reviewers opening the page")
    p.add_argument("--pending", type=int, default=200, help="cases waiting for review")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a page")
    args = p.parse_args(argv)
    if args.reviewers is None:
        args.reviewers = 1 if args.quick else 8
    if not 1 <= args.reviewers <= 64 or args.pending < args.reviewers:
        p.error("--reviewers 1 to 64, --pending at least --reviewers")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-dashmem-"))
    secret = secrets.token_hex(24)
    reviewers = [f"reviewer{i:02d}" for i in range(args.reviewers)]
    plural = "s" if args.reviewers != 1 else ""
    result = begin("dashboard_memory", quick=args.quick, reviewers=args.reviewers)
    store: Service | None = None
    try:
        ws = Workspace.at(tmp / "ws")
        config = proxied_config(tmp, secret)
        users = "".join(f'{n} = ["reviewer"]\n' for n in reviewers)
        config.write_text(
            config.read_text().replace("[access.users]\n", f"[access.users]\n{users}")
        )
        create_workspace(ws, config)
        build_workspace(ws, 100, 20, 20240601)  # an approved stand-in model, a short log
        add_pending(ws, args.pending, 20240601)
        op = open_store_as(ws, Identity(operator=True))
        gateway = op.add_user("dashboards-1", "gateway").token
        admin = op.add_user("dana", "admin").token
        op.close()
        store = start_service(ws, tmp / "store.log", timeout_s=120)
        store_url = store.url
        t = time.perf_counter()
        server = start_remote_dashboards(store_url, gateway, port=free_port())
        result["dashboards_start_s"] = round(time.perf_counter() - t, 2)
        print(
            f"dashboard memory: {args.reviewers} reviewer{plural}, {os.cpu_count()} CPUs, "
            f"hilt from {sys.prefix}; dashboards started in {result['dashboards_start_s']} s"
        )
        kernels: list[dict[str, Any]] = []
        voila = [{"reviewers": 0, **memory(server.voila.pid)}]
        try:
            for i, user in enumerate(reviewers, 1):
                kernel_id, served_s = open_review_page(
                    server.dashboard_url("review"), user, secret, args.timeout
                )
                mem = memory(kernel_process(server.voila.pid, kernel_id))
                kernels.append({"served_s": round(served_s, 2), **mem})
                voila.append({"reviewers": i, **memory(server.voila.pid)})
                print(
                    f"  reviewer {i}: page served in {served_s:.2f} s; kernel RSS "
                    f"{mem['rss_mb']} MB, PSS {mem['pss_mb']} MB, USS {mem['uss_mb']} MB; "
                    f"Voila RSS {voila[-1]['rss_mb']} MB (load {os.getloadavg()[0]:.2f})"
                )
            result["store_service"] = memory(store.process.pid)
            # Each page leased its reviewer's first case (the notebook ran to the case).
            checker = open_store_as(store_url, Identity(token=admin))
            result["leased"] = checker.queue_status().leased
            checker.close()
            if result["leased"] != args.reviewers:
                raise RuntimeError(f"{result['leased']} cases leased for {args.reviewers} pages")
        finally:
            server.stop()
        result["kernels"] = kernels
        result["voila"] = voila
        result["kernel_rss_mb_median"] = round(statistics.median(k["rss_mb"] for k in kernels), 1)
        result["kernel_pss_mb_median"] = round(statistics.median(k["pss_mb"] for k in kernels), 1)
        result["kernel_uss_mb_median"] = round(statistics.median(k["uss_mb"] for k in kernels), 1)
        if len(voila) > 2:
            extra = len(voila) - 2  # from the first reviewer's page to the last one's
            result["voila_rss_mb_per_extra_reviewer"] = round(
                (voila[-1]["rss_mb"] - voila[1]["rss_mb"]) / extra, 2
            )
        print(
            f"kernel per reviewer: median RSS {result['kernel_rss_mb_median']} MB, PSS "
            f"{result['kernel_pss_mb_median']} MB, USS {result['kernel_uss_mb_median']} MB; "
            "Voila server "
            f"{voila[0]['rss_mb']} MB idle, {voila[-1]['rss_mb']} MB with {args.reviewers} "
            f"reviewer{plural}; store service RSS {result['store_service']['rss_mb']} MB"
        )
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    finish(result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
