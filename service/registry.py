"""Bundles by name: discovery under ``--models DIR``, loading, defaults per task."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from service.batcher import Batcher
from service.errors import ServiceError
from service.metrics import Metrics
from service.settings import Settings
from xmixup.core.bundle import Bundle, load_bundle
from xmixup.core.featurize import TextEncoder, TokenizerCache
from xmixup.core.manifest import MANIFEST_NAME, Manifest
from xmixup.core.runner import Runner
from xmixup.errors import UserError

logger = logging.getLogger("service.registry")


@dataclass
class ModelRuntime:
    """Everything needed to serve one bundle."""

    name: str
    bundle: Bundle
    encoder: TextEncoder
    engine: Runner
    batcher: Batcher

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def task(self) -> str:
        return self.bundle.manifest.task


def discover(models_dir: Path) -> dict[str, Path]:
    """Name → bundle directory. ``models_dir`` is a bundle itself, or holds one per subdirectory.

    Every visible subdirectory must be a bundle: a stray directory is refused (naming its
    missing manifest) rather than skipped, so a half-copied model never silently goes missing.
    """
    if not models_dir.is_dir():
        raise UserError(
            f"--models {models_dir}: not a directory",
            "pass a bundle directory (xmixup export --out DIR) or a directory of bundles",
        )
    if (models_dir / MANIFEST_NAME).is_file():
        return {models_dir.resolve().name: models_dir}
    found: dict[str, Path] = {}
    for sub in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        if sub.name.startswith("."):
            continue
        if not (sub / MANIFEST_NAME).is_file():
            raise UserError(
                f"--models {models_dir}: {sub / MANIFEST_NAME} is missing",
                "every subdirectory must be a bundle; remove or fix that directory",
            )
        found[sub.name] = sub
    if not found:
        raise UserError(
            f"--models {models_dir}: no bundle found (no {MANIFEST_NAME} in it or its subdirectories)",
            "export one with `xmixup export CHECKPOINT --out DIR`",
        )
    return found


class Registry:
    def __init__(self, models: dict[str, ModelRuntime], defaults: dict[str, str]) -> None:
        self.models = models
        self.defaults = defaults

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> Registry:
        if settings.models_dir is None:
            raise UserError("no models to serve", "pass --models DIR or set XMIXUP_MODELS_DIR")
        models: dict[str, ModelRuntime] = {}
        tokenizers = TokenizerCache()  # models of one backbone share one tokenizer
        for name, path in discover(settings.models_dir).items():
            bundle = load_bundle(path)  # verifies checksums; a BundleError names the file
            m = bundle.manifest
            encoder = TextEncoder.from_file(
                bundle.tokenizer_path,
                m.max_length,
                m.doc_stride,
                m.max_query_length,
                cache=tokenizers,
            )
            engine = Runner.for_bundle(
                bundle, settings.device, settings.intra_op_threads, spin=settings.ort_spin
            )
            batcher = Batcher(name, engine, bundle.pad_id, settings, metrics)
            models[name] = ModelRuntime(name, bundle, encoder, engine, batcher)
            logger.info(
                "loaded model %s (task %s, method %s, %s, max_length %d) from %s",
                name,
                m.task,
                m.method,
                m.precision,
                m.max_length,
                path,
            )
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
        return cls(models, defaults)

    def get(self, task: str, name: str | None) -> ModelRuntime:
        """The model for a request: by name, or the task's default. 404 when there is none."""
        if name is None:
            if task not in self.defaults:
                raise ServiceError(404, "model-not-found", f"no {task} model is served")
            return self.models[self.defaults[task]]
        runtime = self.models.get(name)
        if runtime is None or runtime.task != task:
            served = ", ".join(sorted(n for n, r in self.models.items() if r.task == task))
            what = "unknown model" if runtime is None else f"model is a {runtime.task} model"
            raise ServiceError(
                404,
                "model-not-found",
                f"{what} {name!r}; {task} models served: {served or 'none'}",
            )
        return runtime
