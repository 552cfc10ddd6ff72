"""The shipped demo samples: valid, leakage-free, unseen languages in eval, small."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.schema import read_jsonl
from training.data.splits import shared_groups

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
TASKS = {"sib200": "classify", "pud": "tag", "xquad": "qa"}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_example_sample_is_valid_and_leakage_free(name: str) -> None:
    train, train_report = read_jsonl(EXAMPLES / name / "train.jsonl", TASKS[name])
    evaluation, eval_report = read_jsonl(EXAMPLES / name / "eval.jsonl", TASKS[name])
    assert 200 <= len(train) <= 500 and len(evaluation) >= 100
    assert "en" in train_report.per_lang
    unseen = set(eval_report.per_lang) - set(train_report.per_lang)
    assert len(unseen) >= 2
    assert not shared_groups(train, evaluation, lambda r: r.group)
    assert "Licence: CC BY-SA" in (EXAMPLES / name / "SOURCE.md").read_text()


def test_examples_stay_small() -> None:
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024
