"""MLflow for a run's kernel, done by the runner: the kernel never imports mlflow.

The runner (``hilt retrain``, ``score``, ``monitor``) has MLflow loaded and configured for
the workspace already (it created the run). While papermill executes the notebook, the
runner serves a few MLflow operations (``OPERATIONS``) on a Unix socket in a private folder
(0700); the kernel finds it through ``$HILT_TRACKING_RELAY`` and proves itself with the
random key in ``$HILT_TRACKING_RELAY_KEY`` (its environment is the runner's to give).
Requests and answers are JSON (never pickle); files (a prepared training log, a downloaded
model) are exchanged as paths under the relay's folder, which the runner removes when the
run ends.

The relay is a transport, not an authority: it does what the kernel's own MLflow client
would do (``Tracking``). The store, which the kernel calls directly, decides as before.

Importing this module imports no mlflow; ``serve`` does (the runner has it already).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError

if TYPE_CHECKING:
    from hilt.pipelines.loop.model import TrainedModel

#: The socket's path and the key, in a run's kernel.
RELAY_ENV: Final = "HILT_TRACKING_RELAY"
RELAY_KEY_ENV: Final = "HILT_TRACKING_RELAY_KEY"
#: Longest request or answer (bytes): JSON of ids, tags, metrics and paths.
MAX_MESSAGE: Final = 1 << 20
#: How long the kernel waits for one answer (a model logged on a loaded machine: seconds).
CALL_TIMEOUT_S: Final = 600.0
#: How long the relay waits for a request's bytes once a peer connected (a stalled peer
#: must not block the kernel's later calls, nor the runner's stop).
RECEIVE_TIMEOUT_S: Final = 30.0
#: A registered model version, as MLflow numbers them (it names a download folder).
VERSION: Final = re.compile(r"[1-9][0-9]{0,9}")
#: Longest Unix socket path the kernel can connect to (Linux: 108 bytes with the NUL).
MAX_SOCKET_PATH: Final = 100
#: How often the relay's loop looks for a stop request when nothing wakes it (seconds):
#: ``serve`` wakes it itself when the run ends, so no run waits for this.
POLL_INTERVAL_S: Final = 0.5

_LENGTH = struct.Struct(">I")


class RelayError(HiltError):
    """The runner's relay refused or failed an operation (its message names what)."""

    status_code = 500
    kind = "tracking"


