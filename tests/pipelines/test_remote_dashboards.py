"""Dashboards on other hosts than the store's: `hilt serve --store-url URL` (issue 15).

One store service, two dashboard servers started with `hilt serve --store-url` (one given
the gateway token through ``HILT_GATEWAY_TOKEN``, the other through ``--token-file``), and
16 reviewers behind the tests' sign-in proxy, split between them.

The path each reviewer takes is the dashboards' real one, in two parts: one reviewer per
server opens the review page through Voila (a real kernel runs review.ipynb, leases a case
from the store service and renders it; ``tests/voila_pages.render``), and then every
reviewer works the queue through the code that kernel runs (``open_review_backend``) with
the very environment Voila gave that kernel (read from /proc: the store URL, the gateway
token, no workspace), and their own sign-in header. A kernel per reviewer (16 kernels, each
~100 MB and seconds of start-up on this machine's 2 shared cores) is what the capacity
figure measures (benchmarks/dashboard_memory.py), not what this test needs to show.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from hilt.pipelines.cli import app
from hilt.pipelines.dashboards.audit import open_audit_backend
from hilt.pipelines.dashboards.oversight import open_oversight_backend
from hilt.pipelines.dashboards.review import open_review_backend
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.review import DecisionInput, DecisionReceipt
from tests.conftest import (
    PROXY_SECRET,
    RunningService,
    free_port,
    load_cases,
    operator,
    proxied_config,
    start_service,
)
from tests.loop_helpers import HILT
from tests.voila_pages import Page, kernel_environment, kernel_under, process_environ, render

REVIEWERS = [f"r{i:02d}" for i in range(16)]
PROXY = {"X-Hilt-Proxy-Secret": PROXY_SECRET}


@dataclass
class Served:
    """One `hilt serve --store-url` process and the Voila it started."""

    cli: subprocess.Popen[bytes]
    port: int
    voila_pid: int
    #: SIGTERM was sent (once: a second one is not needed).
    stopping: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dashboard_url(self, name: str) -> str:
        return f"{self.url}/voila/render/{name}.ipynb"


def _voila_under(pid: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        # An argument "voila" (the checkout's path may hold the word: /work/wt-voila/...).
        if ppid == pid and b"voila" in cmdline.split(b"\0"):
            return int(proc.name)
    return None


def serve_remote(store_url: str, env: dict[str, str], *extra: str) -> Served:
    """`hilt serve --store-url` on a free port, started (``answering`` waits for it)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("HILT_")}
    cli = subprocess.Popen(
        [HILT, "serve", "--store-url", store_url, "--port", str(port), *extra],
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its Voila too: ``stop`` can end the whole group
    )
    return Served(cli, port, 0)


