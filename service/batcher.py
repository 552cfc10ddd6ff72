"""Dynamic batching: one asyncio queue and one worker per model.

Requests put *rows* (one target/source sequence pair each; a long QA context gives several) on
the model's queue and await one future per row. The worker:

1. runs at once when requests arrive further apart than ``max_wait_ms`` (a lone client pays no
   wait: nothing else would join its batch), else waits until ``max_batch_size`` rows are
   pending or the oldest has waited ``max_wait_ms`` (see :class:`ArrivalRate`);
2. takes a window of the oldest rows (up to 4 batches' worth), drops rows whose request has
   gone (deadline passed or client cancelled) — dropped work never reaches the model;
3. sorts the window by length and cuts it into batches bounded by ``max_batch_size`` rows and
   ``max_batch_tokens`` padded tokens, so similar lengths share a batch and padding stays low;
4. runs each batch in a dedicated thread (never on the event loop) and resolves the futures.

Each row's outputs are sliced back to its own length, and every row is masked, so a result
does not depend on its batch-mates (padding invariance; tested end to end) — exactly for fp32
graphs; an int8 graph quantises its activations with one scale per batch, so its scores move
slightly (within its parity figures) with what it is batched with.
A watchdog view (``healthy``) turns false while a batch hangs past ``watchdog_timeout_s`` or
after ``max_consecutive_failures`` failed batches in a row; /readyz reports it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.metrics import Metrics
from service.settings import Settings
from xmixup.core.rows import Row, cut_batches, pad_rows, row_outputs
from xmixup.core.runner import Runner

logger = logging.getLogger("service.batcher")


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("queue full")
        self.retry_after_s = retry_after_s


class Stopped(Exception):
    """The worker is stopping (after SIGTERM's drain); new work goes to another replica."""


class DeadlineExceeded(Exception):
    pass


class InferenceFailed(Exception):
    pass


@dataclass(frozen=True)
class RowResult:
    outputs: dict[str, np.ndarray]
    queue_s: float
    inference_s: float
    batch_rows: int


@dataclass(eq=False)
class _Item:
    row: Row
    future: asyncio.Future[RowResult]
    enqueued: float
    deadline: float


class ArrivalRate:
    """Recent gaps between requests: whether another request is due within the fill wait.

    A fixed fill wait taxes every lone request for a batch-mate that never comes; waiting pays
    only when requests arrive closer together than the wait. The estimate is the lower median
    of the gaps between the last ``window`` arrivals within ``horizon_s``: a median, not a
    mean, because closed-loop clients answered together come back in bursts (many short gaps,
    one long one), and a burst is exactly what a short wait collects into one batch.
    """

    def __init__(self, horizon_s: float, window: int = 16) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self._horizon_s = horizon_s

    def note(self, now: float) -> None:
        self._times.append(now)

    def typical_gap_s(self, now: float) -> float | None:
        """The lower median gap between recent arrivals; None with fewer than two of them."""
        recent = [t for t in self._times if now - t <= self._horizon_s]
        if len(recent) < 2:
            return None
        return statistics.median_low(b - a for a, b in itertools.pairwise(recent))

    def expects_another_within(self, wait_s: float, now: float) -> bool:
        gap = self.typical_gap_s(now)
        return gap is not None and gap < wait_s


class Batcher:
    def __init__(
        self, name: str, engine: Runner, pad_id: int, settings: Settings, metrics: Metrics
    ) -> None:
        self.name = name
        self.engine = engine
        self.pad_id = pad_id
        self.max_batch_size = settings.max_batch_size
        self.max_batch_tokens = settings.max_batch_tokens
        self.max_wait_s = settings.max_wait_ms / 1000.0
        self.max_queue = settings.max_queue
        self.watchdog_timeout_s = settings.watchdog_timeout_s
        self.max_consecutive_failures = settings.max_consecutive_failures
        self.metrics = metrics
        # Label lookups cost a lock and a dict probe per call; these run per request and per row.
        self._m_depth = metrics.queue_depth.labels(name)
        self._m_wait = metrics.queue_wait.labels(name)
        self._pending: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # One thread per model: batches of one model run one after another (ORT already uses
        # all cores per run), and a hung run cannot starve the other models' workers.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"ort-{name}")
        self.consecutive_failures = 0
        self.batch_started_at: float | None = None
        self._rows_per_s = 0.0  # smoothed throughput, for Retry-After
        # The horizon spans many waits, so gaps as long as the wait itself can be seen.
        self._arrivals = ArrivalRate(horizon_s=max(1.0, 10 * self.max_wait_s))

    # ---- state ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def healthy(self) -> bool:
        started = self.batch_started_at
        hung = started is not None and time.monotonic() - started > self.watchdog_timeout_s
        return not hung and self.consecutive_failures < self.max_consecutive_failures

    def health_reason(self) -> str | None:
        started = self.batch_started_at
        if started is not None and time.monotonic() - started > self.watchdog_timeout_s:
            return f"a batch has been running for {time.monotonic() - started:.0f}s"
        if self.consecutive_failures >= self.max_consecutive_failures:
            return f"{self.consecutive_failures} batches failed in a row"
        return None

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"batcher-{self.name}"
        )

    async def stop(self) -> None:
        """Finish every queued row, then stop the worker (graceful drain)."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- submission ----------------------------------------------------------------------
    def submit(
        self, rows: Sequence[Row], deadline: float, *, probe: bool = False
    ) -> list[asyncio.Future[RowResult]]:
        """Queue a request's rows atomically (all or none); raises QueueFull. A ``probe``
        (warm-up, watchdog) is not a client's arrival: it does not teach the fill wait."""
        if self._stopping:
            raise Stopped()
        if len(self._pending) + len(rows) > self.max_queue:
            self.metrics.rejected.labels(self.name, "queue_full").inc(len(rows))
            rate = self._rows_per_s or 1.0
            raise QueueFull(max(1, math.ceil(len(self._pending) / rate)))
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for row in rows:
            fut: asyncio.Future[RowResult] = loop.create_future()
            self._pending.append(_Item(row, fut, now, deadline))
            futures.append(fut)
        if not probe:
            self._arrivals.note(now)
        self._m_depth.set(len(self._pending))
        self._wakeup.set()
        return futures

    # ---- worker --------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_to_fill()
            window = self._take_window()
            for batch in self._cut(window):
                await self._run(batch)

    async def _wait_to_fill(self) -> None:
        # One event-loop turn first: requests read in the same turn as this one (a burst of
        # clients answered together) reach the queue for free.
        await asyncio.sleep(0)
        if not self._arrivals.expects_another_within(self.max_wait_s, time.monotonic()):
            return
        oldest = self._pending[0].enqueued
        while len(self._pending) < self.max_batch_size and not self._stopping:
            remaining = oldest + self.max_wait_s - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_window(self) -> list[_Item]:
        window: list[_Item] = []
        limit = self.max_batch_size * 4
        while self._pending and len(window) < limit:
            item = self._pending.popleft()
            if self._live(item):
                window.append(item)
        self._m_depth.set(len(self._pending))
        return window

    def _live(self, item: _Item) -> bool:
        """False (and the row dropped) when its request is gone or its deadline has passed."""
        if item.future.done():  # the request timed out or its client went away
            self.metrics.rejected.labels(self.name, "deadline").inc()
            return False
        if time.monotonic() >= item.deadline:
            item.future.set_exception(DeadlineExceeded())
            self.metrics.rejected.labels(self.name, "deadline").inc()
            return False
        return True

    def _cut(self, window: list[_Item]) -> list[list[_Item]]:
        rows = [it.row for it in window]
        groups = cut_batches(rows, self.max_batch_size, self.max_batch_tokens)
        return [[window[i] for i in group] for group in groups]

    async def _run(self, batch: list[_Item]) -> None:
        batch = [it for it in batch if self._live(it)]  # earlier batches may have taken long
        if not batch:
            return
        feeds, real, padded = pad_rows([it.row for it in batch], self.pad_id)
        lengths = [len(it.row.target_ids) for it in batch]
        start = time.monotonic()
        self.batch_started_at = start
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self.engine.run, feeds)
        except Exception as exc:
            self.consecutive_failures += 1
            self.metrics.rejected.labels(self.name, "failed").inc(len(batch))
            logger.error("model %s: batch of %d failed: %s", self.name, len(batch), exc)
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(InferenceFailed(str(exc)))
            return
        finally:
            self.batch_started_at = None
        elapsed = time.monotonic() - start
        self.consecutive_failures = 0
        rate = len(batch) / max(elapsed, 1e-6)
        self._rows_per_s = rate if not self._rows_per_s else 0.8 * self._rows_per_s + 0.2 * rate
        m = self.metrics
        m.inference.labels(self.name).observe(elapsed)
        m.batch_size.labels(self.name).observe(len(batch))
        m.tokens.labels(self.name, "real").inc(real)
        m.tokens.labels(self.name, "padded").inc(padded)
        for j, it in enumerate(batch):
            if it.future.done():
                continue
            row_out = row_outputs(outputs, j, lengths[j])
            queue_s = start - it.enqueued
            self._m_wait.observe(queue_s)
            it.future.set_result(RowResult(row_out, queue_s, elapsed, len(batch)))
