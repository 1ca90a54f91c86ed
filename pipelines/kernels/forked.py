"""Kernels forked from a warm parent: ``ForkedProvisioner``, a jupyter_client kernel
provisioner that asks a zygote (pipelines/kernels/zygote.py) for each kernel.

A kernel's start is mostly the ``ipykernel_launcher`` process starting and importing
IPython, zmq, tornado, jupyter_client, traitlets, comm and ipywidgets. The zygote has made
those imports once; each kernel is a child forked from it (a session of its own, the asked
folder, environment and descriptors, ``python -m ipykernel_launcher`` as the kernelspec
says). The provisioner tracks the child through a pidfd the zygote sends (robust against
pid reuse), signals its process group (an interrupt is SIGINT to the kernel, as with a
normal launch), learns its exit code from the zygote (which reaps its children), and lets
go of it at cleanup.

Where the zygote comes from, and the switch that turns this off: pipelines/kernels/source.py.
Without a zygote, when it does not answer or refuses (another interpreter, other interpreter
settings, stdio pipes asked for), the kernel starts the usual way (``LocalProvisioner``): a
kernel start never fails because of the zygote.

Wiring: the entry point ``hilt-forked`` (pyproject, ``jupyter_client.kernel_provisioners``)
names this class; a run's kernel takes it through ``use_forked``. Voila and JupyterLab do
not (see source.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from hilt.pipelines.kernels.source import (
    PROVISIONER_NAME,
    ZYGOTE_ENV,
    enabled,
    provisioner_installed,
)
from hilt.pipelines.kernels.zygote import LAUNCHER

#: How long a launch waits for the zygote's answer (it may still be importing) before the
#: kernel is started the usual way.
ANSWER_TIMEOUT_S: Final = 15.0
#: What a kernel start may be given besides its command for the zygote to fork it.
_FORKABLE_KWARGS = frozenset({"env", "cwd", "stdin", "stdout", "stderr"})


class ZygoteUnavailable(Exception):
    """The zygote did not fork the kernel (absent, gone, silent or refusing): why."""


def use_forked(manager: KernelManager) -> None:
    """``manager``'s kernel is provisioned by ``ForkedProvisioner`` (set before its start;
    left to the usual launch where the entry point is not installed)."""
    if not provisioner_installed():
        return
    spec = manager.kernel_spec
    if spec is None:
        raise ValueError(f"no kernelspec named {manager.kernel_name!r}")
    spec.metadata["kernel_provisioner"] = {"provisioner_name": PROVISIONER_NAME}


@dataclass
class ForkedKernel:
    """A kernel the zygote forked: its pid (and process group), a pidfd, the connection on
    which the zygote sends its exit code."""

    pid: int
    pidfd: int
    connection: socket.socket
    returncode: int | None = field(default=None)

    def ended(self) -> bool:
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def poll(self) -> int | None:
        """None while it runs, and until the zygote has reaped it and said its exit code
        (a moment later; never waited for here: this runs in the server's event loop)."""
        if self.returncode is None and self.ended():
            self.returncode = self._exit_code()
        return self.returncode

    def _exit_code(self) -> int | None:
        """The code the zygote reports once it has reaped the child; None if it has not
        yet; 1 if it cannot (a zygote that has gone: init reaps the child)."""
        try:
            data = self.connection.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            return 1
        try:
            message = json.loads(data or b"{}")
        except ValueError:
            return 1
        code = message.get("exit") if isinstance(message, dict) else None
        return code if isinstance(code, int) else 1

    def send_signal(self, signum: int) -> None:
        """``signum`` to the kernel's process group (its session), as a normal launch does;
        nothing once it has ended (its pid may be another process's by then)."""
        if self.ended():
            return
        try:
            os.killpg(self.pid, signum)
        except OSError:
            signal.pidfd_send_signal(self.pidfd, signum)

    def close(self) -> None:
        os.close(self.pidfd)
        self.connection.close()


def request_kernel(
    socket_path: str, argv: list[str], env: Mapping[str, str], cwd: str, stdio: list[int]
) -> ForkedKernel:
    """Ask the zygote at ``socket_path`` for ``python -m ipykernel_launcher ARGV``."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.settimeout(ANSWER_TIMEOUT_S)
    request = {"executable": sys.executable, "argv": argv, "env": dict(env), "cwd": cwd}
    try:
        conn.connect(socket_path)
        socket.send_fds(conn, [json.dumps(request).encode()], stdio)
        data, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        answer = json.loads(data or b"{}")
    except (OSError, ValueError) as e:
        conn.close()
        raise ZygoteUnavailable(f"no answer: {type(e).__name__}") from e
    pid = answer.get("pid") if isinstance(answer, dict) else None
    if not isinstance(pid, int) or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        conn.close()
        why = answer.get("error") if isinstance(answer, dict) else None
        raise ZygoteUnavailable(str(why or "no kernel"))
    os.set_inheritable(fds[0], False)
    return ForkedKernel(pid, fds[0], conn)


def _fd_for(value: Any, default: int, opened: list[int]) -> int | None:
    """The descriptor a kernel's stream gets from Popen-style ``value`` (None: not forkable)."""
    if value is None:
        return default
    if value == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(fd)
        return fd
    if isinstance(value, int) and value >= 0:
        return value
    fileno = getattr(value, "fileno", None)
    return fileno() if callable(fileno) else None  # PIPE and the like: not forkable


class ForkedProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernels are forked by the zygote when there is one."""

    forked: ForkedKernel | None = None

    @property
    def has_process(self) -> bool:
        return self.forked is not None or self.process is not None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        socket_path = os.environ.get(ZYGOTE_ENV) if enabled() else None
        if socket_path and _forkable(cmd, kwargs):
            try:
                forked = await asyncio.to_thread(self._fork, socket_path, cmd, kwargs)
            except ZygoteUnavailable as e:
                self.log.warning("kernel started without the zygote (%s)", e)
            else:
                self.forked = forked
                self.pid = self.pgid = forked.pid
                self.cwd = kwargs.get("cwd", Path.cwd())
                return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)

    @staticmethod
    def _fork(socket_path: str, cmd: list[str], kwargs: dict[str, Any]) -> ForkedKernel:
        opened: list[int] = []
        try:
            stdio = [
                _fd_for(kwargs.get("stdin"), -1, opened),
                _fd_for(kwargs.get("stdout"), 1, opened),
                _fd_for(kwargs.get("stderr"), 2, opened),
            ]
            if stdio[0] == -1:  # the kernel's stdin is never read (launch_kernel: a closed pipe)
                stdio[0] = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                opened.append(stdio[0])
            if any(fd is None for fd in stdio):
                raise ZygoteUnavailable("a stream is a pipe")
            env = dict(kwargs.get("env") or os.environ)
            env["JPY_PARENT_PID"] = str(os.getpid())  # as launch_kernel sets it
            cwd = str(kwargs.get("cwd") or os.getcwd())
            return request_kernel(
                socket_path, cmd[3:], env, cwd, [fd for fd in stdio if fd is not None]
            )
        finally:
            for fd in opened:
                os.close(fd)

    async def poll(self) -> int | None:
        if self.forked is not None:
            return self.forked.poll()
        return await super().poll()

    async def wait(self) -> int | None:
        if self.forked is None:
            return await super().wait()
        while (code := self.forked.poll()) is None:
            await asyncio.sleep(0.05)
        self.forked.close()
        self.forked = None
        return code

    async def send_signal(self, signum: int) -> None:
        if self.forked is not None:
            self.forked.send_signal(signum)
            return
        await super().send_signal(signum)

    async def kill(self, restart: bool = False) -> None:
        if self.forked is not None:
            self.forked.send_signal(signal.SIGKILL)
            return
        await super().kill(restart)

    async def terminate(self, restart: bool = False) -> None:
        if self.forked is not None:
            self.forked.send_signal(signal.SIGTERM)
            return
        await super().terminate(restart)

    async def cleanup(self, restart: bool = False) -> None:
        if self.forked is not None:  # let go of it (the zygote ends it if it still runs)
            self.forked.close()
            self.forked = None
        await super().cleanup(restart)


def _forkable(cmd: list[str], kwargs: Mapping[str, Any]) -> bool:
    """``cmd`` is ``python -m ipykernel_launcher ...`` of this interpreter and nothing is
    asked of the start that a fork cannot give."""
    return (
        len(cmd) >= 3
        and cmd[0] == sys.executable
        and cmd[1:3] == ["-m", LAUNCHER]
        and set(kwargs) - {"extra_arguments", "kernel_id"} <= _FORKABLE_KWARGS
    )