class Tracking(Protocol):
    """The MLflow operations a retraining kernel needs (in process, or by the relay)."""

    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...

    def log_run_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None: ...

    def log_run_values(
        self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None: ...

    def write_training_log(self, run_id: str, log_json: str) -> dict[str, str]: ...

    def register_version(self, run_id: str) -> str: ...

    def delete_version(self, version: str) -> None: ...

    def mirror(self) -> str | None: ...

    def model_dir(self, version: str) -> str: ...

    def folder(self) -> str: ...


# ---------------------------------------------------------------------------- framing
def _send(sock: socket.socket, payload: Mapping[str, Any]) -> None:
    data = json.dumps(payload).encode("utf-8")
    if len(data) > MAX_MESSAGE:
        raise RelayError(f"relay message of {len(data)} bytes is too long")
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise RelayError("the relay closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket) -> dict[str, Any]:
    (n,) = _LENGTH.unpack(_receive_exactly(sock, _LENGTH.size))
    if n > MAX_MESSAGE:
        raise RelayError(f"relay message of {n} bytes is too long")
    message = json.loads(_receive_exactly(sock, n).decode("utf-8"))
    if not isinstance(message, dict):
        raise RelayError("a relay message is a JSON object")
    return message


# ---------------------------------------------------------------------------- the kernel's side
class RelayClient:
    """``Tracking`` through the runner's relay (no mlflow in this process)."""

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self._key = key

    @classmethod
    def from_environment(cls) -> RelayClient | None:
        path, key = os.environ.get(RELAY_ENV), os.environ.get(RELAY_KEY_ENV)
        return cls(path, key) if path and key else None

    def call(self, operation: str, **arguments: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CALL_TIMEOUT_S)
            try:
                sock.connect(self.path)
            except OSError as e:
                raise RelayError(f"the runner's MLflow relay does not answer: {e}") from None
            _send(sock, {"key": self._key, "operation": operation, "arguments": arguments})
            answer = _receive(sock)
        if "error" in answer:
            raise RelayError(str(answer["error"]))
        return answer.get("result")

    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.call("set_run_tags", run_id=run_id, tags={k: str(v) for k, v in tags.items()})

    def log_run_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self.call("log_run_dict", run_id=run_id, data=dict(data), artifact_file=artifact_file)

    def log_run_values(
        self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        self.call(
            "log_run_values",
            run_id=run_id,
            params={str(k): str(v) for k, v in params.items()},
            metrics={str(k): float(v) for k, v in metrics.items()},
        )

    def write_training_log(self, run_id: str, log_json: str) -> dict[str, str]:
        out: dict[str, str] = self.call("write_training_log", run_id=run_id, log_json=log_json)
        return out

    def register_version(self, run_id: str) -> str:
        return str(self.call("register_version", run_id=run_id))

    def delete_version(self, version: str) -> None:
        self.call("delete_version", version=version)

    def mirror(self) -> str | None:
        problem = self.call("mirror")
        return None if problem is None else str(problem)

    def model_dir(self, version: str) -> str:
        return str(self.call("model_dir", version=version))

    def folder(self) -> str:
        return str(self.call("folder"))


# ---------------------------------------------------------------------------- in process
@dataclass(frozen=True)
class InProcess:
    """``Tracking`` with this process's MLflow (``client.configure`` first): what the relay
    does for a kernel, and what a notebook run by hand (or ``run_in_process``) uses.
    ``models`` reads the store's registry for ``mirror``; ``workdir`` holds downloads."""

    settings: Settings
    models: Callable[[], Any]
    workdir: str

    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from hilt.pipelines.loop.tracking.runs import set_run_tags

        set_run_tags(run_id, tags)

    def log_run_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        from hilt.pipelines.loop.tracking.runs import log_run_dict

        log_run_dict(run_id, data, artifact_file)

    def log_run_values(
        self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        from hilt.pipelines.loop.tracking.runs import log_run_values

        log_run_values(run_id, params=params, metrics=metrics)

    def write_training_log(self, run_id: str, log_json: str) -> dict[str, str]:
        from hilt.pipelines.loop.tracking.training import write_training_log
        from hilt.pipelines.loop.tracking.training_log import TrainingLog

        logged = write_training_log(run_id, TrainingLog.from_json(log_json))
        return {"model_sha256": logged.model_sha256, "model_uri": logged.model_uri}

    def register_version(self, run_id: str) -> str:
        from hilt.pipelines.loop.tracking.registry import register_version

        return register_version(self.settings, run_id)

    def delete_version(self, version: str) -> None:
        from hilt.pipelines.loop.tracking.registry import delete_version

        delete_version(self.settings, version)

    def mirror(self) -> str | None:
        from hilt.pipelines.loop.tracking.registry import mirror

        try:
            mirror(self.settings, self.models())
        except HiltError as e:
            return str(e)
        return None

    def model_dir(self, version: str) -> str:
        from hilt.pipelines.loop.tracking.pyfunc import download_model_version

        target = Path(tempfile.mkdtemp(prefix=f"model-v{version}-", dir=self.workdir))
        return str(download_model_version(self.settings, version, target))

    def folder(self) -> str:
        return tempfile.mkdtemp(prefix="log-", dir=self.workdir)


#: What the relay serves: operation → the ``Tracking`` method's argument names.
OPERATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "set_run_tags": ("run_id", "tags"),
    "log_run_dict": ("run_id", "data", "artifact_file"),
    "log_run_values": ("run_id", "params", "metrics"),
    "write_training_log": ("run_id", "log_json"),
    "register_version": ("run_id",),
    "delete_version": ("version",),
    "mirror": (),
    "model_dir": ("version",),
    "folder": (),
}


# ---------------------------------------------------------------------------- the runner's side
@dataclass(frozen=True)
class Relay:
    """A serving relay: where it listens and what the kernel's environment needs."""

    path: str
    key: str
    folder: str

    def environment(self) -> dict[str, str]:
        return {RELAY_ENV: self.path, RELAY_KEY_ENV: self.key}


class _Bound:
    """What a run's kernel may ask of the relay: its own run only, versions it registered
    (to delete) or numbered as MLflow numbers them (to download), and files under the
    relay's folder only. The store still decides what counts; this keeps the relay from
    being a wider door than the kernel's own MLflow client on its run."""

    def __init__(self, tracking: Tracking, run_id: str, folder: str) -> None:
        self._tracking = tracking
        self._run_id = run_id
        self._folder = Path(folder).resolve()
        self._registered: set[str] = set()

    def _run(self, run_id: str) -> None:
        if run_id != self._run_id:
            raise RelayError("the relay serves only the run it was started for")

    @staticmethod
    def _version(version: str) -> None:
        if not isinstance(version, str) or not VERSION.fullmatch(version):
            raise RelayError("a model version is a positive whole number")

    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._run(run_id)
        self._tracking.set_run_tags(run_id, tags)

    def log_run_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self._run(run_id)
        self._tracking.log_run_dict(run_id, data, artifact_file)

    def log_run_values(
        self, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> None:
        self._run(run_id)
        self._tracking.log_run_values(run_id, params, metrics)

    def write_training_log(self, run_id: str, log_json: str) -> dict[str, str]:
        self._run(run_id)
        data = json.loads(log_json)
        given = data.get("folder") if isinstance(data, dict) else None
        if not isinstance(given, str) or not Path(given).resolve().is_relative_to(self._folder):
            raise RelayError("a training log's files must be in the relay's folder")
        return self._tracking.write_training_log(run_id, log_json)

    def register_version(self, run_id: str) -> str:
        self._run(run_id)
        version = self._tracking.register_version(run_id)
        self._registered.add(version)
        return version

    def delete_version(self, version: str) -> None:
        self._version(version)
        if version not in self._registered:
            raise RelayError("the relay deletes only a version this run registered")
        self._tracking.delete_version(version)
        self._registered.discard(version)

    def mirror(self) -> str | None:
        return self._tracking.mirror()

    def model_dir(self, version: str) -> str:
        self._version(version)
        return self._tracking.model_dir(version)

    def folder(self) -> str:
        return self._tracking.folder()


def _handle(tracking: Tracking, key: str, message: Mapping[str, Any]) -> dict[str, Any]:
    given = message.get("key")
    if not isinstance(given, str) or not hmac.compare_digest(
        given.encode("utf-8", "replace"), key.encode("utf-8")
    ):
        return {"error": "the relay refused a request without its key"}
    operation = message.get("operation")
    arguments = message.get("arguments")
    if not isinstance(operation, str) or operation not in OPERATIONS:
        return {"error": f"the relay has no operation {operation!r}"}
    if not isinstance(arguments, dict) or set(arguments) != set(OPERATIONS[operation]):
        return {"error": f"{operation}: takes {', '.join(OPERATIONS[operation]) or 'nothing'}"}
    try:
        return {"result": getattr(tracking, operation)(**arguments)}
    except HiltError as e:
        return {"error": str(e)}
    except Exception as e:  # the kernel sees it as RelayError; the runner carries on
        return {"error": f"{operation} failed: {type(e).__name__}: {e}"}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread a connection (a stalled peer holds only its own), never waited for at
    stop (each times out on its own)."""

    daemon_threads = True
    block_on_close = False


@contextlib.contextmanager
def reserve() -> Iterator[Relay]:
    """Where a relay will listen, and its key, before it serves (a run's kernel is given
    them as it starts, before the run it serves exists): a new private folder (0700) under
    $TMPDIR, or /tmp where that would make the socket's path too long to connect to, removed
    when the block ends (downloads and prepared logs with it)."""
    folder = tempfile.mkdtemp(prefix="hilt-relay-")
    if len(os.path.join(folder, "relay.sock")) > MAX_SOCKET_PATH:
        shutil.rmtree(folder, ignore_errors=True)
        folder = tempfile.mkdtemp(prefix="hilt-relay-", dir="/tmp")
    try:
        os.chmod(folder, 0o700)
        path = os.path.join(folder, "relay.sock")
        yield Relay(path=path, key=secrets.token_hex(32), folder=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def serve(
    tracking_for: Callable[[str], Tracking], run_id: str, at: Relay | None = None
) -> Iterator[Relay]:
    """Serve ``tracking_for(folder)`` for the run ``run_id`` only (``_Bound``) on a Unix
    socket in the private folder of ``at`` (``reserve``; a new one when None, removed when
    the block ends) until the block ends; then stop."""
    if at is None:
        with reserve() as reserved, serve(tracking_for, run_id, reserved) as relay:
            yield relay
        return
    path, key, folder = at.path, at.key, at.folder
    tracking = _Bound(tracking_for(folder), run_id, folder)
    one_at_a_time = threading.Lock()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(RECEIVE_TIMEOUT_S)
            try:
                message = _receive(sock)
            except (RelayError, ValueError, OSError):
                return
            with one_at_a_time:  # the kernel asks in turn; MLflow's client is used so
                answer = _handle(tracking, key, message)
            with contextlib.suppress(OSError, RelayError):
                _send(sock, answer)

    server = _Server(path, Handler)
    thread = threading.Thread(
        target=server.serve_forever, args=(POLL_INTERVAL_S,), name="hilt-relay", daemon=True
    )
    thread.start()
    try:
        yield at
    finally:
        _stop(server, path)
        server.server_close()
        thread.join()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _stop(server: socketserver.BaseServer, path: str) -> None:
    """``server.shutdown()`` without waiting for the loop's next poll (up to
    ``POLL_INTERVAL_S``, at the end of every run): while the stop is pending, a connection
    to the socket wakes the loop, which then sees it (the connection says nothing; its
    handler returns at once)."""
    stopping = threading.Thread(target=server.shutdown, name="hilt-relay-stop", daemon=True)
    stopping.start()
    while stopping.is_alive():
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as wake:
            wake.settimeout(1.0)
            wake.connect(path)
        stopping.join(0.05)


def tracking_here(settings: Settings, models: Callable[[], Any]) -> Tracking:
    """The kernel's ``Tracking``: the runner's relay when the runner serves one, else this
    process's MLflow (``InProcess``; call ``client.configure`` first)."""
    relayed = RelayClient.from_environment()
    if relayed is not None:
        return relayed
    return InProcess(settings, models, tempfile.gettempdir())


@contextlib.contextmanager
def scratch(tracking: Tracking) -> Iterator[Path]:
    """A folder for files the operations read (a prepared training log): the relay's (the
    runner removes it when the run ends), else a temporary one, removed afterwards."""
    if isinstance(tracking, RelayClient):
        yield Path(tracking.folder())
        return
    with tempfile.TemporaryDirectory(prefix="hilt-mlflow-") as tmp:
        yield Path(tmp)


def log_run_values(run_id: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Params and metrics of a run without a training (scoring, monitoring): by the relay
    in a run's kernel, else with this process's MLflow (``client.configure`` first)."""
    relayed = RelayClient.from_environment()
    if relayed is not None:
        relayed.log_run_values(run_id, params, metrics)
        return
    from hilt.pipelines.loop.tracking import runs

    runs.log_run_values(run_id, params=params, metrics=metrics)


def load_version(tracking: Tracking, settings: Settings, version: str) -> TrainedModel:
    """A registered version's model, downloaded by the relay or by this process."""
    from hilt.pipelines.loop.model import TrainedModel

    if isinstance(tracking, RelayClient):
        return TrainedModel.load(tracking.model_dir(version))
    from hilt.pipelines.loop.tracking.pyfunc import load_model_version

    return load_model_version(settings, version)
