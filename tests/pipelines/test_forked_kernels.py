"""Kernels forked from a zygote (pipelines/kernels/): real kernels, real zygotes.

The module's zygote is started by a parent holding secrets (``PARENT_SECRETS``) that no
kernel is given: none of them may reach a kernel, in ``os.environ`` or in
``/proc/self/environ``. A forked kernel must be what ``python -m ipykernel_launcher`` would
have been (environment, folder, arguments, import path), compared with a kernel started the
usual way from the same request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from hilt.pipelines.kernels import zygote as zygote_module
from hilt.pipelines.kernels.forked import ForkedProvisioner, use_forked
from hilt.pipelines.kernels.source import (
    SWITCH_ENV,
    ZYGOTE_ENV,
    RunningZygote,
    kernel_source,
    start_zygote,
)

PARENT_SECRETS = {"HILT_TOKEN": "parent-token-s3cret", "HILT_MASTER_KEY": "parent-key-s3cret"}
TIMEOUT_S = 60

#: What a kernel reports of itself (one line of JSON on stdout).
PROBE = """
import json as _j, os as _o, sys as _s
print(_j.dumps({
    "environ": dict(_o.environ),
    "proc_environ": open("/proc/self/environ", "rb").read().decode(errors="replace"),
    "cwd": _o.getcwd(),
    "argv": _s.argv,
    "orig_argv": _s.orig_argv[1:],
    "path": _s.path,
    "pid": _o.getpid(),
    "ppid": _o.getppid(),
    "pgid": _o.getpgid(0),
    "dont_write_bytecode": _s.dont_write_bytecode,
}))
"""


@pytest.fixture(scope="module")
def zygote() -> Iterator[RunningZygote]:
    """A zygote started by a parent that holds ``PARENT_SECRETS``."""
    started = start_zygote({**os.environ, **PARENT_SECRETS, SWITCH_ENV: "1"})
    assert started is not None
    yield started
    started.stop()


@pytest.fixture
def from_zygote(zygote: RunningZygote, monkeypatch: pytest.MonkeyPatch) -> RunningZygote:
    """This process's kernels fork from the module's zygote."""
    monkeypatch.setenv(ZYGOTE_ENV, str(zygote.socket_path))
    monkeypatch.delenv(SWITCH_ENV, raising=False)
    return zygote


def asked_environment(**extra: str) -> dict[str, str]:
    """A kernel's environment as a launcher asks for it: this process's, without the
    secrets, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PARENT_SECRETS}
    return {**env, "ASKED_FOR": "this-kernel", **extra}


def start(
    cwd: Path, env: dict[str, str], forked: bool = True
) -> tuple[KernelManager, BlockingKernelClient]:
    manager = KernelManager(kernel_name="python3")
    if forked:
        use_forked(manager)
    manager.start_kernel(env=env, cwd=str(cwd))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(TIMEOUT_S)
    return manager, client


def stop(manager: KernelManager, client: BlockingKernelClient) -> None:
    client.stop_channels()
    if manager.has_kernel:
        manager.shutdown_kernel(now=True)


def run(client: BlockingKernelClient, code: str) -> tuple[dict[str, Any], str]:
    """``code`` executed; its reply's content and its stdout."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])

    reply = client.execute_interactive(code, output_hook=hook, timeout=TIMEOUT_S)
    return reply["content"], "".join(out)


def value(client: BlockingKernelClient, expression: str) -> str:
    """``expression``'s repr as the kernel's execute reply carries it (user_expressions: in
    the reply on the shell channel, not a stream on IOPub, which may come after the kernel's
    idle status that ends ``execute_interactive``'s wait). Right after an execution that
    failed (an interrupt), the kernel aborts the requests that reach it while it still
    clears its queue (status "aborted", no expressions): asked again, until a deadline."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        reply = client.execute_interactive(
            "", user_expressions={"value": expression}, timeout=TIMEOUT_S
        )
        if reply["content"]["status"] != "aborted" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply["content"]["status"] == "ok", reply["content"]
    found = reply["content"]["user_expressions"]["value"]
    assert found["status"] == "ok", found
    text: str = found["data"]["text/plain"]
    return text


def probe(client: BlockingKernelClient) -> dict[str, Any]:
    content, out = run(client, PROBE)
    assert content["status"] == "ok", content
    seen: dict[str, Any] = json.loads(out)
    return seen


def forked_child(manager: KernelManager) -> bool:
    provisioner = manager.provisioner
    return isinstance(provisioner, ForkedProvisioner) and provisioner.forked is not None


def test_a_forked_kernel_is_the_kernel_a_normal_launch_gives_and_holds_no_parent_secret(
    from_zygote: RunningZygote, tmp_path: Path
) -> None:
    env = asked_environment()
    normal = start(tmp_path, env, forked=False)
    forked = start(tmp_path, env)
    try:
        assert not forked_child(normal[0])
        assert forked_child(forked[0])
        seen_normal, seen_forked = probe(normal[1]), probe(forked[1])
        for seen, (m, _) in ((seen_normal, normal), (seen_forked, forked)):  # its own file
            for key in ("argv", "orig_argv"):
                seen[key] = ["{cf}" if a == m.connection_file else a for a in seen[key]]
    finally:
        stop(*normal)
        stop(*forked)
    assert seen_forked["ppid"] == from_zygote.process.pid  # it was forked, not launched
    assert seen_forked["pgid"] == seen_forked["pid"]  # a session of its own
    for key in ("environ", "cwd", "argv", "orig_argv", "path", "dont_write_bytecode"):
        assert seen_forked[key] == seen_normal[key], key
    assert seen_forked["cwd"] == str(tmp_path)
    assert seen_forked["environ"]["ASKED_FOR"] == "this-kernel"
    assert seen_forked["argv"][0].endswith("ipykernel_launcher.py")
    # Nothing of the zygote's parent: not in os.environ, not in the process's first
    # environment block (what `ps e` and /proc show).
    block = seen_forked["proc_environ"]
    for name, secret in PARENT_SECRETS.items():
        assert name not in seen_forked["environ"]
        assert secret not in block and name not in block
    # The block is the zygote's start environment: every entry of it was asked for too.
    entries = dict(e.split("=", 1) for e in block.split("\0") if "=" in e)
    assert entries  # the interpreter's settings at least (PATH, HOME, ...)
    assert all(env.get(k) == v for k, v in entries.items())


