"""The kernel manager of the dashboards: a page may send widget traffic, nothing else.

Voila constructs its kernel manager with its own list of allowed message types, which
overrides any command-line configuration; this subclass sets hilt's list after Voila's
constructor has run, so that the restriction in force is the one stated in
``ALLOWED_KERNEL_MESSAGES`` below: no ``execute_request`` (a dashboard cannot be
turned into a code console) and no ``shutdown_request`` either.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

#: The only kernel messages a dashboard page may send: widget traffic and kernel info.
ALLOWED_KERNEL_MESSAGES = (
    "comm_open",
    "comm_msg",
    "comm_close",
    "comm_info_request",
    "kernel_info_request",
)


class WidgetOnlyKernelManager(AsyncMappingKernelManager):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.allowed_message_types = list(ALLOWED_KERNEL_MESSAGES)
