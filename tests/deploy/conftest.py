"""Fixtures of the deploy tests: tiny bundles exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def deploy_bundles(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir (what the images mount at /models): a tiny classifier and a tiny tagger."""
    from model_export import onnx_export
    from tests.tiny import make_tiny_checkpoint

    root = tmp_path_factory.mktemp("deploy_bundles")
    models = root / "models"
    specs = {
        "tiny-classify": ("classify", ["entail", "neutral", "contra"], {}),
        "tiny-tag": ("tag", ["O", "B-PER", "I-PER"], {"tag_scheme": "BIO"}),
    }
    for name, (task, labels, extra) in specs.items():
        ckpt = make_tiny_checkpoint(
            root / name, task, labels, backbone_dir=tiny_backbone, seed=3, **extra
        )
        onnx_export.export_bundle(ckpt, models / name, name=name)
    return models
