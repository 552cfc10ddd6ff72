"""Warm-up: run a model before it takes traffic, at start-up and before a reload's swap."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from service.batcher import RowResult
from service.registry import ModelRuntime
from service.settings import Settings
from xmixup.core.rows import Row
from xmixup.errors import UserError

logger = logging.getLogger("service.lifecycle")


def _warmup_row(rt: ModelRuntime) -> Row:
    text = "warm up the model"
    if rt.task == "qa":
        ids = rt.encoder.encode_windows(["warm up?"], [text])[0][0].ids
    else:
        ids = rt.encoder.encode_texts([text], [True])[0][0].ids
    target = np.asarray(ids, dtype=np.int64)
    return Row(target, target if rt.manifest.uses_source else None)


async def probe(rt: ModelRuntime, rows: int, timeout_s: float) -> list[RowResult]:
    row = _warmup_row(rt)
    futures = rt.batcher.submit([row] * rows, time.monotonic() + timeout_s, probe=True)
    return list(await asyncio.wait_for(asyncio.gather(*futures), timeout_s))


async def warm_up_model(rt: ModelRuntime, settings: Settings) -> None:
    """One row, then a full batch: the first run allocates, the second sizes the arenas.
    A model that cannot run raises a UserError (refusing the start, or a reload)."""
    start = time.perf_counter()
    try:
        await probe(rt, 1, settings.watchdog_timeout_s)
        await probe(rt, min(settings.max_batch_size, 8), settings.watchdog_timeout_s)
    except Exception as exc:
        raise UserError(
            f"model {rt.name}: warm-up inference failed: {exc!r}",
            "check the bundle with `xmixup verify-bundle` and the device settings",
        ) from exc
    logger.info("model %s warmed up in %.0f ms", rt.name, (time.perf_counter() - start) * 1000)
