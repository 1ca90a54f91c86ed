"""What the browser tests do on a review dashboard page, and how they read it back.

The page is driven the way a reviewer uses it: by the buttons' names and the texts the
panel shows. Nothing here reaches into the kernel; read-back goes through the store service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from hilt.pipelines.store import Store
from hilt.pipelines.store.audit_records import AuditEvent

#: Playwright's waits in these tests (a cold kernel start on 2 cores takes ~3 s).
TIMEOUT_MS = 30_000
#: Wait this long after a case appears before Accept / Skip: the panel refuses one-click
#: decisions for min_dwell_ms (300 ms, counted in the kernel from before the browser sees
#: the case), so a click 0.5 s after the browser shows it is always past the guard.
DWELL_S = 0.5

_DONE_BY_ME = re.compile(r"Done today:\s*(\d+)\s*by you")


def accept_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Accept", exact=True)


def wait_for_case(page: Page) -> None:
    """Until a case is on screen: its card shown and Accept enabled."""
    expect(accept_button(page)).to_be_enabled(timeout=TIMEOUT_MS)
    card = page.locator(".hilt-case-card")
    expect(card).to_be_visible(timeout=TIMEOUT_MS)
    expect(card).to_contain_text("Credit amount", timeout=TIMEOUT_MS)


def done_by_me(page: Page) -> int:
    """The panel's progress line: final decisions made today by the person looking."""
    line = page.get_by_text(_DONE_BY_ME)
    expect(line).to_be_visible(timeout=TIMEOUT_MS)
    m = _DONE_BY_ME.search(line.inner_text())
    assert m is not None
    return int(m.group(1))


def predicted_label(page: Page) -> str:
    """The model's class label as the prediction view shows it ("good risk", ...)."""
    m = re.search(r"Predicted:\s*(.+)", page.locator(".hilt-prediction").inner_text())
    assert m is not None, "the prediction view shows no predicted class"
    return m.group(1).strip()


def status_text(page: Page) -> str:
    return page.locator(".hilt-status").inner_text()


def wait_for_next_case(page: Page, done_before: int) -> None:
    """After a decision: until the progress line counts it (the panel refreshes it when it
    shows the next case), and that next case is on screen."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if done_by_me(page) == done_before + 1:
            wait_for_case(page)
            return
        status = status_text(page)
        assert "Ignored" not in status and "Not saved" not in status, status
        time.sleep(0.05)
    raise AssertionError(f"the decision was not counted; status line: {status_text(page)!r}")


def click_accept(page: Page) -> None:
    """Accept the case on screen (past the dwell guard), then wait for the next case."""
    before = done_by_me(page)
    time.sleep(DWELL_S)
    accept_button(page).click()
    wait_for_next_case(page, before)


def audit_events(store: Store, after_seq: int = 0) -> list[AuditEvent]:
    """Every audit event after ``after_seq``, paging through the API."""
    events: list[AuditEvent] = []
    while True:
        batch = store.audit_events(after_seq=after_seq, limit=1000)
        if not batch:
            return events
        events.extend(batch)
        after_seq = batch[-1].seq


def current_leases(store: Store, reviewers: tuple[str, ...]) -> dict[str, str]:
    """reviewer → the case of their latest ``case.leased`` event.

    The store keeps one lease per reviewer (taking a new case drops the old lease), and
    every new lease is an audit event in the same transaction, so a reviewer's latest
    lease event names the case their panel holds (if it has not expired: 600 s here).
    """
    latest: dict[str, str] = {}
    for e in audit_events(store):
        if e.action == "case.leased" and e.actor in reviewers:
            latest[e.actor] = e.object_id
    return latest


#: Opens a fresh websocket to the page's own kernel (its id and base URL from the page's
#: jupyter-config-data), under a new session named from ``prefix``.
_OPEN_KERNEL_SOCKET_JS = """
  const cfg = JSON.parse(document.getElementById("jupyter-config-data").textContent);
  const session = PREFIX + Math.random().toString(16).slice(2);
  const url = new URL(
    cfg.baseUrl + "api/kernels/" + cfg.kernelId + "/channels?session_id=" + session,
    location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url.href);
"""


def _kernel_socket_js(prefix: str) -> str:
    return _OPEN_KERNEL_SOCKET_JS.replace("PREFIX", repr(prefix))


#: Sends messages over a fresh connection to the page's own kernel websocket, the way a
#: page script could, then a barrier (a ``kernel_info_request`` on ``barrierChannel``), and
#: collects everything that comes back until the barrier's reply. A kernel's channel is
#: served in order, so once the barrier is answered, every message sent before it on that
#: channel has had its answer (or has been dropped on the way): no fixed wait. Legacy JSON
#: protocol (no subprotocol requested), as jupyter_server's ZMQChannelsWebsocketConnection
#: reads it.
KERNEL_PROBE_JS = (
    """