def test_a_forked_kernel_is_interrupted_restarted_and_shut_down(
    from_zygote: RunningZygote, tmp_path: Path
) -> None:
    manager, client = start(tmp_path, asked_environment())
    try:
        assert forked_child(manager)
        first = probe(client)["pid"]
        assert run(client, "kept = 42")[0]["status"] == "ok"
        msg_id = client.execute("while True:\n    pass")
        time.sleep(0.3)  # the loop is running (nothing else to poll for)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=TIMEOUT_S)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = client.get_shell_msg(timeout=TIMEOUT_S)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert value(client, "kept") == "42"  # interrupted, not restarted

        manager.restart_kernel(now=True)
        client.wait_for_ready(TIMEOUT_S)
        assert forked_child(manager)
        second = probe(client)["pid"]
        assert second != first
        assert run(client, "kept")[0]["ename"] == "NameError"  # a fresh kernel
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)
    finally:
        stop(manager, client)
    assert not manager.is_alive()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the zygote reaps it
        try:
            os.kill(second, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"kernel {second} still runs after its shutdown")


def test_two_kernels_forked_at_once_are_separate(
    from_zygote: RunningZygote, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    managers = [KernelManager(kernel_name="python3") for _ in range(2)]
    for m in managers:
        use_forked(m)
    clients: list[BlockingKernelClient] = []
    try:
        for m, folder in zip(managers, ("a", "b"), strict=True):  # both started, then waited
            m.start_kernel(env=asked_environment(WHICH=folder), cwd=str(tmp_path / folder))
        for m in managers:
            c = m.client()
            c.start_channels()
            clients.append(c)
            c.wait_for_ready(TIMEOUT_S)
        assert all(forked_child(m) for m in managers)
        run(clients[0], "only_in_a = 1")
        a, b = probe(clients[0]), probe(clients[1])
        assert a["pid"] != b["pid"]
        assert (a["environ"]["WHICH"], b["environ"]["WHICH"]) == ("a", "b")
        assert (Path(a["cwd"]).name, Path(b["cwd"]).name) == ("a", "b")
        assert run(clients[1], "only_in_a")[0]["ename"] == "NameError"
    finally:
        for m, c in zip(managers, clients, strict=False):
            stop(m, c)
        for m in managers[len(clients) :]:
            m.shutdown_kernel(now=True)


def test_without_an_answering_zygote_the_kernel_starts_the_usual_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zygote killed, one refusing (other interpreter settings): the kernel starts."""
    doomed = start_zygote()
    assert doomed is not None
    doomed.process.kill()
    doomed.process.wait(10)
    monkeypatch.setenv(ZYGOTE_ENV, str(doomed.socket_path))
    manager, client = start(tmp_path, asked_environment())
    try:
        assert not forked_child(manager)
        assert probe(client)["ppid"] == os.getpid()
    finally:
        stop(manager, client)
        doomed.stop()


def test_a_zygote_refuses_other_interpreter_settings_and_the_kernel_starts_anyway(
    from_zygote: RunningZygote, tmp_path: Path
) -> None:
    env = asked_environment(PYTHONHASHSEED="1234")
    manager, client = start(tmp_path, env)
    try:
        assert not forked_child(manager)
        _, out = run(client, "import os; print(os.environ['PYTHONHASHSEED'], hash('x'))")
    finally:
        stop(manager, client)
    seed, value = out.split()
    expected = subprocess.run(
        [sys.executable, "-c", "print(hash('x'))"],
        env={**env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (seed, value) == ("1234", expected)


def test_the_switch_turns_forked_kernels_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SWITCH_ENV, "off")
    monkeypatch.delenv(ZYGOTE_ENV, raising=False)
    assert start_zygote() is None
    source = kernel_source()
    assert source.environment == {} and source.started is None


def test_the_zygote_starts_with_what_the_imports_read_and_nothing_else() -> None:
    """``IMPORT_NAMES`` is what the preloaded modules read (a library upgrade that reads a
    new name at import fails here); the start environment keeps only those and the
    interpreter's settings."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from hilt.pipelines.kernels import zygote as z;"
            "print(json.dumps(sorted(z.preload())))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HILT_TOKEN": "x"},
    ).stdout
    read = set(json.loads(out.splitlines()[-1]))
    known = set(zygote_module.IMPORT_NAMES) | zygote_module.RESET_IN_CHILD
    unknown = {n for n in read - known if not zygote_module.startup_environment({n: ""})}
    assert unknown == set()
    kept = zygote_module.startup_environment(
        {"HILT_TOKEN": "t", "PATH": "/bin", "PYTHONHASHSEED": "1", "PYTHONUNBUFFERED": "1"}
    )
    assert kept == {"PATH": "/bin", "PYTHONHASHSEED": "1"}


def test_a_zygote_ends_when_its_parent_does(tmp_path: Path) -> None:
    """Its stdin closes with the process that started it: it exits (no orphan zygote)."""
    script = (
        "import sys, time; from hilt.pipelines.kernels.source import start_zygote;"
        "z = start_zygote(); print(z.process.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the zygote outlived the process that started it")
