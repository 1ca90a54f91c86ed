"""A dashboard page of a real `hilt serve`, read as a browser would, without a browser.

``render`` asks Voila for a page (its kernel runs the notebook while the page is served),
then reads what the page shows from that kernel over Voila's websocket, the way the page's
own script does: the widget manager's ``request_states``. Its text is what a person would
read (tags stripped). ``process_environ`` reads the environment a dashboard kernel was
started with from /proc (a kernel cannot print it to a page: a page may send widget messages
only); ``kernel_environment`` the one it holds now (a warm kernel is given its request's
after its start, pipelines/dashboards/kernels.py), asked over the kernel's own channels with
its connection file, as an insider on the host could.
"""

from __future__ import annotations

import ast
import asyncio
import html
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import websockets
from jupyter_client.blocking.client import BlockingKernelClient
from websockets.typing import Subprotocol

from hilt.pipelines.dashboards.server import DashboardServer

#: The widget control protocol of ipywidgets 8.
CONTROL_TARGET = "jupyter.widget.control"
CONTROL_VERSION = "1.0.0"


class Pages(Protocol):
    """A Voila serving dashboards: next to the store (``DashboardServer``) or on another
    host (``RemoteDashboards``, `hilt serve --store-url`)."""

    @property
    def url(self) -> str: ...

    def dashboard_url(self, name: str) -> str: ...


@dataclass(frozen=True)
class Page:
    kernel_id: str
    #: The text of every HTML widget of the page, tags stripped, one line each.
    text: str


def render(server: Pages, name: str, headers: dict[str, str]) -> Page:
    """The dashboard ``name`` as a request with ``headers`` gets it, once its notebook ran."""
    r = httpx.get(server.dashboard_url(name), headers=headers, timeout=120)
    r.raise_for_status()
    found = re.search(r'"kernelId": "([0-9a-f-]+)"', r.text)
    assert found is not None, "no kernel id in the page"
    kernel_id = found.group(1)
    states = asyncio.run(_widget_states(server.url, kernel_id))
    texts = [
        _plain(str(s["state"]["value"]))
        for s in states.values()
        if isinstance(s.get("state", {}).get("value"), str)
    ]
    return Page(kernel_id, "\n".join(t for t in texts if t))


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


#: The kernel websocket protocol the page's own script speaks (jupyter_server's "v1"):
#: binary frames of little-endian offsets, the channel, then the message's parts.
WS_PROTOCOL = "v1.kernel.websocket.jupyter.org"


def _message(session: str, msg_type: str, content: dict[str, Any]) -> tuple[str, bytes]:
    """(the message's id, the message as the page's script sends it on the shell channel)."""
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": msg_type,
        "username": "",
        "session": session,
        "version": "5.3",
        "date": "",
    }
    parts = [header, {}, {"version": CONTROL_VERSION}, content]
    return msg_id, _frame("shell", [json.dumps(p).encode() for p in parts])


def _frame(channel: str, parts: list[bytes]) -> bytes:
    name = channel.encode()
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = [len(offsets).to_bytes(8, "little"), *(o.to_bytes(8, "little") for o in offsets)]
    return b"".join([*head, name, *parts])


def _decoded(frame: str | bytes) -> dict[str, Any]:
    """A kernel message from a v1 frame: header, parent header, metadata, content (the
    buffers that may follow, a figure's bytes, are not needed here)."""
    assert isinstance(frame, bytes), "a v1 frame is binary"
    count = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]
    header, parent, _, content = (json.loads(p) for p in parts[:4])
    return {"msg_type": header["msg_type"], "parent_header": parent, "content": content}


async def _widget_states(base_url: str, kernel_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """Open the widget control comm, wait until the kernel has taken it (its reply to our
    message is over: status idle), then ask for every widget's state."""
    url = base_url.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
    session, comm_id = uuid.uuid4().hex, uuid.uuid4().hex
    deadline = asyncio.get_running_loop().time() + timeout_s
    protocols = [Subprotocol(WS_PROTOCOL)]
    async with websockets.connect(url, max_size=None, subprotocols=protocols) as ws:
        opened, message = _message(
            session, "comm_open", {"comm_id": comm_id, "target_name": CONTROL_TARGET, "data": {}}
        )
        await ws.send(message)
        asked: str | None = None
        while True:
            left = deadline - asyncio.get_running_loop().time()
            m = _decoded(await asyncio.wait_for(ws.recv(), max(left, 0.1)))
            parent = m["parent_header"].get("msg_id")
            content = m["content"]
            idle = m["msg_type"] == "status" and content.get("execution_state") == "idle"
            if idle and parent in (opened, asked):
                # The comm is open (or a request went unanswered): ask (again).
                asked, message = _message(
                    session, "comm_msg", {"comm_id": comm_id, "data": {"method": "request_states"}}
                )
                await ws.send(message)
            data = content.get("data", {})
            if m["msg_type"] == "comm_msg" and data.get("method") == "update_states":
                states: dict[str, Any] = data["states"]
                return states


def kernel_pid(server: DashboardServer, kernel_id: str) -> int:
    """The process of the dashboard kernel ``kernel_id`` (a child of the Voila process)."""
    return kernel_under(server.voila.pid, kernel_id)


def kernel_under(voila_pid: int, kernel_id: str) -> int:
    """The process of the dashboard kernel ``kernel_id``, a child of Voila ``voila_pid``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == voila_pid and f"kernel-{kernel_id}.json" in cmdline:
            return int(proc.name)
    raise AssertionError(f"no process of kernel {kernel_id} under Voila ({voila_pid})")


def process_environ(pid: int) -> dict[str, str]:
    """The environment process ``pid`` was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def kernel_environment(voila_pid: int, kernel_id: str) -> dict[str, str]:
    """The environment dashboard kernel ``kernel_id`` (under Voila ``voila_pid``) holds now:
    its ``os.environ``, read as a user expression (nothing printed, nothing on IOPub's
    streams) by a client of its connection file (the ``-f`` of its command line)."""
    pid = kernel_under(voila_pid, kernel_id)
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    named = f"kernel-{kernel_id}.json".encode()
    client = BlockingKernelClient(
        connection_file=next(a for a in args if a.endswith(named)).decode()
    )
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        expression = "dict(__import__('os').environ)"
        reply = client.execute_interactive(
            "", silent=True, store_history=False, user_expressions={"env": expression}, timeout=60
        )
    finally:
        client.stop_channels()
    value = reply["content"]["user_expressions"]["env"]
    assert value["status"] == "ok", value
    environ: dict[str, str] = ast.literal_eval(value["data"]["text/plain"])
    return environ
