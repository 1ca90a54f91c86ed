"""Where the workspace's MLflow lives and how MLflow is kept quiet, without importing mlflow.

- The tracking (and registry) URI, the first of (``tracking_choice``):

  1. ``[tracking] uri`` in hilt.toml: the workspace's MLflow server. It wins over the
     environment because every run, artifact and registry mirror of the workspace must be in
     one place (a change of it is a recorded config change a second lead approves); an
     environment variable naming *another* URI is refused, not silently ignored;
  2. ``$HILT_MLFLOW_TRACKING_URI`` (hilt's own, for every hilt process);
  3. ``$MLFLOW_TRACKING_URI``, the variable MLflow users know, when it names a server
     (http/https); a local URI there (``sqlite:``, a path) is ignored: a local store lives in
     the workspace. Refused when the workspace already keeps its runs in its own
     ``mlflow.db`` (a URI left over from another project must not split the workspace's
     runs between two stores: name the server in hilt.toml instead);
  4. the workspace's sqlite file ``sqlite:///<workspace>/mlflow.db`` with artifacts under
     ``<workspace>/mlartifacts`` (MLflow 3 would otherwise create ``./mlflow.db`` in whatever
     the current directory is).

  With a server, hilt creates no MLflow file in the workspace: the server's artifact store
  keeps the artifacts (``mlflow server`` serves them; the experiment is created without an
  artifact location). Credentials are MLflow's own environment variables
  (``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``),
  read by MLflow, never by hilt and never in hilt.toml. ``require_reachable`` tells a server
  that does not answer apart (one line, before anything is written).
- One experiment and one registered model per use case, both named ``hilt-<use_case.name>``.
- Quiet: MLflow's usage telemetry (a thread that fetches a config over HTTPS) is switched off
  (``MLFLOW_DISABLE_TELEMETRY``, ``DO_NOT_TRACK``) and so are its tqdm bars, which would fill
  executed notebooks and scheduler logs. Importing hilt changes no environment variable:
  ``quiet_mlflow()`` does, and ``client.configure`` calls it before MLflow is used; a child
  process (a papermill kernel) gets the same settings from ``child_environment()``, so its
  own ``import mlflow`` never starts the telemetry client.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import ConfigError, HiltError
from hilt.pipelines.workspace import Workspace

#: Environment variable naming a tracking URI (a server URL) for every hilt process.
URI_ENV: Final = "HILT_MLFLOW_TRACKING_URI"
#: MLflow's own variable; honoured when it names a server (see the module's docstring).
MLFLOW_URI_ENV: Final = "MLFLOW_TRACKING_URI"
#: The hilt.toml key naming the workspace's MLflow server.
CONFIG_KEY: Final = "[tracking] uri"
#: How long a tracking server may take to accept a connection before it counts as down.
REACHABLE_TIMEOUT_S: Final = 5.0
#: Workspace-relative names of the default store and artifact root.
DB_FILE: Final = "mlflow.db"
ARTIFACTS_DIR: Final = "mlartifacts"
#: Set before MLflow is used: no usage telemetry (mlflow/__init__ starts its client unless
#: one of these is set).
TELEMETRY_OFF: Final = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
#: No tqdm bars on stderr, unless the user asked for them.
PROGRESS_BAR_ENV: Final = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
#: No "View run ... at: http://..." lines on standard output when a run on a server ends
#: (they would land in scheduler logs and between the lines `hilt` prints).
URL_PRINT_ENV: Final = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
#: MLflow's own log level in a child process (its INFO lines would land in a notebook).
LOGGING_LEVEL_ENV: Final = "MLFLOW_LOGGING_LEVEL"


class TrackingUnavailable(HiltError):
    """The MLflow tracking server the workspace uses does not answer (nothing was done)."""

    status_code = 503
    kind = "tracking-unavailable"


@dataclass(frozen=True)
class TrackingChoice:
    """The tracking URI in use and what chose it (``CONFIG_KEY``, an environment variable's
    name, ``"argument"`` or ``"workspace"``)."""

    uri: str
    source: str

    @property
    def is_server(self) -> bool:
        return is_server(self.uri)


def is_server(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (http or https)."""
    return uri.startswith(("http://", "https://"))


