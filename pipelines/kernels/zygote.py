"""The zygote: a process that has imported the kernel machinery once and forks a kernel
for each request (pipelines/kernels/forked.py starts it and asks it).

    python -m hilt.pipelines.kernels.zygote SOCKET

It binds ``SOCKET`` (a Unix seqpacket socket in a 0700 folder of the user) at once, then
imports ``PRELOAD`` (ipykernel's application and what it imports, ipywidgets, comm:
nothing that reads the environment or starts a thread at import, no numpy, no xgboost, no
hilt module but this one), freezes what it made (``gc.freeze``: a child's collections
leave it alone, so it is shared, not copied) and serves. A request is one message, JSON
(``argv`` after ``python -m ipykernel_launcher``, ``env``, ``cwd``, ``executable``) with
three descriptors (the kernel's stdin, stdout, stderr). The answer is ``{"pid": N}`` with a
pidfd of the child (robust against pid reuse), or ``{"error": why}``; when the zygote has
reaped the child it sends ``{"exit": code}`` on the same connection and closes it. If the
requester's connection closes while its kernel runs (the process that launched it died), the
kernel's process group gets SIGTERM, as a kernel ends when its launcher does.

The child becomes ``python -m ipykernel_launcher ARGV``: a session of its own, the asked
folder, the asked environment (``os.environ`` replaced wholesale), the asked descriptors,
``sys.argv`` and ``sys.path[0]`` as the interpreter sets them for ``-m``, Python's default
signal handlers. The zygote is started with a minimal environment (``STARTUP_NAMES``: the
interpreter's own settings, no secret of its parent); a request whose interpreter settings
differ from the zygote's (e.g. another ``PYTHONHASHSEED`` or ``PYTHONPATH``) is refused
and the requester starts the kernel the usual way. The zygote exits when its stdin closes
(the process that started it has ended) or on SIGTERM.
"""

from __future__ import annotations

import gc
import importlib
import io
import json
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

