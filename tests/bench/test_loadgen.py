"""bench/loadgen.py against a real (minimal) HTTP/1.1 server on loopback: it counts what the
server answered, keeps connections alive and tells 200 from other statuses."""

from __future__ import annotations

import asyncio
import json

from bench.loadgen import encode_post, run_load


def test_encode_post_is_a_valid_request() -> None:
    raw = encode_post("127.0.0.1:9", "/classify", {"inputs": [{"target": "Grüße"}]})
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /classify HTTP/1.1\r\n")
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"inputs": [{"target": "Grüße"}]}


def test_run_load_counts_answers_per_status() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                status = b"200 OK" if body["ok"] else b"429 Too Many Requests"
                payload = b'{"done": true}'
                writer.write(
                    b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> tuple:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            payloads = [{"ok": True}, {"ok": True}, {"ok": False}]
            return await run_load(f"http://127.0.0.1:{port}", "/x", payloads, 3, 0.3)

    res = asyncio.run(main())
    assert res.clients == 3 and connections == 3  # one keep-alive connection per client
    ok, refused = res.statuses.get(200, 0), res.statuses.get(429, 0)
    assert ok > 10 and refused > 0
    # client k sends payloads k, k+3, ...: client 2 only ever sends the refused payload
    assert refused == res.errors and ok == len(res.latencies_s) == res.items
