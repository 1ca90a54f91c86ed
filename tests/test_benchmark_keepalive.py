"""The load generator's lean HTTP/1.1 client (benchmarks/_keepalive.py), against a real
socket server: it reads Content-Length and chunked answers, keeps one connection for many
requests, and opens another after an answer that closes it."""

from __future__ import annotations

import asyncio
import json

from benchmarks._keepalive import KeepAlive


async def _serve_and_ask() -> tuple[list[tuple[int, object]], int, list[bytes]]:
    connections = 0
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            requests.append(head.split(b"\r\n", 1)[0] + b" " + body)
            path = head.split(b" ")[1]
            if path == b"/chunked":
                data = json.dumps({"chunked": True}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                    + b"%x\r\n" % 5
                    + data[:5]
                    + b"\r\n"
                    + b"%x\r\n" % (len(data) - 5)
                    + data[5:]
                    + b"\r\n0\r\n\r\n"
                )
            elif path == b"/close":
                data = b'{"error": "input"}'
                writer.write(
                    b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\n"
                    + b"content-length: %d\r\n\r\n" % len(data)
                    + data
                )
                await writer.drain()
                writer.close()
                return
            else:
                data = json.dumps({"echo": json.loads(body) if body else None}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(data) + data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = KeepAlive(f"http://127.0.0.1:{port}")
    answers = []
    try:
        answers.append(await client.request("POST", "/a", {"x-k": "v"}, {"n": 1}))
        answers.append(await client.request("GET", "/chunked", {}))
        answers.append(await client.request("POST", "/close", {}, {"n": 2}))
        answers.append(await client.request("GET", "/b", {}))
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    return answers, connections, requests


def test_the_keepalive_client_reads_each_kind_of_answer_and_reconnects_after_a_close() -> None:
    answers, connections, requests = asyncio.run(_serve_and_ask())
    assert answers == [
        (200, {"echo": {"n": 1}}),
        (200, {"chunked": True}),
        (413, {"error": "input"}),
        (200, {"echo": None}),
    ]
    # The first three on one connection; the answer that closed it, then a new one.
    assert connections == 2
    assert requests[0] == b'POST /a HTTP/1.1 {"n": 1}' and requests[3] == b"GET /b HTTP/1.1 "
