"""bench/bundle_size.py: tasks measured in earlier runs are kept only under the same options."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bundle_size import choose_default, earlier_tasks


def _entry(size: float, delta: float) -> dict:
    return {"size_vs_fp32": size, "metric_delta": delta, "piece_rates": None, "speed_vs_fp32": 1.2}


def test_earlier_tasks_kept_with_the_same_options_only(tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    tag = {"options": {"fp32": _entry(1.0, 0.0), "int8-emb8": _entry(0.28, 0.45)}}
    out.write_text(
        json.dumps(
            {
                "other": 1,
                "bundle_options": {"options": {"fp32": {}, "int8-emb8": {}}, "tasks": {"tag": tag}},
            }
        )
    )
    assert earlier_tasks(out, ["fp32", "int8-emb8"]) == {"tag": tag}
    assert earlier_tasks(out, ["fp32", "int8"]) == {}
    assert earlier_tasks(tmp_path / "missing.json", ["fp32"]) == {}


def test_default_needs_every_task_within_both_bars() -> None:
    options = ["fp32", "int8-emb8"]
    tasks = {
        "tag": {"options": {"fp32": _entry(1.0, 0.0), "int8-emb8": _entry(0.28, 0.45)}},
        "qa": {"options": {"fp32": _entry(1.0, 0.0), "int8-emb8": _entry(0.28, 0.7)}},
    }
    assert choose_default(tasks, options)["option"] is None
    tasks["qa"]["options"]["int8-emb8"] = _entry(0.28, 0.2)
    assert choose_default(tasks, options)["option"] == "int8-emb8"
