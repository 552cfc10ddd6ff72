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
    transport_errors: dict[str, int] = field(default_factory=dict)  # by exception type


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
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.errors += 1  # counted, not fatal: a bench reports what it saw
                kind = type(exc).__name__
                result.transport_errors[kind] = result.transport_errors.get(kind, 0) + 1
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
    error: str = ""  # status 0: the exception's type, "timeout" or "pool-exhausted"
    retried: bool = False  # re-sent once on a new connection: the reused one had been closed


def transport_errors(samples: Sequence[Sample]) -> dict[str, int]:
    """Transport errors (status 0) by kind."""
    out: dict[str, int] = {}
    for s in samples:
        if not s.status:
            out[s.error] = out.get(s.error, 0) + 1
    return out


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


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PoolExhausted(Exception):
    pass


class _Pool:
    """Keep-alive connections, the most recently used reused first.

    A server closes a connection idle longer than its keep-alive timeout (uvicorn: 5 s). A
    request written to such a connection is lost: it fails with EOF or a reset, no answer.
    Last-in-first-out reuse leaves the connections of a past latency spike idle at the bottom
    until the next spike digs them out, stale; the 10-minute soak counted ~50 such failures a
    minute. So an idle connection is reused only within ``keepalive_s`` (set below the
    server's timeout) and while the server has not closed it.
    """

    def __init__(self, host: str, port: int, max_connections: int, keepalive_s: float) -> None:
        self.host, self.port = host, port
        self.max_connections, self.keepalive_s = max_connections, keepalive_s
        self._idle: list[tuple[float, Connection]] = []  # (released at, connection)
        self.open = 0

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection and whether it is a reused one; raises PoolExhausted or OSError."""
        now = time.perf_counter()
        while self._idle:
            released, conn = self._idle.pop()
            if now - released < self.keepalive_s and not conn[0].at_eof():
                return conn, True
            self.discard(conn)
        if self.open >= self.max_connections:
            raise PoolExhausted()
        self.open += 1
        try:
            return await asyncio.open_connection(self.host, self.port), False
        except OSError:
            self.open -= 1
            raise

    def release(self, conn: Connection) -> None:
        self._idle.append((time.perf_counter(), conn))

    def discard(self, conn: Connection) -> None:
        conn[1].close()
        self.open -= 1

    def close(self) -> None:
        while self._idle:
            self.discard(self._idle.pop()[1])


def _nothing_received(exc: BaseException) -> bool:
    """The connection died before any byte of an answer: what a server's keep-alive close
    looks like to a request that raced it."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, (ConnectionResetError, BrokenPipeError))


async def _send(pool: _Pool, request: bytes, timeout_s: float) -> tuple[int, bool, str, bool]:
    """One request: (status, retry_after, error, retried); status 0 with ``error`` on failure."""
    retried = False
    while True:
        try:
            conn, reused = await pool.acquire()
        except PoolExhausted:
            return 0, False, "pool-exhausted", retried
        except OSError as exc:
            return 0, False, f"connect: {type(exc).__name__}", retried
        try:
            conn[1].write(request)
            # bounded: a server that never answers is a finding, not a hung benchmark
            status, retry_after = await asyncio.wait_for(_read_status(conn[0]), timeout_s)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            pool.discard(conn)
            if reused and not retried and _nothing_received(exc):
                retried = True
                continue
            return (
                0,
                False,
                "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__,
                retried,
            )
        pool.release(conn)
        return status, retry_after, "", retried


async def run_open_loop(
    url: str,
    path: str,
    payloads: Sequence[Any],
    rate_per_s: float,
    duration_s: float,
    *,
    max_connections: int = 512,
    timeout_s: float = 60.0,
    keepalive_s: float = 2.0,
    headers: dict[str, str] | None = None,
) -> list[Sample]:
    """Send requests at a fixed rate whatever the server does (open loop), for ``duration_s``.

    A closed-loop client slows down with the server and so can never overload it; an operator's
    traffic does not wait. Requests due while every connection is busy open a new one, up to
    ``max_connections``; past that they are counted as transport errors (status 0,
    "pool-exhausted") at once, so the generator itself never queues unboundedly. An answer
    later than ``timeout_s`` is a transport error too ("timeout").

    Idle connections are reused for ``keepalive_s`` at most (keep it under the server's
    keep-alive timeout). A request whose reused connection turns out closed before any byte
    of an answer came back is sent once more on a new connection (``Sample.retried``), as
    HTTP clients do for a server's idle close; any other failure is reported, never retried.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [encode_post(f"{host}:{port}", path, p, headers) for p in payloads]
    pool = _Pool(host, port, max_connections, keepalive_s)
    samples: list[Sample] = []
    start = time.perf_counter()

    async def one(i: int, due: float) -> None:
        t0 = time.perf_counter()
        status, retry_after, error, retried = await _send(
            pool, requests[i % len(requests)], timeout_s
        )
        latency = time.perf_counter() - t0
        samples.append(Sample(due, status, latency, retry_after, error, retried))

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
    pool.close()
    return samples
