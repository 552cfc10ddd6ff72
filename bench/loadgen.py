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
