"""Two CPU processes under torchrun (gloo) train a tiny X-Mixup model and save it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.training._train_data import classify_rows, write_jsonl


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(180)
def test_torchrun_two_processes(tiny_backbone: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "c.jsonl", classify_rows(2))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "xmixup",
        "train",
        "--task",
        "classify",
        "--backbone",
        str(tiny_backbone),
        "--train",
        str(data),
        "--eval",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        "4",
        "--batch-size",
        "3",
        "--eval-steps",
        "2",
        "--num-threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=170, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2
    assert metrics["train"]["steps"] == 4
    # 24 items, 2 processes x batch 3 = 6 per step: 4 steps are exactly one epoch
    assert metrics["train"]["epochs"] == pytest.approx(1.0)
    assert 0.0 <= metrics["eval"]["avg"] <= 100.0
    from training.modeling import XMixupModel

    model = XMixupModel.from_pretrained(out)
    assert model.config.method == "xmixup"
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
