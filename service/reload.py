"""Zero-downtime model updates: rescan the models directory and swap changed bundles in.

A rescan is triggered by SIGHUP, ``POST /v1/admin/reload`` or, when
``XMIXUP_WATCH_INTERVAL_S`` is set, a polling watcher. Per model whose manifest changed, the new
bundle is verified, loaded and warmed up beside the old one, off the event loop; then every
change is swapped into the registry in one assignment. Requests that looked up the old version
finish on it (``ModelRuntime.hold``), after which its worker drains and stops. A bundle that
fails verification, loading or warm-up is refused with its reason logged, and the version
already serving under that name keeps serving. Removing a bundle directory removes the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from service.metrics import Metrics
from service.registry import (
    ModelRuntime,
    Registry,
    load_runtime,
    pick_defaults,
    scan,
)
from service.settings import Settings
from service.warmup import warm_up_model
from xmixup.core.bundle import bundle_version

logger = logging.getLogger("service.reload")


class ReloadReport(BaseModel):
    """What one rescan of the models directory did."""

    trigger: str = Field(examples=["admin"])
    ok: bool = Field(description="False when a bundle (or the rescan itself) was refused.")
    loaded: list[str] = Field(default_factory=list, description="New or replaced models.")
    unchanged: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(
        default_factory=dict,
        description="Model (or `*` for the whole rescan) → why; the old version keeps serving.",
    )
    versions: dict[str, str] = Field(
        default_factory=dict, description="Every served model's version after the rescan."
    )
    seconds: float = 0.0


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a bundle's files: cheap to take, and it changes while a copy
    is still being written."""
    return tuple(
        sorted((p.name, st.st_size, st.st_mtime_ns) for p in path.iterdir() for st in [p.stat()])
    )


