"""bench/ort_vs_torch.py: the ratio splits exactly into kernels x threading, and the verdict
names the factor that makes onnxruntime lose."""

from __future__ import annotations

import math

import pytest

from bench.ort_vs_torch import diagnose


def _row(torch_1: float, torch_2: float, ort_1: float, ort_2: float, nospin: float) -> dict:
    return {"torch_1": torch_1, "torch_2": torch_2, "ort_1": ort_1, "ort_2": ort_2,
            "ort_2_nospin": nospin}  # fmt: skip


def test_factors_multiply_to_the_ratio() -> None:
    result = diagnose({"64": _row(20, 36, 30, 50, 45)}, threads=2)
    f = result["factors"]["64"]
    assert f["ort_vs_torch"] == pytest.approx(50 / 36, abs=1e-3)
    assert f["kernels"] == pytest.approx(1.5, abs=1e-3)
    assert math.isclose(f["kernels"] * f["threading"], f["ort_vs_torch"], rel_tol=2e-3)
    assert f["ort_scaling"] == pytest.approx(50 / 30, abs=1e-3)
    assert f["torch_scaling"] == pytest.approx(1.8, abs=1e-3)
    assert f["spinning"] == pytest.approx(50 / 45, abs=1e-3)
    assert result["cause"] is None and result["losing_lengths"] == []
    assert "ahead at every length" in result["verdict"]


def test_threading_named_when_onnxruntime_scales_worse() -> None:
    # faster kernels at 1 thread, but onnxruntime gains almost nothing from the second thread:
    # the Xeon case (2 vCPUs that are one core's hyperthreads)
    items = {"64": _row(13, 25.1, 14, 23.7, 22), "128": _row(7, 12, 8, 12.5, 12)}
    result = diagnose(items, threads=2)
    assert result["losing_lengths"] == ["64"]
    assert result["cause"] == "threading"
    assert "gains x1.693 from 2 threads, PyTorch x1.931" in result["verdict"]


def test_kernels_named_when_onnxruntime_is_slower_on_one_thread() -> None:
    result = diagnose({"64": _row(20, 38, 15, 30, 30)}, threads=2)
    assert result["cause"] == "kernels"
    assert "x0.75 PyTorch's speed" in result["verdict"]