#: What the zygote imports once: ipykernel's application and what a kernel imports as it
#: starts (its debugger, IPython's history database, inspector, completer), the widgets.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.debugger",
    "IPython.core.completerlib",
    "IPython.core.oinspect",
    "IPython.core.logger",
    "IPython.extensions.storemagic",
    "traitlets.config.argcomplete_config",
    "tornado.platform.asyncio",
    "sqlite3",
    "psutil",
    "ipywidgets",
    "comm",
)
#: The environment the interpreter reads as it starts: a request must ask for the zygote's
#: values (its kernel would not be what it asked for otherwise), but for ``APPLIED``.
STARTUP_PREFIXES = ("PYTHON",)
STARTUP_NAMES = frozenset({"LANG", "LC_ALL", "LC_CTYPE"})
#: Read at start, applied again in the child: bytecode writing, unbuffered streams (the
#: standard streams are made anew for the kernel's descriptors anyway), breakpoint() hook.
APPLIED = frozenset({"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONBREAKPOINT"})
#: Read by ``PRELOAD`` at import (traitlets defaults, ipywidgets, jupyter_core, zmq, tornado,
#: IPython, debugpy's settings and paths), measured with ``preload`` (a test holds this list
#: to it); a zygote starts with its parent's values of these (none is a key or names a
#: person) and checks every name it read against each request all the same.
IMPORT_NAMES = (
    "ANDROID_DATA",
    "DEBUGPY_LOG_DIR",
    "DEBUGPY_LOG_STDERR",
    "DEBUGPY_PROCESS_EXIT_TIMEOUT",
    "DEBUGPY_PROCESS_SPAWN_TIMEOUT",
    "DEBUG_PYDEVD_PATHS_TRANSLATION",
    "DISPLAY",
    "GEVENT_SHOW_PAUSED_GREENLETS",
    "GEVENT_SUPPORT",
    "GEVENT_SUPPORT_NOT_SET_MSG",
    "HOME",
    "IN_SPHINX_RUN",
    "IPYTHONENABLE",
    "IPYTHON_SUPPRESS_CONFIG_ERRORS",
    "IPYTHON_TESTING_TIMEOUT_SCALE",
    "JUPYTER_ALLOW_INSECURE_WRITES",
    "JUPYTER_PLATFORM_DIRS",
    "JUPYTER_USE_PROGRAMDATA",
    "JUPYTER_WIDGETS_ECHO",
    "MSGPACK_PUREPYTHON",
    "PATH",
    "PATHS_FROM_ECLIPSE_TO_PYTHON",
    "PSUTIL_DEBUG",
    "PYCHARM_DEBUG",
    "PYDEVD_APPLY_PATCHING_TO_HIDE_PYDEVD_THREADS",
    "PYDEVD_CONTAINER_BUCKET_SIZE",
    "PYDEVD_CONTAINER_INITIAL_EXPANDED_ITEMS",
    "PYDEVD_CONTAINER_NUMPY_MAX_ITEMS",
    "PYDEVD_CONTAINER_RANDOM_ACCESS_MAX_ITEMS",
    "PYDEVD_DEBUG",
    "PYDEVD_DEBUG_FILE",
    "PYDEVD_DISABLE_FILE_VALIDATION",
    "PYDEVD_FILENAME_NORMALIZATION",
    "PYDEVD_INTERRUPT_THREAD_TIMEOUT",
    "PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING",
    "PYDEVD_IPYTHON_CONTEXT",
    "PYDEVD_LOAD_NATIVE_LIB",
    "PYDEVD_LOAD_VALUES_ASYNC",
    "PYDEVD_LOG_TIME",
    "PYDEVD_PANDAS_MAX_COLS",
    "PYDEVD_PANDAS_MAX_COLWIDTH",
    "PYDEVD_PANDAS_MAX_ROWS",
    "PYDEVD_RESOLVE_SYMLINKS",
    "PYDEVD_SHOW_COMPILE_CYTHON_COMMAND_LINE",
    "PYDEVD_THREAD_DUMP_ON_WARN_EVALUATION_TIMEOUT",
    "PYDEVD_UNBLOCK_THREADS_ON_VARIABLES_TIMEOUT",
    "PYDEVD_UNBLOCK_THREADS_TIMEOUT",
    "PYDEVD_USE_CYTHON",
    "PYDEVD_USE_FRAME_EVAL",
    "PYDEVD_WARN_EVALUATION_TIMEOUT",
    "PYDEVD_WARN_SLOW_RESOLVE_TIMEOUT",
    "PYDEV_DEBUG",
    "PYZMQ_BACKEND",
    "TERM",
    "TORNADO_EXTENSION",
    "TORNADO_NO_EXTENSION",
    "TRAITLETS_APPLICATION_RAISE_CONFIG_FILE_ERROR",
    "USER",
    "_ARC_DEBUG",
    "_ARGCOMPLETE_SUPPRESS_SPACE",
    "_PYTHON_PROJECT_BASE",
    "_PYTHON_SYSCONFIGDATA_NAME",
)
#: Read at import as the kernel application's defaults, set again in the child.
RESET_IN_CHILD = frozenset({"JPY_PARENT_PID", "JPY_INTERRUPT_EVENT"})
#: The module every kernel runs, as ``python -m`` would.
LAUNCHER = "ipykernel_launcher"
MAX_REQUEST = 1 << 20


def startup_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Of ``environ``, what a zygote starts with: what the interpreter reads as it starts
    (but ``APPLIED``) and what ``PRELOAD`` reads at import. Nothing else of it (no key,
    token or identity) is in the zygote's memory."""
    return {k: v for k, v in environ.items() if _fixed_at_start(k) or k in IMPORT_NAMES}


def _fixed_at_start(name: str) -> bool:
    return (name.startswith(STARTUP_PREFIXES) or name in STARTUP_NAMES) and name not in APPLIED


