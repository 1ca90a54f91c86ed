"""`hilt serve --store-url URL`: the dashboards on another host than the store's.

Only Voila runs here: no store service, no workspace, no DuckDB file. Each dashboard kernel
gets the store's URL and the gateway token through its environment (``kernel_environment``)
and acts on behalf of the person the sign-in proxy named, exactly as next to the store: the
store service decides whom the gateway may act for (store/authentication.py).

The gateway token is issued on the store's host (``hilt users add NAME --role gateway``) and
reaches this host through the environment (``HILT_GATEWAY_TOKEN``) or a file
(``--token-file``), never a command-line value (a flag is visible to every local user in
the process list).

The config: the dashboards run under the config the store has in force, read from the store
with the gateway's own token (operation ``config_in_force``), never under a local copy of
hilt.toml. One truth: a copy could differ from what the store enforces (review rules,
reason codes, the sign-in proxy), and the store would then have to check it against its own
anyway; the kernels read it again at every page opened, so a config change applied on the
store's host reaches the next page without restarting the dashboards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hilt.pipelines.config import Settings
from hilt.pipelines.dashboards.server import (
    VoilaPages,
    copy_dashboards,
    default_notebooks_dir,
    kernel_environment,
    stop_processes,
    voila_command,
    wait_http,
)
from hilt.pipelines.errors import InputError, PermissionDeniedError
from hilt.pipelines.ports import require_free_port
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.ops.config import parse

#: Where the dashboards' gateway token comes from when no --token-file is given.
GATEWAY_TOKEN_ENV = "HILT_GATEWAY_TOKEN"


def gateway_token(token_file: Path | None, environ: Mapping[str, str]) -> str:
    """The gateway token: the first line of ``token_file``, else ``$HILT_GATEWAY_TOKEN``
    (InputError naming what is missing)."""
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(
                f"--token-file {token_file}: cannot read ({type(e).__name__})"
            ) from None
        if not lines:
            raise InputError(f"--token-file {token_file}: the file is empty")
        return lines[0]
    token = environ.get(GATEWAY_TOKEN_ENV, "").strip()
    if not token:
        raise InputError(
            f"no gateway token: set {GATEWAY_TOKEN_ENV} or give --token-file (a gateway user's "
            "token, issued on the store's host: hilt users add NAME --role gateway)"
        )
    return token


def settings_in_force(store_url: str, token: str) -> Settings:
    """The settings of the config the store at ``store_url`` has in force, read with the
    gateway ``token``. StoreError when the store cannot be reached, AuthenticationError when
    it refuses the token, PermissionDeniedError when the token is not a gateway's."""
    gateway = open_store_as(store_url, Identity(token=token))
    try:
        me = gateway.whoami()
        if "gateway" not in me.roles:
            raise PermissionDeniedError(
                f"the token belongs to {me.name!r} (roles: {', '.join(me.roles) or 'none'}), "
                "not to a gateway user; the dashboards need a gateway's token (on the store's "
                "host: hilt users add NAME --role gateway)"
            )
        current = gateway.config_in_force()
    finally:
        gateway.close()
    return parse(current.text, f"{store_url}: config version {current.version} in force")


@dataclass
class RemoteDashboards(VoilaPages):
    """Voila serving the dashboards against the store service at ``store_url``."""

    store_url: str
    host: str
    port: int
    voila: subprocess.Popen[bytes]
    #: The config in force when the dashboards started (the kernels read it again).
    settings: Settings
    #: The copies of the dashboards Voila serves (removed at stop).
    notebooks: Path

    def processes(self) -> tuple[subprocess.Popen[bytes], ...]:
        return (self.voila,)

    def stop(self) -> None:
        try:
            stop_processes(self.voila)
        finally:
            shutil.rmtree(self.notebooks, ignore_errors=True)


def start_remote_dashboards(
    store_url: str,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8866,
    notebooks: Path | None = None,
    quiet: bool = True,
) -> RemoteDashboards:
    """Check the store and the token (``settings_in_force``), then start Voila; return once
    it answers."""
    if not store_url.startswith(("http://", "https://")):
        raise InputError(f"--store-url {store_url!r}: not an http:// or https:// URL")
    store_url = store_url.rstrip("/")
    require_free_port(host, port)
    settings = settings_in_force(store_url, token)
    served = Path(tempfile.mkdtemp(prefix="hilt-dashboards-")) / "dashboards"
    try:
        copy_dashboards(notebooks or default_notebooks_dir(), served, settings.access)
        out = subprocess.DEVNULL if quiet else None
        env = kernel_environment(os.environ, store_url, token, None)
        voila = subprocess.Popen(
            voila_command(served, host, port), env=env, stdout=out, stderr=out, cwd=served
        )
    except BaseException:
        shutil.rmtree(served.parent, ignore_errors=True)
        raise
    server = RemoteDashboards(store_url, host, port, voila, settings, served.parent)
    try:
        wait_http(server.url + "/", voila, "Voila server", 120)
    except BaseException:
        server.stop()
        raise
    return server
