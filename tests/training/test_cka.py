"""Linear CKA: known properties, agreement with the HSIC (kernel) form, and the CLI report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.cka import linear_cka


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hk, hl = h @ k @ h, h @ l_ @ h
    return float(np.sum(hk * hl) / np.sqrt(np.sum(hk * hk) * np.sum(hl * hl)))


def test_linear_cka_properties() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotation, scale, shift
    y = rng.normal(size=(50, 6))
    assert linear_cka(x, y) == pytest.approx(_hsic_cka(x, y))
    assert linear_cka(x, y) < 0.5  # unrelated representations
    assert linear_cka(x, x + 0.1 * rng.normal(size=x.shape)) > 0.95
    with pytest.raises(ValueError):
        linear_cka(x, y[:10])


def test_cka_report_on_checkpoint_and_backbone(tiny_backbone: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.tiny import make_tiny_checkpoint
    from tests.training._train_data import classify_rows, write_jsonl
    from xmixup.cli import main

    data = write_jsonl(tmp_path / "c.jsonl", classify_rows(1))
    ckpt = make_tiny_checkpoint(
        tmp_path, "classify", ["animal", "travel", "weather"], backbone_dir=tiny_backbone
    )
    out = tmp_path / "cka.json"
    assert (
        main(["analyze", "cka", "--model", str(ckpt), "--data", str(data), "--out", str(out)]) == 0
    )
    res = json.loads(out.read_text())
    assert res["items"] == 12 and res["kind"] == "checkpoint"
    for view in ("plain", "mixed"):
        assert len(res[view]["per_layer"]) == 5  # embeddings + 4 layers
        assert all(0.0 <= v <= 1.0 + 1e-9 for v in res[view]["per_layer"])
    # below the mixup layer the mixed and plain views are the same computation
    assert res["mixed"]["per_layer"][0] == pytest.approx(res["plain"]["per_layer"][0])
    before = tmp_path / "before.json"
    args = [
        "analyze",
        "cka",
        "--model",
        str(tiny_backbone),
        "--task",
        "classify",
        "--data",
        str(data),
    ]
    assert main([*args, "--out", str(before)]) == 0
    assert json.loads(before.read_text())["kind"] == "backbone"
