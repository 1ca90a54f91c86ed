#!/usr/bin/env python
"""Kernel start: forked from a zygote (pipelines/kernels/) against a normal launch.

What it measures
----------------
The project's ``python3`` kernel started by a jupyter_client ``KernelManager``, from
``start_kernel`` to the kernel's reply to ``kernel_info`` (``wait_for_ready``): the wall
time, the CPU seconds of the kernel's own process by then (a forked kernel's since its
fork) and of the launching process (``time.process_time``). Normal launches
(``LocalProvisioner``: a new interpreter importing ipykernel) and forked ones
(``ForkedProvisioner`` asking a zygote this script starts) alternate, ``--repeat`` each.
The zygote's own one-time cost (its imports) is printed apart. Nothing about speed is
asserted. The last line is one JSON object.

Usage: benchmarks/kernel_start.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from jupyter_client.manager import KernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from hilt.pipelines.kernels.forked import ForkedProvisioner, use_forked
from hilt.pipelines.kernels.source import ZYGOTE_ENV, start_zygote

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import begin, finish, process_cpu_s  # noqa: E402


def one_start(forked: bool) -> dict[str, float]:
    manager = KernelManager(kernel_name="python3")
    if forked:
        use_forked(manager)
    cpu0, t0 = time.process_time(), time.perf_counter()
    manager.start_kernel(extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(120)
        wall, launcher = time.perf_counter() - t0, time.process_time() - cpu0
        provisioner = manager.provisioner
        assert isinstance(provisioner, LocalProvisioner) and provisioner.pid is not None
        was_forked = isinstance(provisioner, ForkedProvisioner) and provisioner.forked is not None
        if was_forked != forked:
            raise SystemExit(f"asked forked={forked}, got forked={was_forked}")
        kernel = process_cpu_s(provisioner.pid)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return {"wall_s": round(wall, 3), "kernel_cpu_s": kernel, "launcher_cpu_s": round(launcher, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="2 starts of each kind")
    p.add_argument("--repeat", type=int, default=None, help="starts of each kind (default 6)")
    args = p.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 6)
    result = begin("kernel_start", repeat=repeat, quick=args.quick)
    started = time.perf_counter()
    zygote = start_zygote({**os.environ, "HILT_FORKED_KERNELS": "1"})
    assert zygote is not None
    os.environ[ZYGOTE_ENV] = str(zygote.socket_path)
    runs: dict[str, list[dict[str, float]]] = {"normal": [], "forked": []}
    try:
        for i in range(repeat):
            for kind in ("normal", "forked") if i % 2 == 0 else ("forked", "normal"):
                run = one_start(kind == "forked")
                runs[kind].append(run)
                print(
                    f"  {kind:6} run {i + 1}: ready in {run['wall_s']:.2f} s, kernel CPU "
                    f"{run['kernel_cpu_s']:.2f} s, launcher CPU {run['launcher_cpu_s']:.2f} s "
                    f"(load {os.getloadavg()[0]:.2f})"
                )
        result["zygote_cpu_s"] = process_cpu_s(zygote.process.pid)
    finally:
        zygote.stop()
    for kind, got in runs.items():
        summary = {
            key: round(statistics.median(r[key] for r in got), 3)
            for key in ("wall_s", "kernel_cpu_s", "launcher_cpu_s")
        }
        result[kind] = {"median": summary, "runs": got}
        print(
            f"{kind}: median ready {summary['wall_s']:.2f} s, kernel CPU "
            f"{summary['kernel_cpu_s']:.2f} s, launcher CPU {summary['launcher_cpu_s']:.2f} s"
        )
    print(f"zygote (once): {result['zygote_cpu_s']:.2f} s CPU")
    finish(result, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
