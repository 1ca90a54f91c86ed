"""A lean HTTP/1.1 keep-alive client for the one-process load generator (store_concurrency
phase 3b): one TCP connection per simulated reviewer, requests written and answers read on
asyncio streams, nothing else.

Why not httpx: measured on the 2-CPU machine, ``httpx.AsyncClient`` cost its process 2.4 ms
of CPU a request with 32 connections in one pool (0.9 ms with one client each), against
0.06 ms here; with two requests a decision, one core of httpx generates at most ~200
decisions/s, which is what the phase measured, whatever the service could do. The service
sees the same requests either way (real HTTP over TCP, parsed by uvicorn).

It speaks only what the service answers: ``Content-Length`` bodies or chunked ones; an
answer with ``Connection: close`` (a refused body) closes the connection, and the next
request opens another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit


class KeepAlive:
    """One keep-alive connection to ``url``; ``request`` sends one request and returns the
    status and the decoded JSON body (None when the body is empty)."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, Any]:
        try:
            return await asyncio.wait_for(
                self._request(method, path, headers, body), self.timeout_s
            )
        except BaseException:
            await self.close()  # half a request or answer on it: never reuse it
            raise

    async def _request(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append("content-type: application/json")
        lines.append(f"content-length: {len(payload)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            data = await self._chunked(reader)
        else:
            data = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, json.loads(data) if data else None

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # (no trailers from the service)
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