class Reloader:
    """One rescan at a time; retired runtimes are drained in the background."""

    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # name → fingerprint of a refused bundle: the watcher does not retry it until it changes
        self._refused: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._missing: set[str] = set()  # models the last watch scan did not find
        self._closing = False
        for rt in registry.models.values():
            metrics.model_info.labels(rt.name, rt.version, rt.task).set(1)

    def schedule(self, trigger: str) -> None:
        """Start a rescan from a signal handler (which cannot await)."""
        if self._closing:
            logger.info("%s ignored: the service is shutting down", trigger)
            return
        self._spawn(self._logged_reload(trigger))

    async def _logged_reload(self, trigger: str) -> None:
        try:
            await self.reload(trigger)
        except Exception:  # nobody awaits a signal's rescan: say what went wrong
            logger.exception("reload (%s) failed", trigger)

    async def reload(self, trigger: str) -> ReloadReport:
        async with self._lock:
            if self._closing:
                return ReloadReport(trigger=trigger, ok=False, refused={"*": "shutting down"})
            started = time.perf_counter()
            report = await self._rescan(trigger)
            report.seconds = round(time.perf_counter() - started, 3)
            report.versions = {n: rt.version for n, rt in sorted(self.registry.models.items())}
            quiet = trigger == "watch" and not (report.loaded or report.removed or report.refused)
            if not quiet:
                self.metrics.reloads.labels("ok" if report.ok else "failed").inc()
                log = logger.info if report.ok else logger.warning
                log(
                    "reload (%s) in %.1fs: loaded %s, removed %s, unchanged %s, refused %s",
                    trigger,
                    report.seconds,
                    report.loaded,
                    report.removed,
                    report.unchanged,
                    report.refused,
                    extra={"versions": report.versions},
                )
            return report

    async def _rescan(self, trigger: str) -> ReloadReport:
        models_dir = self.settings.models_dir
        assert models_dir is not None  # the service does not start without one
        try:
            found, problems = await asyncio.to_thread(scan, models_dir)
        except Exception as exc:  # the directory vanished or is empty: keep what serves
            return ReloadReport(trigger=trigger, ok=False, refused={"*": str(exc)})
        current = self.registry.models
        report = ReloadReport(trigger=trigger, ok=True)
        models: dict[str, ModelRuntime] = {}
        for name in sorted({*found, *problems}):
            path = found.get(name, models_dir / name)
            rt = await self._update(name, path, problems.get(name), current.get(name), report)
            if rt is not None:
                models[name] = rt
        for name in [n for n in current if n not in models]:
            # A watcher can scan between the two renames of a swap: it removes a model only
            # when two scans in a row miss it.
            if trigger == "watch" and name not in self._missing:
                self._missing.add(name)
                models[name] = current[name]
            else:
                report.removed.append(name)
        self._missing &= set(current) - set(found)
        try:
            if not models:
                raise ValueError(f"{models_dir}: no bundle left to serve")
            defaults = pick_defaults(models, self.settings)
        except Exception as exc:  # nothing left, or the configured default gone: refuse it all
            for name in report.loaded:
                await models[name].batcher.stop()
            refused = {**report.refused, "*": str(exc)}
            return ReloadReport(trigger=trigger, ok=False, refused=refused)
        self.registry.replace(models, defaults)
        self._publish(current, models, report)
        report.ok = not report.refused
        return report

    async def _update(
        self,
        name: str,
        path: Path,
        problem: str | None,
        old: ModelRuntime | None,
        report: ReloadReport,
    ) -> ModelRuntime | None:
        """The runtime to serve as ``name`` after this rescan: a new one, or ``old``."""
        try:
            if problem is None:
                version = await asyncio.to_thread(bundle_version, path)
                if old is not None and old.version == version:
                    self._refused.pop(name, None)
                    report.unchanged.append(name)
                    return old
            fingerprint = await asyncio.to_thread(_fingerprint, path)
            if report.trigger == "watch" and self._refused.get(name) == fingerprint:
                return old  # refused before and untouched since: no retry, no log spam
            if problem is not None:
                self._refused[name] = fingerprint
                report.refused[name] = problem
                return old
            rt = await self._load(name, path)
        except Exception as exc:  # anything: a refused bundle must never stop the server
            report.refused[name] = str(exc)
            self._refused[name] = await asyncio.to_thread(_safe_fingerprint, path)
            return old
        self._refused.pop(name, None)
        report.loaded.append(name)
        return rt

    async def _load(self, name: str, path: Path) -> ModelRuntime:
        """Verify, load and warm up beside the serving version; stopped again on failure."""
        rt = await asyncio.to_thread(
            load_runtime, name, path, self.settings, self.metrics, self.registry.tokenizers
        )
        rt.batcher.start()
        try:
            if self.settings.warmup:
                await warm_up_model(rt, self.settings)
        except BaseException:
            await rt.batcher.stop()
            raise
        return rt

    def _publish(
        self, old: dict[str, ModelRuntime], new: dict[str, ModelRuntime], report: ReloadReport
    ) -> None:
        """Metrics and retirement for what the swap replaced or removed."""
        m = self.metrics
        for name in report.refused:
            if name != "*":
                m.model_reloads.labels(name, "refused").inc()
                logger.warning("model %s: refused: %s", name, report.refused[name])
        for name, rt in old.items():
            if new.get(name) is rt:
                continue
            m.model_info.remove(name, rt.version, rt.task)
            if name not in new:
                m.model_reloads.labels(name, "removed").inc()
                m.model_ready.remove(name)
                m.queue_depth.remove(name)
            self._spawn(self._retire(rt))
        for name in report.loaded:
            rt = new[name]
            m.model_reloads.labels(name, "loaded").inc()
            m.model_info.labels(name, rt.version, rt.task).set(1)
            was = old.get(name)
            logger.info(
                "model %s: now serving version %s (was %s)",
                name,
                rt.version,
                was.version if was is not None else "none",
            )

    async def _retire(self, rt: ModelRuntime) -> None:
        name, version = rt.name, rt.version
        await rt.retire()
        del rt  # the last reference: the session's memory is freed here
        await asyncio.to_thread(_release_memory)
        logger.info("model %s: version %s drained and unloaded", name, version)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def watch(self, interval_s: float) -> None:
        """Poll the models directory every ``interval_s`` (XMIXUP_WATCH_INTERVAL_S)."""
        while True:
            await asyncio.sleep(interval_s)
            await self._logged_reload("watch")

    def install_sighup(self) -> bool:
        """SIGHUP → rescan. False where the loop cannot take signals (not the main thread)."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.schedule, "sighup")
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            logger.warning("SIGHUP reload unavailable here; use POST /v1/admin/reload")
            return False
        return True

    async def close(self) -> None:
        """Shutdown: later rescans are refused (the SIGHUP handler stays: SIGHUP's default
        action would end a draining server); wait for a running rescan and for retiring
        runtimes."""
        self._closing = True
        async with self._lock:
            pending = [t for t in self._tasks if not t.done()]
        await asyncio.gather(*pending, return_exceptions=True)


def _safe_fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        return _fingerprint(path)
    except OSError:
        return ()


def _release_memory() -> None:
    """Hand freed heap back to the OS after a session is unloaded. glibc keeps what onnxruntime's
    threads freed in its arenas, so without this a replica's resident memory stays at "two
    sessions" after every reload; elsewhere (musl, macOS) there is nothing to do."""
    gc.collect()  # a runtime in a reference cycle would hold its session until the next pass
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
