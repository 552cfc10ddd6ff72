"""The service's ASGI middleware: request id, API key, body limit, timing, metrics, access log.

One pure ASGI middleware (not BaseHTTPMiddleware): it adds no task or copy per request on the
hot path. The API key is checked before the body is read, so an unauthenticated client learns
nothing about its payload; the body limit also holds for chunked uploads without a length.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import problem_response
from service.logs import request_id_var
from service.metrics import Metrics
from service.security import is_admin, key_matches, needs_key
from service.settings import Settings

access_logger = logging.getLogger("service.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # echoed in headers and logs: keep it tame
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no access log
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
EXPOSED_HEADERS = [
    "X-Request-ID",
    "x-total-time",
    "x-queue-time",
    "x-inference-time",
    "x-tokenization-time",
    "x-model",
    "x-model-version",
    "Retry-After",
]


class ServiceMiddleware:
    """Wraps every HTTP request; reads settings and metrics from the owning app's state."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics: Metrics = self.owner.state.metrics
        start = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out = MutableHeaders(scope=message)
                out["x-request-id"] = rid
                out["x-total-time"] = f"{(time.perf_counter() - start) * 1000:.3f}"
            await send(message)

        metrics.in_flight.inc()
        try:
            await self._guarded(scope, receive, send_with_headers, headers)
        finally:
            metrics.in_flight.dec()
            _record(scope, status, time.perf_counter() - start, metrics)
            request_id_var.reset(token)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        """The API key, then the body limit, then the app."""
        settings: Settings = self.owner.state.settings
        refusal = _auth_refusal(scope, headers, settings)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["method"] in _WITH_BODY:
            limit = settings.max_body_bytes
            body = await _read_body(receive, headers, limit)
            if body is None:
                detail = f"request body over {limit} bytes (XMIXUP_MAX_BODY_BYTES)"
                response = problem_response(Request(scope), 413, "too-large", detail)
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _auth_refusal(scope: Scope, headers: Headers, settings: Settings) -> ASGIApp | None:
    """A 401 (or 403 for the admin API when it is off) response, or None to let it through."""
    path: str = scope["path"]
    admin = is_admin(path)
    key = settings.admin_key if admin else settings.api_key
    if admin and key is None:
        detail = "the admin API is off; set XMIXUP_ADMIN_KEY to enable it (or send SIGHUP)"
        return problem_response(Request(scope), 403, "forbidden", detail)
    if key is None or not (admin or needs_key(path)):
        return None
    if key_matches(headers.get("authorization"), key.get_secret_value()):
        return None
    which = "admin key (XMIXUP_ADMIN_KEY)" if admin else "API key"
    detail = f"missing or wrong {which} (Authorization: Bearer <key>)"
    return problem_response(
        Request(scope), 401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _record(scope: Scope, status: int, elapsed: float, metrics: Metrics) -> None:
    """Request metrics by route template, and the access log line (probes excluded)."""
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    metrics.request_done(route, str(status), elapsed)
    path: str = scope["path"]
    if path not in _QUIET:
        access_logger.info(
            "%s %s %d %.1fms",
            scope["method"],
            path,
            status,
            elapsed * 1000,
            extra={"status": status, "duration_ms": round(elapsed * 1000, 3)},
        )


async def _read_body(receive: Receive, headers: Headers, limit: int) -> bytes | None:
    """The whole body, or None when it exceeds ``limit`` (checked before reading too)."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length to check up front
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the app once."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's would

    return replay


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """CORS (when origins are configured) inside `ServiceMiddleware`, which sees every request."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(ServiceMiddleware, owner=app)
