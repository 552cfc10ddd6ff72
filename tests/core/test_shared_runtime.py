"""The service and evaluation cannot skew: they run bundles through the same core runner and pad
with the bundle's pad id (the manifest's from format 2, the tokenizer rule's for format 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import service.registry
import training.evaluate
import xmixup.core.runner
from service.metrics import Metrics
from service.registry import ModelRuntime, Registry
from service.settings import Settings
from tests.core.test_runner import FEEDS
from tests.core.toy_bundle import (
    make_toy_bundle,
    toy_classify_graph,
    toy_tokenizer,
    write_v1_manifest,
)
from training.evaluate import OnnxPredictor, evaluate_records
from xmixup.core.runner import Runner
from xmixup.core.special_tokens import read_special_tokens

REPO = Path(__file__).resolve().parents[2]
RECORDS = [
    {"lang": "de", "target": "guten tag welt", "source": "hello world", "label": "a"},
    {"lang": "de", "target": "tag", "source": "hello world hello world", "label": "b"},
    {"lang": "fr", "target": "guten guten guten tag", "source": "world", "label": "c"},
]


def _served(models: Path, name: str) -> ModelRuntime:
    return Registry.load(Settings(models_dir=models), Metrics()).get("classify", name)


def _evaluation_feeds(predictor: OnnxPredictor, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The batches evaluation hands to the runner for ``RECORDS``."""
    seen: list[dict[str, np.ndarray]] = []
    real_run = predictor.runner.run

    def spy(feeds: Any) -> dict[str, np.ndarray]:
        seen.append({k: np.array(v) for k, v in feeds.items()})
        return real_run(feeds)

    monkeypatch.setattr(predictor.runner, "run", spy)
    result = evaluate_records(predictor, RECORDS, batch_size=8)
    assert result["runtime"] == "onnxruntime" and set(result["per_lang"]) == {"de", "fr"}
    return seen


def _padding(feeds: dict[str, np.ndarray]) -> set[int]:
    ids, mask = feeds["target_input_ids"], feeds["target_attention_mask"]
    source_ids, source_mask = feeds["source_input_ids"], feeds["source_attention_mask"]
    return set(ids[mask == 0].tolist()) | set(source_ids[source_mask == 0].tolist())


def test_service_and_evaluation_use_the_core_runner(tmp_path: Path) -> None:
    bundle_dir = make_toy_bundle(tmp_path / "models" / "toy")
    runtime = _served(tmp_path / "models", "toy")
    predictor = OnnxPredictor(bundle_dir)
    assert service.registry.Runner is training.evaluate.Runner is xmixup.core.runner.Runner
    assert type(runtime.engine) is Runner and runtime.batcher.engine is runtime.engine
    assert type(predictor.runner) is Runner
    served, evaluated = runtime.engine.run(FEEDS), predictor(FEEDS)
    assert served.keys() == evaluated.keys() == {"probabilities", "mixup_ratio"}
    for name in served:
        np.testing.assert_array_equal(served[name], evaluated[name])


def test_only_the_core_runner_opens_onnxruntime_sessions() -> None:
    opened = sorted(
        str(path.relative_to(REPO))
        for package in ("service", "training", "model_export", "bench", "xmixup", "scripts")
        for path in (REPO / package).rglob("*.py")
        if "InferenceSession(" in path.read_text(encoding="utf-8")
    )
    assert opened == ["xmixup/core/runner.py"]


def test_service_and_evaluation_pad_with_the_manifests_pad_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The manifest names "[PAD]" (id 10), where the tokenizer rule alone would find "<pad>" (3):
    # whoever pads with 3 re-derived the id instead of reading the manifest.
    toy_tokenizer(tmp_path / "tokenizer.json")
    special = read_special_tokens(tmp_path / "tokenizer.json").model_dump()
    assert special["pad"]["id"] == 3
    special["pad"] = {"token": "[PAD]", "id": 10}
    bundle_dir = make_toy_bundle(tmp_path / "models" / "toy", special_tokens=special, pad_id=10)
    assert _served(tmp_path / "models", "toy").batcher.pad_id == 10
    predictor = OnnxPredictor(bundle_dir)
    assert predictor.pad_id == 10 and predictor.tokenizer.pad_token == "[PAD]"
    batches = _evaluation_feeds(predictor, monkeypatch)
    assert [_padding(feeds) for feeds in batches] == [{10}]


def test_a_version_1_bundle_is_served_and_evaluated_with_its_tokenizers_pad_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle_dir = tmp_path / "models" / "old"
    bundle_dir.mkdir(parents=True)
    toy_classify_graph(bundle_dir / "model.onnx")
    toy_tokenizer(bundle_dir / "tokenizer.json")
    write_v1_manifest(bundle_dir)
    runtime = _served(tmp_path / "models", "old")
    assert runtime.manifest.format_version == 1 and runtime.manifest.pad_id is None
    assert runtime.batcher.pad_id == 3  # "<pad>" of its tokenizer.json, as before format 2
    predictor = OnnxPredictor(bundle_dir)
    assert predictor.pad_id == 3
    assert [_padding(feeds) for feeds in _evaluation_feeds(predictor, monkeypatch)] == [{3}]


def test_the_exporter_records_the_checkpoints_pad_id(tiny_backbone: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from model_export.onnx_export import export_bundle
    from tests.tiny import PAD_ID, make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path, "classify", ["a", "b", "c"], backbone_dir=tiny_backbone)
    manifest = export_bundle(ckpt, tmp_path / "models" / "tiny", optimize=False)
    assert manifest.format_version == 3 and manifest.pad_id == PAD_ID
    assert manifest.special_tokens == read_special_tokens(ckpt / "tokenizer.json")
    assert _served(tmp_path / "models", "tiny").batcher.pad_id == PAD_ID
