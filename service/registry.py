"""Bundles by name: discovery under ``--models DIR``, loading, defaults per task.

The registry's models can be replaced while the server runs (``service.reload``): a request
looks its model up once and holds that ``ModelRuntime`` (``hold``) until it has its answer, so
a swap never moves a request to another version half-way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from service.batcher import Batcher
from service.errors import ServiceError
from service.metrics import Metrics
from service.settings import Settings
from xmixup.core.bundle import Bundle, bundle_version, load_bundle
from xmixup.core.featurize import TextEncoder, TokenizerCache
from xmixup.core.manifest import MANIFEST_NAME, Manifest
from xmixup.core.runner import Runner
from xmixup.errors import UserError

logger = logging.getLogger("service.registry")


@dataclass(eq=False)
class ModelRuntime:
    """Everything needed to serve one bundle."""

    name: str
    bundle: Bundle
    encoder: TextEncoder
    engine: Runner
    batcher: Batcher
    version: str = ""
    active: int = 0  # requests between their lookup and their answer
    _idle: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def task(self) -> str:
        return self.bundle.manifest.task

    @contextmanager
    def hold(self) -> Iterator[ModelRuntime]:
        """Mark a request as using this runtime; ``retire`` waits for every holder."""
        self.active += 1
        try:
            yield self
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def retire(self) -> None:
        """After a swap: let every request that looked this runtime up finish, then stop."""
        while self.active:
            self._idle.clear()
            await self._idle.wait()
        await self.batcher.stop()


def scan(models_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Name → bundle directory, and name → problem for subdirectories that are not bundles.

    ``models_dir`` is a bundle itself, or holds one per subdirectory; hidden entries (a leading
    dot) are skipped, so a bundle can be copied in under a hidden name and renamed when whole.
    """
    if not models_dir.is_dir():
        raise UserError(
            f"--models {models_dir}: not a directory",
            "pass a bundle directory (xmixup export --out DIR) or a directory of bundles",
        )
    if (models_dir / MANIFEST_NAME).is_file():
        return {models_dir.resolve().name: models_dir}, {}
    found: dict[str, Path] = {}
    problems: dict[str, str] = {}
    try:
        subdirs = sorted(p for p in models_dir.iterdir() if p.is_dir())
    except OSError as exc:  # e.g. a mounted volume the server's user may not read
        raise UserError(
            f"--models {models_dir}: cannot be read ({exc.strerror or exc})",
            "make it readable by the server's user (the images run as uid 10001)",
        ) from exc
    for sub in subdirs:
        if sub.name.startswith("."):
            continue
        if (sub / MANIFEST_NAME).is_file():
            found[sub.name] = sub
        else:
            problems[sub.name] = f"--models {models_dir}: {sub / MANIFEST_NAME} is missing"
    if not found and not problems:
        raise UserError(
            f"--models {models_dir}: no bundle found (no {MANIFEST_NAME} in it or its subdirectories)",
            "export one with `xmixup export CHECKPOINT --out DIR`",
        )
    return found, problems


def discover(models_dir: Path) -> dict[str, Path]:
    """Name → bundle directory (``scan``), refusing any subdirectory that is not a bundle:
    a half-copied model must never silently go missing at start-up."""
    found, problems = scan(models_dir)
    for problem in problems.values():
        raise UserError(
            problem, "every subdirectory must be a bundle; remove or fix that directory"
        )
    return found


def load_runtime(
    name: str,
    path: Path,
    settings: Settings,
    metrics: Metrics,
    tokenizers: TokenizerCache | None = None,
) -> ModelRuntime:
    """Verify a bundle (checksums; a BundleError names the file) and build its session and
    batcher (not started). Blocking: reads and hashes GBs, so callers keep it off the loop.
    Models of one backbone share one tokenizer through ``tokenizers``."""
    version = bundle_version(path)
    bundle = load_bundle(path)
    if bundle_version(path) != version:
        raise UserError(
            f"bundle {path}: manifest.json changed while it was being loaded",
            "replace bundles by renaming a complete copy into place, then reload",
        )
    m = bundle.manifest
    encoder = TextEncoder.for_bundle(bundle, tokenizers)
    engine = Runner.for_bundle(
        bundle, settings.device, settings.intra_op_threads, spin=settings.ort_spin
    )
    batcher = Batcher(name, engine, bundle.pad_id, settings, metrics)
    logger.info(
        "loaded model %s version %s (task %s, method %s, %s, max_length %d) from %s",
        name,
        version,
        m.task,
        m.method,
        m.precision,
        m.max_length,
        path,
    )
    return ModelRuntime(name, bundle, encoder, engine, batcher, version)


def pick_defaults(models: dict[str, ModelRuntime], settings: Settings) -> dict[str, str]:
    """Task → default model: XMIXUP_DEFAULT_MODELS where given, else the first by name."""
    defaults: dict[str, str] = {}
    for task, name in settings.default_models.items():
        if name not in models or models[name].task != task:
            raise UserError(
                f"XMIXUP_DEFAULT_MODELS: no {task} model named {name!r}",
                f"served models: {', '.join(sorted(models))}",
            )
        defaults[task] = name
    for name in sorted(models):
        defaults.setdefault(models[name].task, name)
    return defaults


class Registry:
    def __init__(
        self,
        models: dict[str, ModelRuntime],
        defaults: dict[str, str],
        tokenizers: TokenizerCache | None = None,
    ) -> None:
        # One tuple, replaced whole: a reader never sees new models with old defaults.
        self._state = (models, defaults)
        self.tokenizers = tokenizers or TokenizerCache()  # reloads share it too

    @property
    def models(self) -> dict[str, ModelRuntime]:
        return self._state[0]

    @property
    def defaults(self) -> dict[str, str]:
        return self._state[1]

    def replace(self, models: dict[str, ModelRuntime], defaults: dict[str, str]) -> None:
        """Swap in a new set of models (never mutate the dicts: readers may be iterating)."""
        self._state = (models, defaults)

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> Registry:
        if settings.models_dir is None:
            raise UserError("no models to serve", "pass --models DIR or set XMIXUP_MODELS_DIR")
        tokenizers = TokenizerCache()  # models of one backbone share one tokenizer
        models = {
            name: load_runtime(name, path, settings, metrics, tokenizers)
            for name, path in discover(settings.models_dir).items()
        }
        return cls(models, pick_defaults(models, settings), tokenizers)

    def get(self, task: str, name: str | None) -> ModelRuntime:
        """The model for a request: by name, or the task's default. 404 when there is none."""
        models, defaults = self._state
        if name is None:
            if task not in defaults:
                raise ServiceError(404, "model-not-found", f"no {task} model is served")
            return models[defaults[task]]
        runtime = models.get(name)
        if runtime is None or runtime.task != task:
            served = ", ".join(sorted(n for n, r in models.items() if r.task == task))
            what = "unknown model" if runtime is None else f"model is a {runtime.task} model"
            raise ServiceError(
                404,
                "model-not-found",
                f"{what} {name!r}; {task} models served: {served or 'none'}",
            )
        return runtime
