"""bench/bundle_size.py: tasks measured in earlier runs are kept only under the same options."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bundle_size import choose_default, earlier_tasks, merge_task, options_on_every_task


def _entry(size: float, delta: float) -> dict:
    return {"size_vs_fp32": size, "metric_delta": delta, "piece_rates": None, "speed_vs_fp32": 1.2}


def test_options_measured_earlier_on_the_same_checkpoint_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    fp32 = {**_entry(1.0, 0.0), "value": 77.2}
    tag = {
        "checkpoint": "runs/tag/model",
        "eval_data": "eval.jsonl",
        "items": 10,
        "options": {"fp32": fp32, "int8-emb8": _entry(0.28, 0.45)},
    }
    out.write_text(json.dumps({"other": 1, "bundle_options": {"tasks": {"tag": tag}}}))
    assert earlier_tasks(out) == {"tag": tag}
    assert earlier_tasks(tmp_path / "missing.json") == {}

    again = {**tag, "options": {"fp32": fp32, "w8-emb8": _entry(0.28, 0.03)}}
    merged = merge_task(tag, again)
    assert list(merged["options"]) == ["fp32", "int8-emb8", "w8-emb8"]
    # another checkpoint, or a different fp32 metric: the new entry replaces the old
    other = {**again, "checkpoint": "runs/tag-2/model"}
    assert list(merge_task(tag, other)["options"]) == ["fp32", "w8-emb8"]
    moved = {**again, "options": {"fp32": {**fp32, "value": 70.0}}}
    assert list(merge_task(tag, moved)["options"]) == ["fp32"]
    assert merge_task(None, again) is again
    # the default is chosen among the options every task has
    qa = {**again, "checkpoint": "runs/qa/model"}
    assert options_on_every_task({"tag": merged, "qa": qa}) == ["fp32", "w8-emb8"]


def test_default_needs_every_task_within_both_bars() -> None:
    options = ["fp32", "int8-emb8"]
    tasks = {
        "tag": {"options": {"fp32": _entry(1.0, 0.0), "int8-emb8": _entry(0.28, 0.45)}},
        "qa": {"options": {"fp32": _entry(1.0, 0.0), "int8-emb8": _entry(0.28, 0.7)}},
    }
    assert choose_default(tasks, options)["option"] is None
    tasks["qa"]["options"]["int8-emb8"] = _entry(0.28, 0.2)
    assert choose_default(tasks, options)["option"] == "int8-emb8"
