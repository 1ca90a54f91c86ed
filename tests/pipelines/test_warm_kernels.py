"""Warm dashboard kernels (pipelines/dashboards/kernels.py), on a real `hilt serve` behind a
sign-in proxy: a page is served by a kernel started before it was asked for, given that
request's environment only; a warm kernel serves one page, and the next page, whoever asks,
gets another one. And the dashboard kernels' client, on a real kernel, as Voila's executor
(nbclient) uses it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from voila.utils import ENV_VARIABLE

from hilt.pipelines.dashboards.kernels import (
    HANDED_OVER,
    DashboardKernelClient,
    WidgetOnlyKernelManager,
    hand_over_code,
)
from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER
from hilt.pipelines.workspace import Workspace
from tests.conftest import PROXY_SECRET, free_port
from tests.voila_pages import kernel_environment, kernel_pid, process_environ, render

pytestmark = pytest.mark.slow

PROXY_USER = "X-Forwarded-User"
WITH_SECRET = {PROXY_SECRET_HEADER: PROXY_SECRET}
#: What names or proves a person in a dashboard kernel's environment (Voila's header names).
IDENTITY = ("HTTP_X_FORWARDED_USER", "HTTP_X_HILT_PROXY_SECRET")


@pytest.fixture
def served(loaded_workspace_behind_proxy: Workspace) -> Iterator[DashboardServer]:
    server = start_dashboards(
        loaded_workspace_behind_proxy, port=free_port(), store_port=free_port()
    )
    try:
        yield server
    finally:
        server.stop()


def voila_kernels(server: DashboardServer) -> set[str]:
    """The ids of the kernels running under Voila (named by their connection files)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server.voila.pid:
            found |= {
                a.decode().rsplit("kernel-", 1)[1].removesuffix(".json")
                for a in args
                if a.endswith(b".json") and b"kernel-" in a
            }
    return found


def warm_kernel(server: DashboardServer, besides: set[str], timeout_s: float = 90) -> str:
    """The id of a kernel Voila started that is none of ``besides`` (pages' kernels), once
    there is one: the warm kernel waiting for the next page."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = voila_kernels(server) - besides
        if new:
            (kernel_id,) = new
            return kernel_id
        time.sleep(0.1)
    raise AssertionError(f"no warm kernel under Voila within {timeout_s:.0f} s")


def test_a_page_is_served_by_a_kernel_started_before_it_asked_given_its_request(
    served: DashboardServer,
) -> None:
    """The page's kernel is the one waiting before the request; it was started with nobody's
    identity (/proc: its start block) and holds the request's (who, and the proxy's proof)
    by the time the notebook runs: the page is alice's."""
    waiting = warm_kernel(served, set())
    page = render(served, "review", {PROXY_USER: "alice", **WITH_SECRET})
    assert page.kernel_id == waiting
    assert "Review queue · alice (reviewer)" in page.text
    launched = process_environ(kernel_pid(served, page.kernel_id))
    assert not set(IDENTITY) & set(launched)
    now = kernel_environment(served.voila.pid, page.kernel_id)
    assert now["HTTP_X_FORWARDED_USER"] == "alice"
    assert now["HTTP_X_HILT_PROXY_SECRET"] == PROXY_SECRET
    assert now["HILT_GATEWAY_TOKEN"] == launched["HILT_GATEWAY_TOKEN"]


def test_a_warm_kernel_serves_one_page_and_the_next_request_gets_another(
    served: DashboardServer,
) -> None:
    """The attack: a lead's page opened through the proxy (its secret), then the same name
    sent to Voila directly, without the secret. Had the second request been given the
    first one's kernel (its environment updated, not replaced), the proxy's proof would
    still be there; it gets the kernel started for the next page, and is refused."""
    first = render(served, "oversight", {PROXY_USER: "max", **WITH_SECRET})
    assert "Oversight · max (lead)" in first.text
    waiting = warm_kernel(served, {first.kernel_id})
    second = render(served, "oversight", {PROXY_USER: "max"})
    assert second.kernel_id == waiting != first.kernel_id
    assert "the sign-in proxy did not prove itself: no X-Hilt-Proxy-Secret header" in second.text
    assert "Oversight · max" not in second.text
    now = kernel_environment(served.voila.pid, second.kernel_id)
    assert "HTTP_X_HILT_PROXY_SECRET" not in now
    assert now["HTTP_X_FORWARDED_USER"] == "max"


def test_the_hand_over_sets_the_request_environment_as_given() -> None:
    """Values a header may carry (quotes, backslashes, a newline, non-ASCII) arrive as sent,
    under the plain names (Voila names some with members of a ``str`` enum), and the
    hand-over leaves no name behind."""
    env = {
        ENV_VARIABLE.QUERY_STRING: "user=a'b\"c&session=x\\y",
        "HTTP_X_FORWARDED_USER": "zoë\nline",
    }
    code = hand_over_code(env) + (
        f"import json, os\nok = {HANDED_OVER}\n"
        "print(json.dumps({k: os.environ.get(k) for k in ('QUERY_STRING', "
        "'HTTP_X_FORWARDED_USER')} | {'ok': ok, "
        "'left': sorted(n for n in dir() if 'hilt' in n)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == (
        '{"QUERY_STRING": "user=a\'b\\"c&session=x\\\\y", '
        '"HTTP_X_FORWARDED_USER": "zo\\u00eb\\nline", "ok": true, "left": []}'
    )


