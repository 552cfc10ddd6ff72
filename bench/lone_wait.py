"""bench/serve.py's in-process check of the batcher's fill wait: a lone request, no HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np


def bench_lone_wait(
    bundle_dir: Path, threads: int | None, pair: tuple[str, str], n: int = 40
) -> dict[str, float]:
    """A lone request through the batcher, no HTTP: the previous fixed fill wait (every row
    waits ``max_wait_ms``) against the adaptive one, alternating on the same row in one
    process, beside the bare run; medians in ms."""
    import statistics

    from service.batcher import Batcher
    from service.metrics import Metrics
    from service.settings import Settings
    from xmixup.core.bundle import load_bundle
    from xmixup.core.featurize import TextEncoder
    from xmixup.core.rows import Row
    from xmixup.core.runner import Runner

    bundle = load_bundle(bundle_dir)
    enc = TextEncoder.for_bundle(bundle)  # as the service builds it
    (t,), _ = enc.encode_texts([pair[0]], [True])
    (s,), _ = enc.encode_texts([pair[1]], [True])
    row = Row(np.asarray(t.ids, np.int64), np.asarray(s.ids, np.int64))
    engine = Runner.for_bundle(bundle, "cpu", threads)
    settings = Settings()  # the service's defaults: max_wait_ms 2

    async def run() -> dict[str, list[float]]:
        fixed = Batcher("fixed", engine, bundle.pad_id, settings, Metrics())
        fixed._arrivals.expects_another_within = lambda *_: True  # type: ignore[method-assign]
        adaptive = Batcher("adaptive", engine, bundle.pad_id, settings, Metrics())
        times: dict[str, list[float]] = {"bare": [], "fixed_wait": [], "adaptive_wait": []}
        for b in (fixed, adaptive):
            b.start()
        feeds = pad_feeds([row], bundle.pad_id)
        for _ in range(n):
            t0 = time.perf_counter()
            engine.run(feeds)
            times["bare"].append(time.perf_counter() - t0)
            for name, b in (("fixed_wait", fixed), ("adaptive_wait", adaptive)):
                await asyncio.sleep(0.01)  # a lone client: the next request comes later
                t0 = time.perf_counter()
                await b.submit([row], time.monotonic() + 30)[0]
                times[name].append(time.perf_counter() - t0)
        for b in (fixed, adaptive):
            await b.stop()
        return times

    times = asyncio.run(run())
    return {f"{k}_ms_p50": round(1000 * statistics.median(v), 3) for k, v in times.items()}


def pad_feeds(rows: list[Any], pad_id: int) -> dict[str, np.ndarray]:
    from xmixup.core.rows import pad_rows

    return pad_rows(rows, pad_id)[0]
