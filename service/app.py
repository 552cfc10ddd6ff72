"""The ASGI app: ``create_app(settings) -> FastAPI`` (``uvicorn --factory service.app:create_app``).

Lifecycle (lifespan): load and verify every bundle → start one batcher per model → warm up →
ready. On shutdown /readyz turns 503 first (``state.draining``), queued rows finish, then the
workers stop. A watchdog task keeps ``xmixup_model_ready`` current and probes a failing model so
it can recover once its worker runs again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import RowResult
from service.engine import Row
from service.errors import ServiceError, install_error_handlers, problem_response
from service.logs import request_id_var
from service.metrics import Metrics
from service.registry import ModelRuntime, Registry
from service.routes import router
from service.schemas import ModelCard, ModelList, Readiness
from service.security import key_matches, needs_key
from service.settings import Settings
from service.tracing import setup_tracing
from xmixup import __version__
from xmixup.errors import UserError

logger = logging.getLogger("service.app")
access_logger = logging.getLogger("service.access")

STATIC_DIR = Path(__file__).parent / "static"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # echoed in headers and logs: keep it tame
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})

DESCRIPTION = """
Cross-lingual NLU with **X-Mixup**: send the user's text (`target`) and, ideally, its English
translation (`source`). The model mixes the translation's hidden states into the target's and
predicts on the target; `mixup_ratio` (λ) says how much it leaned on the translation.

