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


def test_qa_crop_keeps_the_answer_and_whole_sentences() -> None:
    from training.data.examples import crop_qa_context

    sentences = [f"Sentence number {i} talks about topic {i} at some length." for i in range(12)]
    context = " ".join(sentences)
    start = context.index("topic 6")
    answers = [{"text": "topic 6", "answer_start": start}]
    cropped, kept = crop_qa_context(context, answers, 200)
    assert len(cropped) <= 200 and "Sentence number 6" in cropped
    assert cropped.startswith("Sentence number") and cropped.endswith(".")  # whole sentences
    assert cropped[kept[0]["answer_start"] :].startswith("topic 6")
    assert len(cropped) > 150  # grown to neighbours, not just the answer's sentence
    # CJK counts about a token per character: a 200 budget keeps far fewer characters.
    zh = "。".join(f"第{i}句讲的是主题{i}和一些别的内容" for i in range(12)) + "。"
    z0 = zh.index("主题6")
    zc, zk = crop_qa_context(zh, [{"text": "主题6", "answer_start": z0}], 200)
    assert len(zc) <= 70 and zc[zk[0]["answer_start"] :].startswith("主题6")
    # Short contexts and unanswerable items are left as they are.
    assert crop_qa_context("Short one.", answers[:0], 200) == ("Short one.", [])