def preload() -> frozenset[str]:
    """Import ``PRELOAD``; the names of the environment read while doing so."""
    read: set[str] = set()
    environ_type = type(os.environ)
    getitem, contains = environ_type.__getitem__, environ_type.__contains__

    def spied_getitem(self: Any, key: str) -> str:
        if isinstance(key, str):
            read.add(key)
        return getitem(self, key)

    def spied_contains(self: Any, key: object) -> bool:
        if isinstance(key, str):
            read.add(key)
        return contains(self, key)

    environ_type.__getitem__ = spied_getitem  # type: ignore[method-assign]
    environ_type.__contains__ = spied_contains  # type: ignore[method-assign]
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        environ_type.__getitem__ = getitem  # type: ignore[method-assign]
        environ_type.__contains__ = contains  # type: ignore[method-assign]
    return frozenset(read)


@dataclass(frozen=True)
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    fds: list[int]


@dataclass(frozen=True)
class Preloaded:
    """What the zygote's imports depend on and did to the environment."""

    #: the zygote's environment as it started
    environ: dict[str, str]
    #: the names of the environment the imports read
    read: frozenset[str]
    #: what the imports set in the environment (debugpy: PYDEVD_USE_FRAME_EVAL=NO), set
    #: again in each kernel's environment, as the same imports would have there
    changes: dict[str, str]


def refusal(message: dict[str, Any], fds: list[int], preloaded: Preloaded) -> str | None:
    """Why the zygote cannot fork the kernel ``message`` asks for (None: it can)."""
    if len(fds) != 3:
        return "three descriptors (stdin, stdout, stderr) are needed"
    if message.get("executable") != sys.executable:
        return "another interpreter"
    env, argv, cwd = message.get("env"), message.get("argv"), message.get("cwd")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        return "no environment"
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return "no arguments"
    if not isinstance(cwd, str) or not os.path.isdir(cwd):
        return "no such folder"
    mine = preloaded.environ
    names = {k for k in (*env, *mine) if _fixed_at_start(k)} | (preloaded.read - RESET_IN_CHILD)
    differ = sorted(k for k in names if env.get(k) != mine.get(k))
    return f"other settings: {', '.join(differ)}" if differ else None


