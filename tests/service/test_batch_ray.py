"""`xmixup predict --ray` in local mode (2 CPUs) gives `xmixup predict`'s results.

One Ray session scores the same small file per task with the tiny bundles; the rows must be
those of `xmixup predict` (without `line`, which Ray Data cannot know): same ids, labels,
tags, entities and spans, scores within 1e-6 (Ray's JSON writer prints 10 decimals). Skipped
when ray is not installed (the `ray` extra).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.test_predictor import CLASSIFY, QA, TAG, _same
from xmixup.batch.run import PredictOptions, score_file

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _records(task: str) -> list[dict[str, Any]]:
    items = {"classify": CLASSIFY, "tag": TAG, "qa": QA}[task]
    out = []
    for i in range(12):
        item = dict(items[i % len(items)])
        if task == "tag":  # the training format's names
            item["target_tokens"] = item.pop("target")
            if "source" in item:
                item["source_tokens"] = item.pop("source")
        out.append({"id": f"{task}-{i}", "lang": "xx", **item})
    return out


def _read_dir(path: Path) -> list[dict[str, Any]]:
    rows = []
    for part in sorted(path.glob("*.json")):
        rows += [json.loads(x) for x in part.read_text().splitlines() if x.strip()]
    return rows


@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_ray_job_scores_like_xmixup_predict(
    local_ray: None, models_dir: Path, tmp_path: Path, task: str
) -> None:
    from xmixup.batch.ray_job import score_with_ray

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _records(task)))
    common: dict[str, Any] = {"model": models_dir / f"tiny-{task}", "input": inp}
    common |= {"chunk_size": 5, "threads": 1, "top_k": 2, "progress": False}
    score_file(PredictOptions(output=tmp_path / "local.jsonl", **common))
    local = [json.loads(x) for x in (tmp_path / "local.jsonl").read_text().splitlines()]
    score_with_ray(PredictOptions(output=tmp_path / "ray", **common))
    remote = _read_dir(tmp_path / "ray")
    assert [r["id"] for r in remote] == [r["id"] for r in local]  # order kept, none lost
    for row in local:
        row.pop("line")
    _same(remote, local)
