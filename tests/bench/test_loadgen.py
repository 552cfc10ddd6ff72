"""bench/loadgen.py against a real (minimal) HTTP/1.1 server on loopback: it counts what the
server answered, keeps connections alive, tells 200 from other statuses, never sends on a
connection the server closed idle, and reports transport failures by kind."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bench.loadgen import Sample, encode_post, run_load, run_open_loop, transport_errors


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


async def _serve(idle_close_s: float | None, handled: list[dict]) -> asyncio.Server:
    """A keep-alive HTTP/1.1 server answering {"sleep": s} after s seconds; {"drop": true}
    closes the connection unanswered. With ``idle_close_s`` it closes a connection idle that
    long, as uvicorn does after its keep-alive timeout."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_close_s)
                except TimeoutError:
                    handled.append({"idle-close": True})
                    return
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                handled.append(body)
                if body.get("drop"):
                    return
                await asyncio.sleep(body.get("sleep", 0.0))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _open_loop(payloads: list[dict], idle_close_s: float | None = None, **kw: Any) -> tuple:
    handled: list[dict] = []

    async def main() -> list[Sample]:
        server = await _serve(idle_close_s, handled)
        port = server.sockets[0].getsockname()[1]
        async with server:
            samples = await run_open_loop(f"http://127.0.0.1:{port}", "/x", payloads, **kw)
            # let every handler finish its answer and see its connection closed
            await asyncio.sleep(max(p.get("sleep", 0.0) for p in payloads) + 0.05)
            return samples

    return asyncio.run(main()), handled


@pytest.mark.parametrize("keepalive_s", [0.1, 10.0])
def test_open_loop_never_sends_on_a_connection_the_server_closed_idle(keepalive_s: float) -> None:
    # Slow answers open ~10 connections, the fast ones then use one or two: the others sit
    # idle past the server's 0.2 s keep-alive and are closed, and the next slow burst needs
    # them again. Under 0.1 s they expire client-side first; at 10 s, the server's close is
    # seen (EOF) before reuse.
    payloads = [{"sleep": 0.25}] * 10 + [{"sleep": 0.0}] * 20
    samples, handled = _open_loop(
        payloads, idle_close_s=0.2, rate_per_s=50, duration_s=1.8, keepalive_s=keepalive_s
    )
    assert sum(1 for h in handled if h.get("idle-close")) > 0  # the hazard was there
    assert transport_errors(samples) == {}
    assert [s.status for s in samples] == [200] * len(samples) == [200] * 90


def test_open_loop_reports_failures_by_kind_and_retries_only_a_reused_connection() -> None:
    payloads: list[dict[str, Any]] = [{"sleep": 0.0}, {"drop": True}]
    samples, handled = _open_loop(payloads, rate_per_s=40, duration_s=1.0)
    dropped = [s for s in samples if s.status == 0]
    assert len(dropped) == 20 and all(s.error == "IncompleteReadError" for s in dropped)
    # a drop on a reused connection looks like a server's idle close: sent once more, on a
    # new connection, where it fails again and is reported (marked retried), never hidden
    retried = sum(s.retried for s in dropped)
    assert retried > 0 and sum(1 for h in handled if h.get("drop")) == 20 + retried
    assert [s.status for s in samples if not s.retried].count(200) == 20

    slow = [{"sleep": 0.3}]
    samples, _ = _open_loop(slow, rate_per_s=40, duration_s=0.2, max_connections=2)
    assert transport_errors(samples) == {"pool-exhausted": 6}
    samples, _ = _open_loop(slow, rate_per_s=20, duration_s=0.1, timeout_s=0.05)
    assert transport_errors(samples) == {"timeout": 2}
    assert not any(s.retried for s in samples)
