"""bench/export_vs_rev.py: one side's row and the medians, on hand-made bench results."""

from __future__ import annotations

import pytest

from bench.export_vs_rev import side_row, summarise


def _result(ort: float, int8: float, variants: dict[str, float] | None = None) -> dict:
    out = {"ort_vs_torch": ort, "int8_vs_fp32": int8, "throughput_items_per_s": {"64": {}}}
    if variants is not None:
        out["int8_vs_fp32_by_variant"] = variants
    return out


def test_side_row_takes_the_best_int8_variant_and_keeps_an_old_single_one() -> None:
    today = side_row(_result(1.24, 1.87, {"default": 1.43, "all_matmuls": 1.87}))
    assert today["int8_best_variant"] == 1.87
    assert today["int8_vs_fp32_by_variant"]["default"] == 1.43
    # The base commit's bench wrote no per-variant table: its one variant is its default.
    base = side_row(_result(1.06, 2.30))
    assert base["int8_vs_fp32_by_variant"] == {"default": 2.30}
    assert base["int8_best_variant"] == 2.30


def test_summarise_medians_per_side_and_today_over_base() -> None:
    rounds = [
        {"base": side_row(_result(1.0, 2.0)), "today": side_row(_result(1.2, 1.8))},
        {"base": side_row(_result(1.2, 2.4)), "today": side_row(_result(1.4, 2.2))},
        {"base": side_row(_result(1.1, 2.2)), "today": side_row(_result(1.3, 2.0))},
    ]
    s = summarise(rounds)
    assert s["base"]["ort_vs_torch"] == pytest.approx(1.1)
    assert s["today"]["int8_vs_fp32"] == pytest.approx(2.0)
    assert s["today_over_base"]["ort_vs_torch"] == pytest.approx(1.3 / 1.1, abs=1e-3)
    assert s["today_over_base"]["int8_best_variant"] == pytest.approx(2.0 / 2.2, abs=1e-3)