def test_a_failed_hand_over_says_so_and_quotes_nothing_of_the_request() -> None:
    """A value the environment cannot hold (a NUL) fails the hand-over in a real kernel,
    which says so without an error: no traceback (it would quote the code, and with it the
    proxy's secret) reaches IOPub, where the notebook's output is read later. The control:
    the same kernel takes a good environment."""
    secret = "s3cret-of-the-proxy"

    async def run() -> tuple[bool, bool, list[str]]:
        km = WidgetOnlyKernelManager(pool_size=0)
        kernel_id = await km.start_kernel(kernel_name="python3")
        try:
            listener = km.get_kernel(kernel_id).client()
            listener.start_channels()
            await ensure_async(listener.wait_for_ready(timeout=60))
            bad = {"HTTP_X_HILT_PROXY_SECRET": secret, "HTTP_X_FORWARDED_USER": "a\0b"}
            failed = await km._run(kernel_id, hand_over_code(bad), check=HANDED_OVER)
            good = {"HTTP_X_HILT_PROXY_SECRET": secret, "HTTP_X_FORWARDED_USER": "ab"}
            worked = await km._run(kernel_id, hand_over_code(good), check=HANDED_OVER)
            seen = []
            while True:
                try:
                    msg = await ensure_async(listener.get_iopub_msg(timeout=1))
                except Empty:
                    break
                seen.append(f"{msg['msg_type']} {msg['content']}")
            listener.stop_channels()
            return failed, worked, seen
        finally:
            await km.shutdown_all(now=True)

    failed, worked, seen = asyncio.run(run())
    assert failed is False
    assert worked is True
    assert seen  # (the listener hears the kernel: its busy and idle statuses)
    assert not [m for m in seen if m.startswith(("error", "stream"))], seen
    assert not [m for m in seen if secret in m]


def test_the_dashboard_kernel_client_is_ready_and_a_notebook_reads_only_its_own_output() -> None:
    """Voila's executor (nbclient) on a kernel whose clients are ``DashboardKernelClient``
    (as the dashboards' kernels are): ready without jupyter_client's wait for IOPub's
    silence, and each cell gets its own output, none of the kernel's earlier messages (its
    start, its info reply)."""

    async def run() -> tuple[type, list[str]]:
        km = AsyncKernelManager(client_factory=DashboardKernelClient)
        await km.start_kernel()
        try:
            nb = nbformat.v4.new_notebook(
                cells=[
                    nbformat.v4.new_code_cell("print('first')"),
                    nbformat.v4.new_code_cell("import sys; print('second', file=sys.stderr)"),
                ]
            )
            executor = NotebookClient(nb, km=km, kernel_name="python3")
            await executor.async_execute(cleanup_kc=False)
            assert executor.kc is not None
            kind = type(executor.kc)
            executor.kc.stop_channels()
            return kind, [
                "".join(str(o.get("text", "")) for o in cell.outputs) for cell in nb.cells
            ]
        finally:
            await km.shutdown_kernel(now=True)

    kind, outputs = asyncio.run(run())
    assert kind is DashboardKernelClient
    assert outputs == ["first\n", "second\n"]


def test_a_warm_kernel_is_not_culled_while_it_waits_a_served_one_is(tmp_path: Path) -> None:
    """The manager alone (Voila's kernel manager, real kernels), its idle culler at 1 s: the
    warm kernel, idle for longer, is kept; the kernel of a page, idle as long, is culled (the
    control: the culler runs)."""

    async def run() -> tuple[bool, bool, bool]:
        km = WidgetOnlyKernelManager(root_dir=str(tmp_path), cull_idle_timeout=1)
        try:
            waiting = await _until_warm(km)
            page = {**os.environ, "HTTP_X_FORWARDED_USER": "alice"}
            served = await km.start_kernel(kernel_name="python3", path="", env=page)
            warm = await _until_warm(km)  # the refill (the page never connects: fill_wait_s)
            await asyncio.sleep(2)
            for kernel_id in (served, warm):
                await km.cull_kernel_if_idle(kernel_id)
            return served == waiting, served in km, warm in km
        finally:
            await km.shutdown_all(now=True)

    took_the_warm_one, served_kept, warm_kept = asyncio.run(run())
    assert took_the_warm_one
    assert not served_kept
    assert warm_kept


async def _until_warm(km: WidgetOnlyKernelManager, timeout_s: float = 90) -> str:
    """The id of the warm kernel ``km`` keeps, once it has one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if km._warm:
            (kernel_id,) = km._warm
            return kernel_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no warm kernel within {timeout_s:.0f} s")
