"""The app's lifespan: load → start workers → warm up → ready; watchdog; drain on shutdown.

Once ready, SIGHUP (and, when configured, a watcher) rescans the models directory
(``service.reload``).

On shutdown /readyz turns 503 first (``state.draining``), queued rows finish, then the workers
stop. A watchdog task keeps ``xmixup_model_ready`` current and probes a failing model so it can
recover once its worker runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from service.errors import ServiceError
from service.metrics import Metrics
from service.registry import Registry
from service.reload import Reloader
from service.settings import Settings
from service.warmup import probe, warm_up_model

logger = logging.getLogger("service.lifecycle")


def ready_registry(request: Request) -> Registry:
    """The loaded models, or 503 while the service is starting.

    While draining (after SIGTERM) requests are still served: the load balancer may route a
    few more before it sees /readyz fail, and answering them is better than refusing.
    """
    if not request.app.state.ready:
        raise ServiceError(
            503, "not-ready", "the service is starting", headers={"Retry-After": "1"}
        )
    registry: Registry = request.app.state.registry
    return registry


ReadyRegistry = Annotated[Registry, Depends(ready_registry)]


async def watchdog(registry: Registry, metrics: Metrics, interval_s: float) -> None:
    """Keep the ready gauge current; re-probe a model whose batches keep failing."""
    last_probe: dict[str, float] = {}
    while True:
        # One call per round: its locals go with it, so a model a reload swapped out is not
        # kept alive (with its onnxruntime session) by this loop while it sleeps.
        await _watch_round(registry, metrics, interval_s, last_probe)
        await asyncio.sleep(interval_s)


async def _watch_round(
    registry: Registry, metrics: Metrics, interval_s: float, last_probe: dict[str, float]
) -> None:
    for name, rt in registry.models.items():
        healthy = rt.batcher.healthy
        metrics.model_ready.labels(name).set(1 if healthy else 0)
        metrics.queue_depth.labels(name).set(rt.batcher.depth)
        failing = rt.batcher.batch_started_at is None and not healthy
        if failing and time.monotonic() - last_probe.get(name, 0.0) > 5 * interval_s:
            last_probe[name] = time.monotonic()
            try:  # a success resets the failure count, and the model is ready again
                await probe(rt, 1, 5 * interval_s)
                logger.info("model %s recovered", name)
            except Exception as exc:
                logger.warning("model %s still failing: %r", name, exc)


async def start(app: FastAPI) -> asyncio.Task[None]:
    """Load (unless `serve` preloaded), start the workers, warm up; returns the watchdog."""
    state = app.state
    settings: Settings = state.settings
    started = time.perf_counter()
    # Loading reads and hashes GBs and builds sessions: keep it off the event loop.
    registry: Registry | None = getattr(state, "preloaded", None)
    if registry is None:
        registry = await asyncio.to_thread(Registry.load, settings, state.metrics)
    state.registry = registry
    for rt in registry.models.values():
        rt.batcher.start()
    if settings.warmup:
        for rt in registry.models.values():
            await warm_up_model(rt, settings)
    loop = asyncio.get_running_loop()
    task = loop.create_task(
        watchdog(registry, state.metrics, settings.watchdog_interval_s), name="watchdog"
    )
    state.reloader = Reloader(registry, settings, state.metrics)
    state.reloader.install_sighup()
    if settings.watch_interval_s:
        state.watcher = loop.create_task(state.reloader.watch(settings.watch_interval_s))
    logger.info(
        "ready: %d model(s) %s on %s in %.1fs; defaults %s",
        len(registry.models),
        {name: rt.version for name, rt in sorted(registry.models.items())},
        settings.device,
        time.perf_counter() - started,
        registry.defaults,
    )
    return task


async def drain(app: FastAPI, watchdog_task: asyncio.Task[None]) -> None:
    """/readyz says 503 from here on; queued rows finish, then the workers stop."""
    app.state.draining = True
    watcher: asyncio.Task[None] | None = getattr(app.state, "watcher", None)
    if watcher is not None:
        watcher.cancel()
    await app.state.reloader.close()  # a running rescan finishes; retired models drain
    registry: Registry = app.state.registry
    logger.info(
        "draining: finishing %d queued row(s)",
        sum(rt.batcher.depth for rt in registry.models.values()),
    )
    for rt in registry.models.values():
        await rt.batcher.stop()
    watchdog_task.cancel()
    logger.info("stopped")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.ready = False
    app.state.draining = False
    watchdog_task = await start(app)
    app.state.ready = True
    try:
        yield
    finally:
        await drain(app, watchdog_task)
