"""A lean closed-loop HTTP/1.1 load generator for the serving benchmark.

Own code rather than httpx/aiohttp: on a small host the load generator shares the cores with the
server under test, and every millisecond of client CPU is taken from the server's throughput.
httpx spends about a millisecond of CPU per request (and degrades with many connections); this
client sends pre-encoded requests over keep-alive connections and parses only the status line and
Content-Length, tens of microseconds per request. The figures it produces are the server's, not
the client's. (wrk/oha do the same job but are not Python packages, so the bench could not count
on them.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    clients: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)
    items: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def encode_post(host: str, path: str, payload: Any, headers: dict[str, str] | None = None) -> bytes:
    body = json.dumps(payload, ensure_ascii=False).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            raise RuntimeError("chunked responses are not supported by the load generator")
    body = await reader.readexactly(length) if length else b""
    return status, body


async def run_load(
    url: str,
    path: str,
    payloads: Sequence[Any],
    clients: int,
    duration_s: float,
    *,
    items_per_request: int = 1,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """``clients`` connections, each sending its next request when the last is answered."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [encode_post(f"{host}:{port}", path, p, headers) for p in payloads]
    result = LoadResult(clients=clients, elapsed_s=0.0)
    conns = [await asyncio.open_connection(host, port) for _ in range(clients)]
    stop_at = 0.0

    async def client(k: int) -> None:
        reader, writer = conns[k]
        i = k
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                writer.write(requests[i % len(requests)])
                status, _ = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1  # counted, not fatal: a bench reports what it saw
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                i += clients
                continue
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.latencies_s.append(time.perf_counter() - t0)
                result.items += items_per_request
            else:
                result.errors += 1
            i += clients
        writer.close()

    start = time.perf_counter()
    stop_at = start + duration_s
    await asyncio.gather(*(client(k) for k in range(clients)))
    result.elapsed_s = time.perf_counter() - start
    return result


@dataclass
class Sample:
    """One open-loop request: when it was due (s from start), its status and latency."""

    sent_s: float
    status: int  # 0: transport error
    latency_s: float
    retry_after: bool = False


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, retry_after = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"retry-after":
            retry_after = True
    if length:
        await reader.readexactly(length)
    return status, retry_after


async def run_open_loop(
    url: str,
    path: str,
    payloads: Sequence[Any],
    rate_per_s: float,
    duration_s: float,
    *,
    max_connections: int = 512,
    timeout_s: float = 60.0,
    headers: dict[str, str] | None = None,
) -> list[Sample]:
    """Send requests at a fixed rate whatever the server does (open loop), for ``duration_s``.

    A closed-loop client slows down with the server and so can never overload it; an operator's
    traffic does not wait. Requests due while every connection is busy open a new one, up to
    ``max_connections``; past that they are counted as transport errors (status 0) at once, so
    the generator itself never queues unboundedly. An answer later than ``timeout_s`` is a
    transport error too.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [encode_post(f"{host}:{port}", path, p, headers) for p in payloads]
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    open_count = 0
    samples: list[Sample] = []
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        nonlocal open_count
        if idle:
            conn = idle.pop()
        elif open_count < max_connections:
            open_count += 1
            try:
                conn = await asyncio.open_connection(host, port)
            except OSError:
                open_count -= 1
                samples.append(Sample(due, 0, 0.0))
                return
        else:
            samples.append(Sample(due, 0, 0.0))
            return
        reader, writer = conn
        t0 = time.perf_counter()
        try:
            writer.write(requests[i % len(requests)])
            # bounded: a server that never answers is a finding, not a hung benchmark
            status, retry_after = await asyncio.wait_for(_read_status(reader), timeout_s)
        except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError):
            writer.close()
            open_count -= 1
            samples.append(Sample(due, 0, time.perf_counter() - t0))
            return
        samples.append(Sample(due, status, time.perf_counter() - t0, retry_after))
        idle.append(conn)

    tasks = []
    interval = 1.0 / rate_per_s
    i = 0
    while True:
        due = i * interval
        if due >= duration_s:
            break
        delay = start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
        i += 1
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return samples
