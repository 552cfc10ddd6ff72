"""bench/gpu.sh on a CPU host: it skips cleanly; its parsing and result writing, on CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench import gpu

REPO = Path(__file__).resolve().parents[2]


def test_skips_cleanly_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu.json"
    run = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "skipped" in run.stdout and not out.exists()
    # past the shell's nvidia-smi check, the Python side refuses a CPU-only onnxruntime too
    if gpu.cuda_missing() is not None:
        assert gpu.main(["--out", str(out)]) == 0
        assert "skipped: onnxruntime" in capsys.readouterr().out and not out.exists()


def test_summary_and_results_file(tmp_path: Path) -> None:
    serve = {
        "service_vs_ort": 0.93,
        "batching_speedup_32": 11.5,
        "ort_batching_ceiling": 14.0,
        "device": "cuda",
    }
    bundle = tmp_path / "fp16"
    bundle.mkdir()
    parity = {"outputs": {"probabilities": {"agreement": 0.995}, "mixup_ratio": {"agreement": 1}}}
    (bundle / "manifest.json").write_text(json.dumps({"parity": {"fp16": parity}}))
    fp16 = gpu.fp16_quality(tmp_path / "fp32", bundle, None)
    assert fp16["delta"] == pytest.approx(0.5) and "bound" in fp16["kind"]
    result = gpu.summarize(serve, fp16, "NVIDIA H200, 143771 MiB")
    out = tmp_path / "results" / "gpu.json"
    gpu.write_results(out, result)
    written = json.loads(out.read_text())
    assert written["service_vs_ort"] == 0.93 and written["batching_speedup_32"] == 11.5
    assert written["fp16_metric_delta"] == pytest.approx(0.5)
    assert written["gpu"].startswith("NVIDIA H200") and written["host"]["cpu"]
    assert written["serve"]["device"] == "cuda"
