"""The app's lifespan: load → start workers → warm up → ready; watchdog; drain on shutdown.

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

import numpy as np
from fastapi import Depends, FastAPI, Request

from service.batcher import RowResult
from service.engine import Row
from service.errors import ServiceError
from service.metrics import Metrics
from service.registry import ModelRuntime, Registry
from service.settings import Settings
from xmixup.errors import UserError

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
    futures = rt.batcher.submit([row] * rows, time.monotonic() + timeout_s, probe=True)
    return list(await asyncio.wait_for(asyncio.gather(*futures), timeout_s))


async def warm_up(registry: Registry, settings: Settings) -> None:
    """One row, then a full batch, through every model: the first run allocates, the second
    sizes the arenas; a model that cannot run refuses the start."""
    for rt in registry.models.values():
        start = time.perf_counter()
        try:
            await _probe(rt, 1, settings.watchdog_timeout_s)
            await _probe(rt, min(settings.max_batch_size, 8), settings.watchdog_timeout_s)
        except Exception as exc:
            raise UserError(
                f"model {rt.name}: warm-up inference failed: {exc!r}",
                "check the bundle with `xmixup verify-bundle` and the device settings",
            ) from exc
        logger.info("model %s warmed up in %.0f ms", rt.name, (time.perf_counter() - start) * 1000)


async def watchdog(registry: Registry, metrics: Metrics, interval_s: float) -> None:
    """Keep the ready gauge current; re-probe a model whose batches keep failing."""
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
        await warm_up(registry, settings)
    task = asyncio.get_running_loop().create_task(
        watchdog(registry, state.metrics, settings.watchdog_interval_s), name="watchdog"
    )
    logger.info(
        "ready: %d model(s) %s on %s in %.1fs; defaults %s",
        len(registry.models),
        sorted(registry.models),
        settings.device,
        time.perf_counter() - started,
        registry.defaults,
    )
    return task


async def drain(app: FastAPI, watchdog_task: asyncio.Task[None]) -> None:
    """/readyz says 503 from here on; queued rows finish, then the workers stop."""
    app.state.draining = True
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
