"""The HTTP client of the store service: every operation of the table, over its route.

Errors come back as the same exception classes (the service sends their kind), so code
written against ``Store`` behaves the same in both modes.
"""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any, TypeVar

import httpx

from hilt.pipelines.errors import ERROR_KINDS, HiltError, StoreError
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER, SESSION_HEADER
from hilt.pipelines.store.modes import wire
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.store.operations import Store

R = TypeVar("R")
ON_BEHALF_HEADER = "X-Hilt-On-Behalf-Of"


@cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings (certificate authorities, $SSL_CERT_FILE / $SSL_CERT_DIR as read at
    first use) that every HTTP client of this process shares. Loading the CA bundle costs
    ~25 ms of CPU: httpx does it for each new client unless given a context, and a store is
    opened per page, per user, per command."""
    return httpx.create_ssl_context()


class StoreClient(Store):
    """A Store backed by the store service at ``url``, acting as the owner of ``token``
    (or, for a gateway's token, on behalf of the user ``on_behalf_of``). Open it through the
    door (``open_store_as``)."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout_s: float = 60.0,
        on_behalf_of: str | None = None,
        proxy_secret: str | None = None,
        session: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"}
        if on_behalf_of is not None:
            # Only a gateway token (the dashboard server) may act for a named user, and only
            # as the service allows (store/authentication.py).
            headers[ON_BEHALF_HEADER] = on_behalf_of
            if proxy_secret:
                headers[PROXY_SECRET_HEADER] = proxy_secret
            if session:
                # A demo session (single-person mode's sign-in page); the service decides.
                headers[SESSION_HEADER] = session
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, verify=tls_context()
        )

    def perform(self, operation: Operation[Any, R], arguments: dict[str, Any]) -> R:
        path, query, body = wire.request_parts(operation, arguments)
        data = self._request(operation.route.method, path, params=query or None, json=body)
        result: R = wire.decode_result(operation, data)
        return result

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise StoreError(
                f"cannot reach the store service at {self.url} ({type(e).__name__})"
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
                kind, detail = str(body.get("error", "error")), str(body.get("detail", ""))
            except ValueError:
                kind, detail = "error", response.text[:200]
            cls = ERROR_KINDS.get(kind, HiltError)
            raise cls(detail or f"HTTP {response.status_code}")
        return response.json()

    def close(self) -> None:
        self._http.close()
