"""The batcher's fill wait: a lone request never waits; requests arriving close together do."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.batcher import ArrivalRate, Batcher, RowResult
from service.metrics import Metrics
from service.settings import Settings
from xmixup.core.rows import Row


class _CountingEngine:
    """Stands in for the runner: records each batch's size, answers zeros."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(feeds["target_input_ids"])
        self.batches.append(n)
        return {"probabilities": np.zeros((n, 3), np.float32), "mixup_ratio": np.zeros(n)}


def _row(n: int = 4) -> Row:
    ids = np.arange(n, dtype=np.int64) + 5
    return Row(ids, ids)


def test_arrival_rate_tells_a_lone_client_from_a_burst() -> None:
    lone = ArrivalRate(horizon_s=1.0)
    for i in range(10):  # one closed-loop client: a request every 10 ms
        lone.note(100.0 + 0.010 * i)
    gap = lone.typical_gap_s(100.1)
    assert gap is not None and abs(gap - 0.010) < 1e-9
    assert not lone.expects_another_within(0.002, 100.1)

    burst = ArrivalRate(horizon_s=1.0)
    t = 100.0
    for _ in range(3):  # 8 clients answered together come back within a millisecond
        for _ in range(8):
            burst.note(t)
            t += 0.0001
        t += 0.040  # then nothing while their batch runs
    assert burst.expects_another_within(0.002, t)
    # arrivals older than the horizon say nothing about now
    assert burst.typical_gap_s(t + 5.0) is None
    assert not burst.expects_another_within(0.002, t + 5.0)
    assert ArrivalRate(horizon_s=1.0).typical_gap_s(0.0) is None


def test_lone_request_skips_the_wait_and_close_requests_share_a_batch() -> None:
    settings = Settings(max_batch_size=2, max_wait_ms=5000, max_queue=8)
    engine = _CountingEngine()

    async def scenario() -> tuple[float, RowResult, RowResult]:
        batcher = Batcher("m", engine, pad_id=1, settings=settings, metrics=Metrics())  # type: ignore[arg-type]
        batcher.start()
        deadline = time.monotonic() + 30
        t0 = time.monotonic()
        [lone] = batcher.submit([_row()], deadline)
        await lone
        lone_s = time.monotonic() - t0
        # 50 ms later, well within the 5 s wait: the batcher now expects company and waits
        [first] = batcher.submit([_row()], deadline)
        await asyncio.sleep(0.05)
        [second] = batcher.submit([_row(6)], deadline)
        a, b = await asyncio.gather(first, second)
        await batcher.stop()
        return lone_s, a, b

    lone_s, first, second = asyncio.run(scenario())
    assert lone_s < 2.5  # not held for the 5 s fill wait
    assert engine.batches == [1, 2]
    assert first.batch_rows == second.batch_rows == 2
    assert first.queue_s >= 0.04  # it waited for its batch-mate
