"""bench/train_cost.py's record: each task keeps the setup and host it was measured with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.train_cost as train_cost


def test_a_later_task_run_leaves_the_earlier_tasks_record_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "train_cost.json"
    earlier = {"ratio_vs_translate_train": 1.7, "setup": {"batch_size": 16}, "host": {"cpu": "A"}}
    out.write_text(json.dumps({"tag": earlier, "goal": 2.2}))
    fake = {"ratio_vs_translate_train": 1.73, "rounds": [], "data": "x"}
    monkeypatch.setattr(train_cost, "bench_task", lambda task, args: dict(fake))

    assert train_cost.main(["--tasks", "qa", "--batch-size", "8", "--out", str(out)]) == 0

    data = json.loads(out.read_text())
    assert data["tag"] == earlier  # not relabelled with qa's budget or this host
    assert data["qa"]["ratio_vs_translate_train"] == 1.73
    assert data["qa"]["setup"]["batch_size"] == 8 and data["qa"]["setup"]["threads_per_job"] == 1
    assert "cpu" in data["qa"]["host"] and "setup" not in data and data["goal"] == 2.2