* Errors are RFC 9457 problem documents (`application/problem+json`).
* Timing headers: `x-tokenization-time`, `x-queue-time`, `x-inference-time`, `x-total-time` (ms).
* `X-Request-ID` is honoured (or generated) and returned.
* Model routes need `Authorization: Bearer <key>` when the server sets `XMIXUP_API_KEY`.
"""


class ServiceMiddleware:
    """Request id, auth, body limit, timing header, request metrics and the access log.

    Pure ASGI (not BaseHTTPMiddleware): it adds no task or copy per request on the hot path.
    """

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.owner.state
        settings: Settings = state.settings
        metrics: Metrics = state.metrics
        start = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500
        path: str = scope["path"]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out = MutableHeaders(scope=message)
                out["x-request-id"] = rid
                out["x-total-time"] = f"{(time.perf_counter() - start) * 1000:.3f}"
            await send(message)

        metrics.in_flight.inc()
        try:
            key = settings.api_key
            if (
                key is not None
                and needs_key(path)
                and not key_matches(headers.get("authorization"), key.get_secret_value())
            ):
                await self._problem(
                    scope,
                    receive,
                    send_wrapper,
                    401,
                    "unauthorized",
                    "missing or wrong API key (Authorization: Bearer <key>)",
                    {"WWW-Authenticate": "Bearer"},
                )
                return
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(receive, headers, settings.max_body_bytes)
                if body is None:
                    await self._problem(
                        scope,
                        receive,
                        send_wrapper,
                        413,
                        "too-large",
                        f"request body over {settings.max_body_bytes} bytes (XMIXUP_MAX_BODY_BYTES)",
                    )
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.request_done(route, str(status), elapsed)
            if path not in _QUIET:
                access_logger.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    path,
                    status,
                    elapsed * 1000,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 3)},
                )
            request_id_var.reset(token)

    @staticmethod
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

    async def _problem(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        kind: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        response = problem_response(Request(scope), status, kind, detail, headers=headers)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the disconnect, as the server's would

    return replay


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------
def _warmup_row(rt: ModelRuntime) -> Row:
    text = "warm up the model"
    if rt.task == "qa":
        ids = rt.encoder.encode_windows(["warm up?"], [text])[0][0].ids
    else:
        ids = rt.encoder.encode_texts([text], [True])[0][0].ids
    target = np.asarray(ids, dtype=np.int64)
    return Row(target, target if rt.manifest.uses_source else None)


async def _probe(rt: ModelRuntime, rows: int, timeout_s: float) -> list[RowResult]:
    row = _warmup_row(rt)
    futures = rt.batcher.submit([row] * rows, time.monotonic() + timeout_s)
    return list(await asyncio.wait_for(asyncio.gather(*futures), timeout_s))


async def _warm_up(registry: Registry, settings: Settings) -> None:
    for rt in registry.models.values():
        start = time.perf_counter()
        try:
            # A single row and a full batch: the first run allocates, the second sizes arenas.
            await _probe(rt, 1, settings.watchdog_timeout_s)
            await _probe(rt, min(settings.max_batch_size, 8), settings.watchdog_timeout_s)
        except Exception as exc:
            raise UserError(
                f"model {rt.name}: warm-up inference failed: {exc!r}",
                "check the bundle with `xmixup verify-bundle` and the device settings",
            ) from exc
        logger.info("model %s warmed up in %.0f ms", rt.name, (time.perf_counter() - start) * 1000)


async def _watchdog(app: FastAPI, interval_s: float) -> None:
    """Keep the ready gauge current; re-probe a model whose batches keep failing."""
    registry: Registry = app.state.registry
    metrics: Metrics = app.state.metrics
    last_probe: dict[str, float] = {}
    while True:
        for name, rt in registry.models.items():
            healthy = rt.batcher.healthy
            metrics.model_ready.labels(name).set(1 if healthy else 0)
            metrics.queue_depth.labels(name).set(rt.batcher.depth)
            failing = rt.batcher.batch_started_at is None and not healthy
            if failing and time.monotonic() - last_probe.get(name, 0.0) > 5 * interval_s:
                last_probe[name] = time.monotonic()
                try:  # a success resets the failure count, and the model is ready again
                    await _probe(rt, 1, 5 * interval_s)
                    logger.info("model %s recovered", name)
                except Exception as exc:
                    logger.warning("model %s still failing: %r", name, exc)
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    settings: Settings = state.settings
    state.ready = False
    state.draining = False
    started = time.perf_counter()
    # Loading reads and hashes GBs and builds sessions: keep it off the event loop.
    registry: Registry | None = getattr(state, "preloaded", None)  # serve() preloads
    if registry is None:
        registry = await asyncio.to_thread(Registry.load, settings, state.metrics)
    state.registry = registry
    for rt in registry.models.values():
        rt.batcher.start()
    if settings.warmup:
        await _warm_up(registry, settings)
    watchdog = asyncio.get_running_loop().create_task(
        _watchdog(app, settings.watchdog_interval_s), name="watchdog"
    )
    state.ready = True
    logger.info(
        "ready: %d model(s) %s on %s in %.1fs; defaults %s",
        len(registry.models),
        sorted(registry.models),
        settings.device,
        time.perf_counter() - started,
        registry.defaults,
    )
    try:
        yield
    finally:
        state.draining = True  # /readyz says 503 from here on
        logger.info(
            "draining: finishing %d queued row(s)",
            sum(rt.batcher.depth for rt in registry.models.values()),
        )
        for rt in registry.models.values():
            await rt.batcher.stop()
        watchdog.cancel()
        logger.info("stopped")


# ---------------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------------
def _model_card(rt: ModelRuntime, registry: Registry) -> ModelCard:
    return ModelCard(
        name=rt.name,
        task=rt.task,
        default=registry.defaults.get(rt.task) == rt.name,
        labels=list(rt.manifest.labels),
        provider=rt.engine.provider,
        ready=rt.batcher.healthy,
        queue_depth=rt.batcher.depth,
        manifest=rt.manifest.model_dump(mode="json", exclude={"files"}),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. ``settings`` default to the ``XMIXUP_*`` environment."""
    settings = settings or Settings()
    app = FastAPI(
        title="xmixup",
        version=__version__,
        summary="Cross-lingual classification, tagging and QA with X-Mixup on onnxruntime",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.ready = False
    app.state.draining = False
    install_error_handlers(app)
    app.include_router(router)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """200 while the process and its event loop respond (liveness probe)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "starting, draining or unhealthy"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """200 once every bundle is loaded and warmed up and every model's worker is healthy;
        503 while starting, draining, or when a worker hangs or keeps failing (watchdog)."""
        state = request.app.state
        if not state.ready or state.draining:
            status = "draining" if state.draining else "starting"
            return JSONResponse(Readiness(status=status).model_dump(), status_code=503)
        models = {
            name: rt.batcher.health_reason() or "ready"
            for name, rt in state.registry.models.items()
        }
        ok = all(v == "ready" for v in models.values())
        body = Readiness(status="ready" if ok else "unhealthy", models=models)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics_endpoint(request: Request) -> Response:
        state = request.app.state
        if state.ready:
            for name, rt in state.registry.models.items():
                state.metrics.queue_depth.labels(name).set(rt.batcher.depth)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"], response_model=ModelList, summary="Served models")
    async def list_models(request: Request) -> ModelList:
        registry = _registry(request)
        return ModelList(data=[_model_card(rt, registry) for rt in registry.models.values()])

    @app.get(
        "/v1/models/{name}",
        tags=["models"],
        response_model=ModelCard,
        summary="One model",
        responses={404: {"description": "unknown model"}},
    )
    async def get_model(name: str, request: Request) -> ModelCard:
        registry = _registry(request)
        if name not in registry.models:
            raise ServiceError(404, "model-not-found", f"unknown model {name!r}")
        return _model_card(registry.models[name], registry)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "x-total-time",
                "x-queue-time",
                "x-inference-time",
                "x-tokenization-time",
                "Retry-After",
            ],
        )
    app.add_middleware(ServiceMiddleware, owner=app)
    setup_tracing(app, settings)
    if STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    else:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

    return app


def _registry(request: Request) -> Registry:
    if not request.app.state.ready:
        raise ServiceError(
            503, "not-ready", "the service is starting", headers={"Retry-After": "1"}
        )
    registry: Registry = request.app.state.registry
    return registry
