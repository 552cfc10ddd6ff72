"""The answer to a request without a translation: "self" or "unmixed" (X-Mixup classifiers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")

from model_export import onnx_export  # noqa: E402
from model_export.manifest_fields import resolve_no_source_fallback  # noqa: E402
from tests.tiny import make_tiny_checkpoint  # noqa: E402
from tests.training._train_data import classify_rows  # noqa: E402
from xmixup.core.vocab import SOURCE_PROBS_OUTPUT  # noqa: E402
from xmixup.errors import UserError  # noqa: E402

LABELS = sorted({r["label"] for r in classify_rows(1)})


@pytest.fixture(scope="module")
def classifier(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.modeling import XMixupModel

    tmp = tmp_path_factory.mktemp("classifier")
    ckpt = make_tiny_checkpoint(tmp, "classify", LABELS, backbone_dir=tiny_backbone, seed=3)
    # A random head gives near-uniform probabilities; a larger one spreads them out.
    model = XMixupModel.from_pretrained(ckpt)
    with torch.no_grad():
        for param in model.head.parameters():
            param.mul_(50.0)
    model.save_pretrained(ckpt)
    return ckpt


def _with_no_source_rate(
    checkpoint: Path, out: Path, rate: float, option: str = "no_source_rate"
) -> Path:
    shutil.copytree(checkpoint, out)
    (out / "training_args.json").write_text(json.dumps({"options": {option: rate}}))
    return out


def test_auto_is_unmixed_only_for_classifiers_trained_for_the_unmixed_path(
    classifier: Path, tiny_backbone: Path, tmp_path: Path
) -> None:
    from training.modeling import XMixupModel

    model = XMixupModel.from_pretrained(classifier)
    assert resolve_no_source_fallback("auto", model, classifier) == "self"
    trained = _with_no_source_rate(classifier, tmp_path / "trained", 0.2)
    assert resolve_no_source_fallback("auto", model, trained) == "unmixed"
    assert resolve_no_source_fallback("self", model, trained) == "self"
    branch = _with_no_source_rate(classifier, tmp_path / "branch", 1.0, "unmixed_weight")
    assert resolve_no_source_fallback("auto", model, branch) == "unmixed"
    distilled = _with_no_source_rate(classifier, tmp_path / "distilled", 1.0, "unmixed_distill")
    assert resolve_no_source_fallback("auto", model, distilled) == "unmixed"
    untrained = _with_no_source_rate(classifier, tmp_path / "zero", 0.0)
    assert resolve_no_source_fallback("auto", model, untrained) == "self"
    ckpt = make_tiny_checkpoint(tmp_path / "tag", "tag", ["O", "B-X"], backbone_dir=tiny_backbone)
    tagger_dir = _with_no_source_rate(ckpt, tmp_path / "tagger", 0.2)
    tagger = XMixupModel.from_pretrained(tagger_dir)
    assert resolve_no_source_fallback("auto", tagger, tagger_dir) == "self"
    with pytest.raises(UserError, match="only X-Mixup classifiers"):
        resolve_no_source_fallback("unmixed", tagger, tagger_dir)


def test_unmixed_bundle_answers_without_a_translation_with_the_mixing_off(
    classifier: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from training.evaluate import evaluate_records, load_predictor
    from training.modeling import XMixupModel
    from xmixup import Predictor

    self_m = onnx_export.export_bundle(classifier, tmp_path / "self", optimize=False)
    unmixed_m = onnx_export.export_bundle(
        classifier, tmp_path / "unmixed", optimize=False, no_source_fallback="unmixed"
    )
    assert (self_m.no_source_fallback, unmixed_m.no_source_fallback) == ("self", "unmixed")
    assert SOURCE_PROBS_OUTPUT in self_m.outputs and SOURCE_PROBS_OUTPUT in unmixed_m.outputs
    rows = classify_rows(1)
    self_p, unmixed_p = (Predictor(tmp_path / n, threads=1) for n in ("self", "unmixed"))
    alone = [{"target": r["target"]} for r in rows]
    paired = [{"target": r["target"], "source": r["source"]} for r in rows]
    # With a translation the two bundles are the same model.
    for a, b in zip(self_p.classify(paired), unmixed_p.classify(paired), strict=True):
        assert a.scores == b.scores and a.mixup_ratio == b.mixup_ratio > 0
    # Without one, "unmixed" is the target stream with the mixing off (PyTorch reference).
    model = XMixupModel.from_pretrained(classifier).eval()
    model.mixup = False
    tokenizer = AutoTokenizer.from_pretrained(str(classifier))
    moved = 0.0
    for item, a, b in zip(alone, self_p.classify(alone), unmixed_p.classify(alone), strict=True):
        enc = tokenizer(item["target"], return_tensors="pt")
        with torch.inference_mode():
            ref = model.predict(enc["input_ids"], enc["attention_mask"])["probabilities"][0]
        np.testing.assert_allclose([b.scores[x] for x in LABELS], ref.numpy(), atol=1e-5)
        assert b.mixup_ratio == 0.0 and a.mixup_ratio > 0 and not b.source_used
        moved = max(moved, max(abs(a.scores[x] - b.scores[x]) for x in LABELS))
    # "self" would fail the reference check above: the two are different computations (their
    # gap is small on a random model, ~1e-4; ORT vs PyTorch differ by ~1e-6 here).
    assert moved > 5e-5
    # `xmixup evaluate --no-source` on a bundle follows its manifest, as the service does.
    lam = {
        n: evaluate_records(load_predictor(tmp_path / n), rows, no_source=True)["lambda"]["mean"]
        for n in ("self", "unmixed")
    }
    assert lam["unmixed"] == 0.0 and lam["self"] > 0


def test_model_card_says_which_fallback_the_bundle_serves() -> None:
    from model_export.model_card import _use

    fields = {"method": "xmixup", "task": "classify", "max_length": 64}
    unmixed = "\n".join(_use({**fields, "no_source_fallback": "unmixed"}, {"no_source_rate": 0.2}))
    assert "the mixing switched off" in unmixed and "0.2 of its training items" in unmixed
    assert "reading the target as its own source" in "\n".join(_use(fields, {}))
