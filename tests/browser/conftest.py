"""Fixtures for the browser tests: a served demo workspace and headless Debian Chromium.

One `hilt serve` (store service + Voila) per test module, on free loopback ports, over a
workspace behind a sign-in proxy (the tests play the proxy) with the demo cases and the
demo's first model, registered and approved (so the review queue holds the scored 30 % of
the cases). An admin token is issued before the servers start, for reading back what the
dashboards wrote. Each test opens its own browser context (own cookies, own
``X-Forwarded-User`` header and the proxy's secret) and so its own Voila kernel, except
where a module opens one person's page once for several of its tests (a module-scoped
fixture of its own, over ``proxied_context``): a Voila kernel's start and Chromium's work
on a fresh context (~3 s of CPU) are the largest costs of a page. Chromium itself is
launched once per test process (``chromium``) and shared by the browser modules.

Never `playwright install`: the tests drive /usr/bin/chromium (Debian's package, installed
by .ci/run). Where it is missing they are skipped on a developer's machine and fail in CI
(``CI=true``), so that browser tests never go missing from a CI run unnoticed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards
from hilt.pipelines.loop.scoring import demo_first_model
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.browser.pages import TIMEOUT_MS
from tests.conftest import CSV, PROXY_SECRET, free_port, operator, proxied_config

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: A fixed holdout (not a random one) on which the first model of the full CSV passes the
#: store's gate, with this folder's configs (a random holdout can fail the age-gap limit).
BROWSER_HOLDOUT_SALT = "hilt-browser-1"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}: in CI the browser tests must run, not skip")
        pytest.skip(message)


@dataclass
class Dashboards:
    """A running `hilt serve` and an admin credential for reading back."""

    server: DashboardServer
    workspace: Workspace
    admin_token: str

    @property
    def store_url(self) -> str:
        return f"http://{self.server.host}:{self.server.store_port}"

    @property
    def review_url(self) -> str:
        return self.server.dashboard_url("review")

    def admin(self) -> Store:
        return open_store_as(self.store_url, Identity(token=self.admin_token))


@pytest.fixture(scope="module")
def dashboards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboards]:
    require_chromium()
    root = tmp_path_factory.mktemp("browser")
    ws = Workspace.at(root / "ws")
    # many people: behind a sign-in proxy
    create_workspace(ws, proxied_config(root), holdout_salt=BROWSER_HOLDOUT_SALT)
    operator(ws).ingest_cases(pl.read_csv(CSV, infer_schema=False))
    lead = open_store_as(ws, Identity(name="lena"))
    demo_first_model(operator(ws), lead, ws.settings(), ws.root / "models")
    # Issued before the service starts: the service owns the file from then on.
    admin_token = operator(ws).add_user("dana", "admin").token
    server = start_dashboards(ws, port=free_port(), store_port=free_port())
    try:
        yield Dashboards(server=server, workspace=ws, admin_token=admin_token)
    finally:
        server.stop()


@dataclass
class Chromium:
    """One Playwright driver and Chromium per test process (per xdist worker), and the
    asyncio loop Playwright's sync API runs on."""

    browser: Browser
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """Chromium, launched once per test process: its start (the Playwright driver, the
    browser) costs ~2 s of CPU, paid once instead of once per browser module. Each test
    still gets fresh browser contexts (own cookies and headers: ``proxied_context``).

    Playwright's sync API marks its asyncio loop as this thread's running loop after every
    call; between browser modules (``browser``) it is unmarked, so that the test files the
    worker runs in between may run asyncio loops of their own (``asyncio.run``)."""
    require_chromium()
    manager = sync_playwright()
    playwright = manager.start()
    try:
        b = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        loop = asyncio.get_running_loop()  # marked by the call that just returned
        asyncio._set_running_loop(None)
        try:
            yield Chromium(b, loop)
        finally:
            asyncio._set_running_loop(loop)
            b.close()
    finally:
        manager.__exit__(None, None, None)
        asyncio._set_running_loop(None)


@pytest.fixture(scope="module")
def browser(chromium: Chromium) -> Iterator[Browser]:
    """The worker's Chromium (``chromium``) for one test module: Playwright's loop is this
    thread's running loop from the module's first use to its last fixture's end."""
    asyncio._set_running_loop(chromium.loop)
    try:
        yield chromium.browser
    finally:
        asyncio._set_running_loop(None)


OpenAs = Callable[[str], BrowserContext]


def proxied_context(browser: Browser, user: str) -> BrowserContext:
    """A fresh browser context whose requests carry ``X-Forwarded-User: user`` and the
    proxy's secret, as an authenticating proxy would send them."""
    headers = {"X-Forwarded-User": user, PROXY_SECRET_HEADER: PROXY_SECRET}
    ctx = browser.new_context(extra_http_headers=headers)
    ctx.set_default_timeout(TIMEOUT_MS)
    return ctx


@pytest.fixture
def context_as(browser: Browser) -> Iterator[OpenAs]:
    """``context_as("alice")``: a fresh browser context whose requests carry
    ``X-Forwarded-User: alice`` and the proxy's secret (``proxied_context``)."""
    contexts: list[BrowserContext] = []

    def make(user: str) -> BrowserContext:
        ctx = proxied_context(browser, user)
        contexts.append(ctx)
        return ctx

    try:
        yield make
    finally:
        for ctx in contexts:
            ctx.close()