class Zygote:
    def __init__(self, listener: socket.socket, preloaded: Preloaded) -> None:
        self.listener = listener
        self.preloaded = preloaded
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        #: child pid -> (its requester's connection while open, its pidfd)
        self.children: dict[int, tuple[socket.socket | None, int]] = {}

    def serve(self) -> Request | None:
        """Serve until stdin closes (None) or, in a child just forked, its request."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(0, selectors.EVENT_READ, "stdin")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    child = self.accept_one()
                    if child is not None:
                        return child
                elif key.data == "stdin":
                    if not os.read(0, 4096):
                        return None
                elif key.data == "signal":
                    while True:
                        try:
                            if not os.read(self.wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                    self.reap()
                else:
                    self.requester_closed(key.fileobj, key.data)  # type: ignore[arg-type]

    def accept_one(self) -> Request | None:
        """One request served; a zygote outlives a request it cannot serve."""
        try:
            return self.accept()
        except Exception as e:  # a requester falls back; the zygote serves on
            print(f"zygote: request not served: {type(e).__name__}", file=sys.stderr)
            return None

    def accept(self) -> Request | None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        try:
            data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
            message = json.loads(data)
        except (OSError, ValueError):
            conn.close()
            return None
        why = (
            refusal(message, fds, self.preloaded) if isinstance(message, dict) else "not a request"
        )
        if why is not None:
            for fd in fds:
                os.close(fd)
            with _suppressed():
                conn.sendall(json.dumps({"error": why}).encode())
            conn.close()
            return None
        env = {**message["env"], **self.preloaded.changes}
        request = Request(message["argv"], env, message["cwd"], fds)
        pid = os.fork()
        if pid == 0:
            conn.close()
            self.close_all()
            return request
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(conn, [json.dumps({"pid": pid}).encode()], [pidfd])
        except OSError:  # the requester has gone already: so does its kernel
            os.kill(pid, signal.SIGKILL)
        self.children[pid] = (conn, pidfd)
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        return None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue
            conn, pidfd = self.children.pop(pid)
            os.close(pidfd)
            if conn is not None:
                self.selector.unregister(conn)
                with _suppressed():
                    conn.setblocking(True)
                    conn.settimeout(1)
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
                conn.close()

    def requester_closed(self, conn: socket.socket, pid: int) -> None:
        """A requester's connection is readable: it never sends after its request, so this
        is its end (its process ended or it let go of the kernel): the kernel ends too."""
        with _suppressed():
            if conn.recv(1):
                return
        self.selector.unregister(conn)
        conn.close()
        with _suppressed():
            os.killpg(pid, signal.SIGTERM)
        self.children[pid] = (None, self.children[pid][1])

    def close_all(self) -> None:
        """In a new child: nothing of the zygote stays open."""
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self.listener.close()
        for conn, pidfd in self.children.values():
            if conn is not None:
                conn.close()
            os.close(pidfd)
        os.close(self.wake_r)
        os.close(self.wake_w)


class _suppressed:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, OSError)


def become_kernel(request: Request) -> None:
    """In the forked child: ``python -m ipykernel_launcher ARGV`` as asked."""
    import runpy

    os.setsid()
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    _apply_startup_settings()
    sys.argv = ["-m", *request.argv]  # runpy sets argv[0] to the module's file, as -m does
    sys.orig_argv[:] = [sys.executable, "-m", LAUNCHER, *request.argv]
    if sys.path and not sys.flags.safe_path:
        sys.path[0] = os.getcwd()
    runpy.run_module(LAUNCHER, run_name="__main__", alter_sys=True)


def _apply_startup_settings() -> None:
    """What the interpreter and the kernel application read from the environment at start
    (``APPLIED``, ``RESET_IN_CHILD``), from the kernel's environment."""
    from ipykernel.kernelapp import IPKernelApp

    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        stream = _stream(fd, getattr(sys, f"__{name}__"), unbuffered and fd > 0)
        for attribute in (name, f"__{name}__"):
            setattr(sys, attribute, stream)
    for trait, name in (("parent_handle", "JPY_PARENT_PID"), ("interrupt", "JPY_INTERRUPT_EVENT")):
        value = int(os.environ.get(name) or 0)
        IPKernelApp.class_traits()[trait].default_value = value
        # traitlets keeps a copy of a class's immutable defaults, made when it was defined
        IPKernelApp._static_immutable_initial_values[trait] = value


def _stream(fd: int, like: TextIO | None, unbuffered: bool) -> io.TextIOWrapper:
    """A standard stream on ``fd`` as the interpreter makes it at start (the encoding and
    error handler of the zygote's, which the same settings gave)."""
    reading = fd == 0
    raw = io.FileIO(fd, "r" if reading else "w", closefd=False)
    buffered: Any = raw  # unbuffered: write through to the fd
    if reading:
        buffered = io.BufferedReader(raw)
    elif not unbuffered:
        buffered = io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffered,
        encoding=like.encoding if like else "utf-8",
        errors=like.errors if like else "strict",
        line_buffering=not unbuffered and not reading and (raw.isatty() or fd == 2),
        write_through=unbuffered and not reading,
    )


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m hilt.pipelines.kernels.zygote SOCKET")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(argv[0])
    listener.listen(64)  # requests wait here while the imports below are made
    environ = dict(os.environ)
    read = preload()
    changes = {k: v for k, v in os.environ.items() if environ.get(k) != v}
    if set(environ) - set(os.environ):
        raise SystemExit("zygote: a preloaded module removed a variable; not serving")
    if threading.active_count() != 1:  # a fork would copy a thread's locks, not the thread
        raise SystemExit("zygote: a preloaded module started a thread; not serving")
    gc.collect()
    gc.freeze()
    request = Zygote(listener, Preloaded(environ, read, changes)).serve()
    if request is not None:  # the child: the zygote's frames are gone, the kernel runs
        become_kernel(request)


if __name__ == "__main__":
    main(sys.argv[1:])