def shown_uri(uri: str) -> str:
    """``uri`` fit to print: a user name or password in it replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _configured(ws: Workspace, settings: Settings | None) -> str | None:
    if settings is None:
        if not ws.config_path.exists():
            return None
        settings = ws.settings()
    return settings.tracking.uri


def tracking_choice(
    ws: Workspace, override: str | None = None, settings: Settings | None = None
) -> TrackingChoice:
    """The tracking (and registry) URI and its source, in the order of the module's
    docstring. ``settings`` defaults to the workspace's hilt.toml (none yet: no
    ``[tracking]``). ConfigError when the environment names another server than hilt.toml,
    or ``$MLFLOW_TRACKING_URI`` a server while the workspace keeps its own ``mlflow.db``."""
    if override:
        return TrackingChoice(override, "argument")
    configured = _configured(ws, settings)
    hilt_env = os.environ.get(URI_ENV) or None
    mlflow_env = os.environ.get(MLFLOW_URI_ENV) or None
    if mlflow_env is not None and not is_server(mlflow_env):
        mlflow_env = None  # a local store lives in the workspace
    if configured is not None:
        for name, value in ((URI_ENV, hilt_env), (MLFLOW_URI_ENV, mlflow_env)):
            if value is not None and value.rstrip("/") != configured.rstrip("/"):
                raise ConfigError(
                    f"{ws.config_path.name} {CONFIG_KEY} names {configured} but ${name} names "
                    f"{shown_uri(value)}: unset ${name} (the workspace's runs stay on one "
                    "server), or change [tracking] uri"
                )
        return TrackingChoice(configured, CONFIG_KEY)
    if hilt_env is not None:
        return TrackingChoice(hilt_env, URI_ENV)
    if mlflow_env is not None:
        if (ws.root / DB_FILE).exists():
            raise ConfigError(
                f"${MLFLOW_URI_ENV} names {shown_uri(mlflow_env)} but this workspace keeps its "
                f"runs in its own {DB_FILE}: unset ${MLFLOW_URI_ENV}, or name the server in "
                f"{ws.config_path.name} ({CONFIG_KEY})"
            )
        return TrackingChoice(mlflow_env, MLFLOW_URI_ENV)
    return TrackingChoice(f"sqlite:///{(ws.root / DB_FILE).as_posix()}", "workspace")


def tracking_uri(
    ws: Workspace, override: str | None = None, settings: Settings | None = None
) -> str:
    """The tracking (and registry) URI: ``tracking_choice(...).uri``."""
    return tracking_choice(ws, override, settings).uri


def require_reachable(choice: TrackingChoice, timeout: float = REACHABLE_TIMEOUT_S) -> None:
    """TrackingUnavailable, one line naming the server and where it was named, when
    ``choice`` is a server that accepts no connection within ``timeout`` seconds (MLflow
    itself would retry for minutes); nothing for a local store. Call it before anything is
    written."""
    if not choice.is_server:
        return
    parts = urlsplit(choice.uri)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise TrackingUnavailable(
            f"the MLflow tracking server {shown_uri(choice.uri)} (from {choice.source}) does "
            f"not answer ({reason.lower()}): start it, or fix {choice.source}"
        ) from None


def has_tracking_store(ws: Workspace) -> bool:
    """Whether the workspace's MLflow store exists (a tracking server is assumed to):
    reading one that does not would create it, which a look must not."""
    uri = tracking_uri(ws)
    return not uri.startswith("sqlite:") or (ws.root / DB_FILE).exists()


def artifact_location(ws: Workspace, uri: str) -> str | None:
    """Where the experiment's artifacts go: ``<ws.root>/mlartifacts`` for a local store, None
    (the server's own artifact store) for an http(s) tracking server."""
    if is_server(uri):
        return None
    return (ws.root / ARTIFACTS_DIR).as_uri()


def experiment_name(settings: Settings) -> str:
    """``hilt-<use_case.name>``."""
    return f"hilt-{settings.use_case.name}"


def registered_model_name(settings: Settings) -> str:
    """``hilt-<use_case.name>``; characters other than letters, digits, '.', '_' and '-'
    become '-' ('/' and ':' are not allowed by MLflow, quotes would break search filters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"hilt-{settings.use_case.name}")


def quiet_mlflow() -> None:
    """Switch MLflow's telemetry, progress bars and run-URL lines off for this process (and
    the processes it starts); if mlflow was imported already, drop the telemetry client it
    may have made (it has sent nothing yet: it fetches its config when the first event is
    recorded)."""
    os.environ.update(TELEMETRY_OFF)
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")
    os.environ.setdefault(URL_PRINT_ENV, "true")
    if "mlflow" in sys.modules:
        from mlflow.telemetry.client import set_telemetry_client

        set_telemetry_client()  # type: ignore[no-untyped-call]  # (unannotated in mlflow)


def child_environment() -> dict[str, str]:
    """The MLflow settings a child process (a papermill kernel) needs, whatever the parent's
    environment holds: telemetry, progress bars and run-URL lines off, MLflow's log level
    (default WARNING), and the tracking URI when ``$HILT_MLFLOW_TRACKING_URI`` names one."""
    env = {
        **TELEMETRY_OFF,
        PROGRESS_BAR_ENV: os.environ.get(PROGRESS_BAR_ENV, "false"),
        URL_PRINT_ENV: os.environ.get(URL_PRINT_ENV, "true"),
        LOGGING_LEVEL_ENV: os.environ.get(LOGGING_LEVEL_ENV, "WARNING"),
    }
    uri = os.environ.get(URI_ENV)
    if uri:
        env[URI_ENV] = uri
    return env
