"""The kernel manager of the dashboards: a page may send widget traffic, nothing else; and a
kernel started ahead of the request, for whoever asks next.

Voila constructs its kernel manager with its own list of allowed message types, which
overrides any command-line configuration; this subclass sets hilt's list after Voila's
constructor has run, so that the restriction in force is the one stated in
``ALLOWED_KERNEL_MESSAGES`` below: no ``execute_request`` (a dashboard cannot be
turned into a code console) and no ``shutdown_request`` either.

Warm kernels (``pool_size``, one by default): a kernel's start (~0.5 s) and the dashboards'
imports (``WARM_IMPORTS``) are done before anyone asks for a page. A warm kernel is started
with Voila's own environment (the store's URL, the gateway token: what every dashboard
kernel has; nothing that names or proves anyone) and, when a page asks for a kernel, it is
taken out of the pool and given the environment Voila made for that request (its headers:
who is looking, the sign-in proxy's secret; its query) before the page's notebook runs, in
one silent execution on the kernel's own shell channel (never over a page's websocket,
not broadcast on IOPub, not in its history). The notebook then reads who is looking from
``os.environ`` exactly as in a kernel launched for the request, and the store service
decides as before (pipelines/dashboards/access.py). A warm kernel serves one request, once:
it is never put back, never handed to a second page; a kernel that fails its hand-over is
shut down and the request gets a kernel launched the usual way. A new warm kernel is
started once the page that took one has run its cells (its front end has connected to the
kernel; at most ``fill_wait_s`` later), not while it runs them; a page asked for while a
warm kernel is still starting waits for that one rather than launching another.
``--WidgetOnlyKernelManager.pool_size=0`` turns warm kernels off.

Voila's own preheated kernels (``preheat_kernel``) are not used: they pass a request's
headers (the proxy's secret among them) to the kernel through a websocket that asks for no
credential (``/voila/query/<kernel id>``, ``RequestInfoSocketHandler``), whoever connects
first, and keep them there for a kernel not connected yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from queue import Empty
from typing import Any, cast

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_core.utils import ensure_async
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import ApiPath
from tornado.ioloop import IOLoop
from traitlets import Float, Int

#: The only kernel messages a dashboard page may send: widget traffic and kernel info.
ALLOWED_KERNEL_MESSAGES = (
    "comm_open",
    "comm_msg",
    "comm_close",
    "comm_info_request",
    "kernel_info_request",
)
#: What a warm kernel imports before it is asked for: the import cells of the review,
#: oversight and sign-in pages (none of them reads the environment at import; none imports
#: DuckDB, polars or the store's operations: tests/widgets/test_dashboard_start_imports.py).
WARM_IMPORTS = (
    "hilt.pipelines.dashboards.review",
    "hilt.widgets.review.panel",
    "hilt.pipelines.dashboards.oversight",
    "hilt.widgets.oversight.dashboard",
    "hilt.pipelines.dashboards.sign_in",
    "hilt.widgets.common.sign_in",
)
#: Seconds a warm kernel may take to answer its warm-up or its hand-over.
REPLY_TIMEOUT_S = 60.0


class DashboardKernelClient(AsyncKernelClient):
    """The client of a dashboard kernel in Voila (its notebook executor's, and the warm-up's
    and hand-over's here). ``wait_for_ready`` as jupyter_client's (the kernel's info reply
    on the shell channel, then a message on IOPub: it is connected), without its last step,
    0.2 s of silence on IOPub waited for on every page's path: what IOPub holds by then is
    drained at once. A message that comes later is not taken for a cell's: nbclient, Voila's
    executor, keeps only the messages whose parent is the request it sent."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (REPLY_TIMEOUT_S if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                msg = await ensure_async(self.shell_channel.get_msg(timeout=1))
            except Empty:
                pass
            else:
                if msg["msg_type"] == "kernel_info_reply":
                    try:
                        await ensure_async(self.iopub_channel.get_msg(timeout=0.2))
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(msg)
                        break
            if not await cast(Awaitable[bool], self.is_alive()):  # async in this client
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError("Kernel didn't respond in time")
        while True:
            try:
                await ensure_async(self.iopub_channel.get_msg(timeout=0))
            except Empty:
                return


def warm_up_code(modules: tuple[str, ...] = WARM_IMPORTS) -> str:
    """The code a warm kernel runs once started: the imports, no name left behind."""
    return f"for _hilt_m in {modules!r}:\n    __import__(_hilt_m)\ndel _hilt_m\n"


def hand_over_code(env: Mapping[str, str]) -> str:
    """The code that gives a warm kernel the environment of the request it serves (Voila
    names some variables with members of a ``str`` enum: their plain text is meant). It
    never raises: a traceback would quote its source, the request's headers with the
    sign-in proxy's secret among them; whether it worked is read with ``HANDED_OVER``."""
    plain = {str.__str__(k): str.__str__(v) for k, v in env.items()}
    return (
        "def _hilt_hand_over():\n"
        "    import os\n"
        "    try:\n"
        f"        os.environ.update({plain!r})\n"
        "    except BaseException:\n"
        "        return False\n"
        "    return True\n"
        "_hilt_handed_over = _hilt_hand_over()\n"
        "del _hilt_hand_over\n"
    )


#: The expression that tells whether the hand-over worked (and removes what it left).
HANDED_OVER = "globals().pop('_hilt_handed_over', False)"


class WidgetOnlyKernelManager(AsyncMappingKernelManager):
    pool_size = Int(1, config=True, help="Warm kernels kept for the next pages (0: none).")
    fill_wait_s = Float(
        10.0,
        config=True,
        help="At most this long after a page gets its kernel, until the page's front end "
        "connects to it (its notebook has run), before a new warm kernel is started.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.allowed_message_types = list(ALLOWED_KERNEL_MESSAGES)
        #: (kernel name, path) -> warm kernels being started or ready, oldest first
        self._pools: dict[tuple[str, str], list[asyncio.Task[str]]] = {}
        #: the ids of the kernels in a pool (none of them is anyone's yet)
        self._warm: set[str] = set()
        #: the refills waiting for a page to be served
        self._refills: set[asyncio.Task[None]] = set()
        if self.pool_size > 0:
            IOLoop.current().add_callback(self._fill, (self.default_kernel_name, ""))

    async def start_kernel(  # type: ignore[override]  # jupyter_server's is async
        self, *, kernel_id: str | None = None, **kwargs: Any
    ) -> str:
        """A kernel for a page: a warm one given the request's environment, or one
        launched with it (no warm kernel, or its hand-over failed)."""
        env = kwargs.get("env")
        path = kwargs.get("path")
        if kernel_id is not None or not isinstance(env, dict) or not isinstance(path, str):
            return await self._launch(kernel_id=kernel_id, **kwargs)
        key = (kwargs.get("kernel_name") or self.default_kernel_name, path)
        taken = await self._take(key)
        if taken is not None and await self._hand_over(taken, env):
            served = taken
        else:
            served = await self._launch(**kwargs)
        if self.pool_size > 0:
            refill = asyncio.create_task(self._fill_once_served(served, key))
            self._refills.add(refill)
            refill.add_done_callback(self._refills.discard)
        return served

    async def _fill_once_served(self, kernel_id: str, key: tuple[str, str]) -> None:
        """Refill the pool once the page given ``kernel_id`` has had its notebook run (its
        front end has connected to the kernel: jupyter_server counts its websockets), or
        after ``fill_wait_s``: a new kernel's start does not compete with the page's cells."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fill_wait_s
        while (
            loop.time() < deadline
            and kernel_id in self
            and not self._kernel_connections.get(kernel_id)
        ):
            await asyncio.sleep(0.1)
        await self._fill(key)

    async def _launch(self, **kwargs: Any) -> str:
        """Launch a kernel (jupyter_server's way), its clients ``DashboardKernelClient``."""
        kernel_id: str = await super().start_kernel(**kwargs)
        self.get_kernel(kernel_id).client_factory = DashboardKernelClient
        return kernel_id

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        """A warm kernel is idle by design: it is not culled while it waits."""
        if kernel_id not in self._warm:
            await super().cull_kernel_if_idle(kernel_id)  # type: ignore[no-untyped-call]

    async def _fill(self, key: tuple[str, str]) -> None:
        pool = self._pools.setdefault(key, [])
        pool[:] = [t for t in pool if not t.done() or _started(t)]
        while len(pool) < self.pool_size:
            pool.append(asyncio.create_task(self._warm_kernel(*key)))

    async def _warm_kernel(self, kernel_name: str, path: str) -> str:
        """Start a kernel with Voila's environment and run the warm-up in it; a kernel
        that fails it (or is given up on while warming) is shut down."""
        kernel_id = await self._launch(kernel_name=kernel_name, path=ApiPath(path))
        self._warm.add(kernel_id)
        try:
            if not await self._run(kernel_id, warm_up_code(), first_contact=True):
                raise RuntimeError("a warm kernel failed its warm-up")
        except BaseException:
            await self._discard(kernel_id)
            raise
        return kernel_id

    async def _discard(self, kernel_id: str) -> None:
        """Shut down a kernel that will serve no page."""
        self._warm.discard(kernel_id)
        if kernel_id in self:
            await self.shutdown_kernel(kernel_id, now=True)  # type: ignore[no-untyped-call]

    async def _take(self, key: tuple[str, str]) -> str | None:
        """The oldest warm kernel for ``key`` that is alive (waiting for one still
        starting), taken out of the pool for good; None when there is none."""
        pool = self._pools.get(key, [])
        while pool:
            task = pool.pop(0)
            try:
                kernel_id = await asyncio.wait_for(task, REPLY_TIMEOUT_S)
            except Exception:  # a kernel that did not start: the request launches its own
                self.log.warning("a warm kernel did not start; launching one")
                continue
            self._warm.discard(kernel_id)
            if kernel_id in self and await ensure_async(self.get_kernel(kernel_id).is_alive()):
                return kernel_id
            await self._discard(kernel_id)
        return None

    async def _hand_over(self, kernel_id: str, env: Mapping[str, str]) -> bool:
        """Give the taken warm kernel the request's environment; shut it down if that
        fails (False: the request gets a kernel launched with it)."""
        if await self._run(kernel_id, hand_over_code(env), check=HANDED_OVER):
            return True
        self.log.warning("a warm kernel failed its hand-over; launching one")
        await self._discard(kernel_id)
        return False

    async def _run(
        self, kernel_id: str, code: str, *, first_contact: bool = False, check: str = ""
    ) -> bool:
        """Run ``code`` silently in kernel ``kernel_id`` over its shell channel (no
        ``execute_input`` on IOPub, no history) and wait for its reply there. True when it
        ran without error (and the expression ``check``, if given, is then ``True``).
        ``first_contact``: a kernel just started, asked for its info first
        (``wait_for_ready``, which also waits for 0.2 s of silence on IOPub: not on a page's
        path, where the kernel has answered its warm-up already)."""
        client = self.get_kernel(kernel_id).client()
        client.start_channels()
        execute = cast(Callable[..., Awaitable[dict[str, Any]]], client.execute)
        expressions = {"check": check} if check else {}
        try:
            if first_contact:
                await ensure_async(client.wait_for_ready(timeout=REPLY_TIMEOUT_S))
            reply = await execute(
                code,
                silent=True,
                store_history=False,
                user_expressions=expressions,
                reply=True,
                timeout=REPLY_TIMEOUT_S,
            )
        except Exception:  # no detail: the code may hold the request's secret header
            return False
        finally:
            client.stop_channels()
        content = reply["content"]
        if content["status"] != "ok":
            return False
        if not check:
            return True
        answer = content.get("user_expressions", {}).get("check", {})
        return bool(answer.get("data", {}).get("text/plain") == "True")


def _started(task: asyncio.Task[str]) -> bool:
    return not task.cancelled() and task.exception() is None
