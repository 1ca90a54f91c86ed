"""The feedback store: cases, predictions, human decisions and a hash-chained audit log.

``open_store(path)`` opens a workspace in embedded mode; ``open_store("http://…", token=…)``
returns a client of the store service. Both satisfy ``Store``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hilt.pipelines.errors import InputError
from hilt.pipelines.store.protocol import Store
from hilt.pipelines.store.records import DecisionRequest
from hilt.pipelines.workspace import Workspace

__all__ = ["DecisionRequest", "Store", "open_store"]


def open_store(
    target: str | Path | Workspace,
    *,
    token: str | None = None,
    user: str | None = None,
    on_behalf_of: str | None = None,
) -> Store:
    """Open the store at a workspace folder (embedded) or a service URL (HTTP client).

    Embedded: acts as ``user`` (default: $HILT_USER, else the config's access.local_user).
    Service: acts as the owner of ``token`` (default: $HILT_TOKEN), or, for a gateway token
    (the dashboard server), on behalf of the user named ``on_behalf_of``.
    """
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        from hilt.pipelines.store.modes.client import StoreClient

        tok = token or os.environ.get("HILT_TOKEN")
        if not tok:
            raise InputError("a service URL needs a token (token=… or HILT_TOKEN)")
        return StoreClient(target, tok, on_behalf_of=on_behalf_of)
    from hilt.pipelines.store.modes.embedded import EmbeddedStore

    ws = target if isinstance(target, Workspace) else Workspace.at(target)
    if not ws.exists():
        raise InputError(f"{ws.root} is not a hilt workspace (create one with `hilt init`)")
    settings = ws.settings()
    name = user or os.environ.get("HILT_USER") or settings.access.local_user
    if not name:
        raise InputError("no user: pass user=…, set HILT_USER, or set access.local_user")
    return EmbeddedStore.for_user(ws, settings, name)
