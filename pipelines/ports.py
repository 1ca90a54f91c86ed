"""TCP ports the servers of hilt listen on (the store service, Voila)."""

from __future__ import annotations

import socket

from hilt.pipelines.errors import InputError


def require_free_port(host: str, port: int) -> None:
    """InputError, before anything starts, when ``host:port`` cannot be listened on."""
    if not 0 < port < 65536:
        raise InputError(f"cannot listen on port {port}: a TCP port is 1-65535")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise InputError(f"cannot listen on {host}:{port}: the port is in use") from None