async ({ messages, barrierChannel, timeoutMs }) => {"""
    + _kernel_socket_js("probe-")
    + """  const received = [];
  const barrierId = "probe-barrier-" + Math.random().toString(16).slice(2);
  let answered;
  const barrier = new Promise((resolve) => { answered = resolve; });
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { received.push({ binary: true }); return; }
    if (m.parent_header && m.parent_header.msg_id === barrierId) {
      if (m.header.msg_type === "kernel_info_reply") answered(true);
      return;
    }
    received.push(m);
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("the kernel websocket did not open"));
  });
  const send = (msgId, msgType, channel, content) => ws.send(JSON.stringify({
    header: { msg_id: msgId, msg_type: msgType, username: "probe", session,
              date: new Date().toISOString(), version: "5.3" },
    parent_header: {}, metadata: {}, content, buffers: [], channel,
  }));
  const sent = [];
  for (const m of messages) {
    const msgId = "probe-" + m.msgType + "-" + Math.random().toString(16).slice(2);
    send(msgId, m.msgType, m.channel, m.content);
    sent.push({ msgType: m.msgType, msgId });
  }
  send(barrierId, "kernel_info_request", barrierChannel, {});
  const barrierAnswered = await Promise.race(
    [barrier, new Promise((r) => setTimeout(() => r(false), timeoutMs))]);
  ws.close();
  return {
    kernelId: cfg.kernelId,
    sent,
    barrierAnswered,
    received: received.map((m) => ({
      channel: m.channel || null,
      msg_type: m.header ? m.header.msg_type : null,
      parent: m.parent_header ? m.parent_header.msg_id : null,
      content: m.content || null,
    })),
  };
}
"""
)


def probe_kernel(
    page: Page, messages: list[dict[str, Any]], barrier_channel: str, timeout_ms: int = 10_000
) -> dict[str, Any]:
    """Run KERNEL_PROBE_JS in ``page``; ``messages``: [{msgType, channel, content}], then
    the barrier on ``barrier_channel`` (the channel of the message whose answer, or its
    absence, is the point). ``barrierAnswered`` is False when no reply to the barrier came
    within ``timeout_ms`` (the kernel is gone, or the socket is dead)."""
    result: dict[str, Any] = page.evaluate(
        KERNEL_PROBE_JS,
        {"messages": messages, "barrierChannel": barrier_channel, "timeoutMs": timeout_ms},
    )
    return result


def replies_to(result: dict[str, Any], msg_type: str) -> list[dict[str, Any]]:
    """Messages that came back in reply to the probe's message of type ``msg_type``."""
    ids = {s["msgId"] for s in result["sent"] if s["msgType"] == msg_type}
    return [m for m in result["received"] if m["parent"] in ids]


#: Sends ``kernel_info_request`` on the shell channel of the page's own kernel and resolves
#: when its reply comes back (the shell channel is served in order: every widget message
#: the page sent before has been handled by then), or fails at the deadline.
KERNEL_SETTLED_JS = (
    """
async ({ timeoutMs }) => {"""
    + _kernel_socket_js("settle-")
    + """  const msgId = "settle-" + Math.random().toString(16).slice(2);
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no kernel_info_reply in time")), timeoutMs);
      ws.onerror = () => reject(new Error("the kernel websocket did not open"));
      ws.onmessage = (ev) => {
        let m;
        try { m = JSON.parse(ev.data); } catch (e) { return; }
        if (m.parent_header && m.parent_header.msg_id === msgId
            && m.header.msg_type === "kernel_info_reply") {
          clearTimeout(timer);
          resolve(true);
        }
      };
      ws.onopen = () => ws.send(JSON.stringify({
        header: { msg_id: msgId, msg_type: "kernel_info_request", username: "settle", session,
                  date: new Date().toISOString(), version: "5.3" },
        parent_header: {}, metadata: {}, content: {}, buffers: [], channel: "shell",
      }));
    });
  } finally {
    ws.close();
  }
}
"""
)


def wait_for_kernel_settled(page: Page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Until the page's kernel has handled everything the page sent it (a kernel_info_request
    sent after it is answered): then whatever the page's clicks made the kernel write has
    reached the store, and a read-back can say that nothing was written."""
    assert page.evaluate(KERNEL_SETTLED_JS, {"timeoutMs": timeout_ms}) is True


def poll_until(check: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Until ``check()`` holds, or fail at the deadline saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)