def answering(served: Served) -> Served:
    """``served`` once its Voila answers, with the Voila's process id."""
    cli, port = served.cli, served.port
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if cli.poll() is not None:
            err = cli.stderr.read().decode() if cli.stderr else ""
            raise AssertionError(f"hilt serve --store-url exited: {err}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            voila = _voila_under(cli.pid)
            assert voila is not None
            served.voila_pid = voila
            return served
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("hilt serve --store-url did not answer within 150 s")


def stop(served: Served) -> None:
    """SIGTERM, as an operator's service manager would: the CLI stops its Voila."""
    if served.cli.poll() is None and not served.stopping:
        served.cli.terminate()
    served.stopping = True
    with suppress(subprocess.TimeoutExpired):
        served.cli.wait(30)
    # Whatever is left of its session (a Voila it could not stop): killed, by group id.
    with suppress(ProcessLookupError):
        os.killpg(served.cli.pid, signal.SIGKILL)
    served.cli.wait(5)


@dataclass
class Setup:
    ws: Workspace
    service: RunningService
    servers: list[Served]
    gateway: str
    reviewer_token: str
    auditor: str
    token_file: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("remote-dashboards")
    ws = Workspace.at(root / "ws")
    # The 16 reviewers are users of the config (created at init, no token: they act
    # through the dashboards' gateway).
    config = proxied_config(root)
    users = "".join(f'{n} = ["reviewer"]\n' for n in REVIEWERS)
    config.write_text(config.read_text().replace("[access.users]\n", "[access.users]\n" + users, 1))
    create_workspace(ws, config)
    load_cases(ws, cases_frame)
    op = operator(ws)
    reviewer = op.add_user("r00", "reviewer").token
    # Two dashboard hosts, two gateway users (each host can be revoked on its own).
    gateway_a = op.add_user("dashboards-a", "gateway").token
    gateway_b = op.add_user("dashboards-b", "gateway").token
    auditor = op.add_user("otto", "auditor").token
    token_file = root / "gateway-b.token"
    token_file.write_text(gateway_b + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    service = start_service(ws)
    servers: list[Served] = []
    try:
        servers.append(serve_remote(service.url, {"HILT_GATEWAY_TOKEN": gateway_a}))
        servers.append(serve_remote(service.url, {}, "--token-file", str(token_file)))
        for s in servers:
            answering(s)
        yield Setup(ws, service, servers, gateway_a, reviewer, auditor, token_file)
    finally:
        for s in servers:  # both at once: each waits for its Voila's kernels
            if s.cli.poll() is None:
                s.cli.terminate()
                s.stopping = True
        for s in servers:
            stop(s)
        service.stop()


def work_the_queue(env: dict[str, str], name: str) -> tuple[list[str], list[DecisionReceipt]]:
    """Reviewer ``name`` through the dashboards' backend in ``env``: lease, decide, until
    the queue is empty. Returns the cases leased and the receipts."""
    backend = open_review_backend(env={**env, "HTTP_X_FORWARDED_USER": name})
    assert not isinstance(backend, Refusal), backend
    assert backend.reviewer().name == name
    leased: list[str] = []
    receipts: list[DecisionReceipt] = []
    while (item := backend.next_item()) is not None:
        leased.append(item.case_id)
        receipts.append(backend.submit(DecisionInput(case_id=item.case_id, action="accept")))
    return leased, receipts


@pytest.mark.obligation("AI Act 14", "AI Act 12")
def test_two_dashboard_hosts_sixteen_reviewers_one_store(setup: Setup) -> None:
    servers = setup.servers
    otto = open_store_as(setup.service.url, Identity(token=setup.auditor))
    head = otto.audit_head().seq
    # One reviewer per dashboard host opens the review page through Voila.
    openers = {0: REVIEWERS[0], 1: REVIEWERS[8]}
    with ThreadPoolExecutor(2) as pool:
        pages: dict[int, Page] = dict(
            zip(
                openers,
                pool.map(
                    lambda i: render(
                        servers[i], "review", {"X-Forwarded-User": openers[i], **PROXY}
                    ),
                    openers,
                ),
                strict=True,
            )
        )
    envs: dict[int, dict[str, str]] = {}
    for i, page in pages.items():
        assert f"Review queue · {openers[i]} (reviewer)" in page.text, page.text
        launched = process_environ(kernel_under(servers[i].voila_pid, page.kernel_id))
        # What the kernel holds (a warm kernel is given its request's environment after its
        # start, pipelines/dashboards/kernels.py): the store's URL and its host's gateway
        # token, as it was started with, and no workspace.
        env = kernel_environment(servers[i].voila_pid, page.kernel_id)
        for block in (launched, env):
            assert block["HILT_STORE_URL"] == setup.service.url
            assert "HILT_WORKSPACE" not in block
        assert env["HILT_GATEWAY_TOKEN"] == launched["HILT_GATEWAY_TOKEN"]
        envs[i] = env
    assert envs[0]["HILT_GATEWAY_TOKEN"] == setup.gateway
    assert envs[1]["HILT_GATEWAY_TOKEN"] == setup.token_file.read_text().strip()
    # The two page openers hold one lease each; nobody else may get those cases.
    held = otto.audit_events(after_seq=head, limit=10_000)
    page_cases = [e.object_id for e in held if e.action == "case.leased"]
    assert len(page_cases) == 2 and len(set(page_cases)) == 2

    # All 16 reviewers, half on each host, work the queue at once.
    with ThreadPoolExecutor(16) as pool:
        results = dict(
            zip(
                REVIEWERS,
                pool.map(
                    lambda n: work_the_queue(envs[0 if n < "r08" else 1], n),
                    REVIEWERS,
                ),
                strict=True,
            )
        )
    leased = [c for cases, _ in results.values() for c in cases]
    # No case leased twice: each case reached one reviewer, and each opener got back the
    # case their page showed (their own lease first).
    assert len(leased) == len(set(leased)) == 200
    assert results["r00"][0][0] in page_cases and results["r08"][0][0] in page_cases
    assert all(results[n][1] for n in REVIEWERS), "a reviewer got no case"
    events = otto.audit_events(after_seq=head, limit=10_000)
    leases = [e.object_id for e in events if e.action == "case.leased"]
    assert len(leases) == len(set(leases)) == 200
    # Every decision is in the store, by the reviewer who made it (the gateway acted for
    # them, never as itself).
    stored = {d.decision_id: (d.reviewer, d.case_id) for d in otto.decisions(after_seq=head)}
    made = {r.decision_id: (n, r.case_id) for n, (_, rs) in results.items() for r in rs}
    assert stored == made and len(made) == 200
    assert otto.queue_status().waiting == 0
    otto.close()

    # The audit chain verifies, as an auditor on yet another host checks it (the log
    # fetched from the running service and checked by `hilt audit verify --url`).
    verified = CliRunner().invoke(
        app, ["audit", "verify", "--url", setup.service.url], env={"HILT_TOKEN": setup.auditor}
    )
    assert verified.exit_code == 0, verified.output
    assert "OK" in verified.output, verified.output

    # The oversight and audit dashboards need the workspace's files: on a dashboard host
    # they refuse, saying where to open them (nothing else is shown).
    for open_backend, who in ((open_oversight_backend, "max"), (open_audit_backend, "otto")):
        refusal = open_backend(env={**envs[0], "HTTP_X_FORWARDED_USER": who})
        assert isinstance(refusal, Refusal)
        assert "next to the store" in refusal.message, refusal.message


def test_remote_serve_refuses_clearly(setup: Setup, tmp_path: Path) -> None:
    """One line, exit 2 or 3, nothing started, for each way of getting it wrong."""
    runner = CliRunner()
    url = setup.service.url
    # `hilt serve` takes SIGTERM as Ctrl-C from its start; in process here, so put it back.
    previous = signal.getsignal(signal.SIGTERM)
    try:
        check_refusals(runner, url, setup, tmp_path)
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_refusals(runner: CliRunner, url: str, setup: Setup, tmp_path: Path) -> None:
    otto = open_store_as(url, Identity(token=setup.auditor))
    head = otto.audit_head()

    def refused(args: list[str], env: dict[str, str]) -> str:
        env = {"HILT_GATEWAY_TOKEN": "", **env}
        r = runner.invoke(app, ["serve", *args, "--port", str(free_port())], env=env)
        assert r.exit_code in (2, 3), r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)
        assert "Traceback" not in r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1, r.output
        return lines[0]

    assert "set HILT_GATEWAY_TOKEN or give --token-file" in refused(["--store-url", url], {})
    empty = tmp_path / "empty.token"
    empty.write_text("")
    assert "the file is empty" in refused(["--store-url", url, "--token-file", str(empty)], {})
    dead = f"http://127.0.0.1:{free_port()}"
    assert "cannot reach the store service" in refused(
        ["--store-url", dead], {"HILT_GATEWAY_TOKEN": setup.gateway}
    )
    assert "this store never issued it" in refused(
        ["--store-url", url], {"HILT_GATEWAY_TOKEN": "hilt_forged"}
    )
    assert "not to a gateway user" in refused(
        ["--store-url", url], {"HILT_GATEWAY_TOKEN": setup.reviewer_token}
    )
    assert "not both" in refused(
        ["--store-url", url, "--workspace", str(setup.ws.root)],
        {"HILT_GATEWAY_TOKEN": setup.gateway},
    )
    # Nothing started (no Voila under this process), nothing written to the store.
    assert _voila_under(os.getpid()) is None
    assert otto.audit_head() == head
    otto.close()
