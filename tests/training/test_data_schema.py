"""JSONL validation: every bad record is named file:line:field; --skip-bad counts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.schema import collect_labels, load_dataset, read_jsonl, validate_record
from xmixup.errors import UserError

CLS = {"id": "c1", "lang": "de", "target": "Hallo Welt", "source": "Hello world", "label": "a"}
TAG = {
    "id": "t1",
    "lang": "de",
    "target_tokens": ["Hallo", "Welt"],
    "target_tags": ["INTJ", "NOUN"],
    "source_tokens": ["Hello", "world"],
    "source_tags": ["INTJ", "NOUN"],
}
QA = {
    "id": "q1",
    "lang": "de",
    "question": "Wer?",
    "context": "Anna kam.",
    "answers": [{"text": "Anna", "answer_start": 0}],
    "source_question": "Who?",
    "source_context": "Then Anna came.",
    "source_answers": [{"text": "Anna", "answer_start": 5}],
}


def _write(path: Path, lines: list[object]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for obj in lines:
            fh.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    return path


def _errors(path: Path, task: str, **kw: object) -> list[str]:
    with pytest.raises(UserError) as exc:
        read_jsonl(path, task, **kw)  # type: ignore[arg-type]
    return str(exc.value).splitlines()


def test_valid_files_load_with_values(tmp_path: Path) -> None:
    recs, report = read_jsonl(
        _write(tmp_path / "c.jsonl", [CLS, "", {**CLS, "id": "c2"}]), "classify"
    )
    assert [r.id for r in recs] == ["c1", "c2"]
    assert recs[0].source == "Hello world" and report.n_skipped == 0
    assert report.per_lang == {"de": 2}
    recs, _ = read_jsonl(_write(tmp_path / "t.jsonl", [TAG]), "tagging")  # alias accepted
    assert recs[0].target_tags == ["INTJ", "NOUN"]
    recs, _ = read_jsonl(_write(tmp_path / "q.jsonl", [QA]), "qa")
    assert recs[0].source_answers[0].answer_start == 5


def test_classification_errors_name_file_line_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.jsonl",
        [
            CLS,
            {**CLS, "id": "c2", "source": 5},  # wrong type
            "{not json",
            {k: v for k, v in CLS.items() if k != "label"} | {"id": "c4"},  # missing
            {**CLS, "id": "c5", "target_pair": "x"},  # pair on one side only
            {**CLS, "id": "c6", "sorce_bt": "typo"},  # unknown field
            {**CLS},  # duplicate id
            {**CLS, "id": "c8", "label": 1},  # label must be a string
        ],
    )
    lines = _errors(path, "classify")
    assert lines[0].startswith(f"7 bad classify record(s) in {path}")
    body = "\n".join(lines)
    assert f"{path}:2: field 'source': Input should be a valid string" in body
    assert f"{path}:3: field '<json>': not valid JSON" in body
    assert f"{path}:4: field 'label': is missing" in body
    assert f"{path}:5: field 'source_pair': must be given" in body
    assert f"{path}:6: field 'sorce_bt': is not a known field" in body
    assert f"{path}:7: field 'id': duplicate id 'c1' (first on line 1)" in body
    assert f"{path}:8: field 'label'" in body
    assert f"{path}:1:" not in body


def test_tagging_length_mismatch_and_unknown_tag(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.jsonl",
        [
            {**TAG, "source_tags": ["INTJ"]},
            {**TAG, "id": "t2", "target_tags": ["INTJ", "NOUN", "X"]},
            {**TAG, "id": "t3", "target_tokens": ["Hallo", " "]},
            {**TAG, "id": "t4", "source_tags": ["INTJ", "BOGUS"]},
            {**TAG, "id": "t5", "target_tag_probs": [[0.5, 0.5], [0.9, 0.3]]},
            # an all-zero row is a word without a label (unaligned): valid
            {**TAG, "id": "t6", "target_tag_probs": [[0.0, 0.0], [0.0, 1.0]]},
        ],
    )
    body = "\n".join(_errors(path, "tag", labels=["INTJ", "NOUN"]))
    assert f"{path}:1: field 'source_tags': has 1 tags for 2 source_tokens" in body
    assert f"{path}:2: field 'target_tags': has 3 tags for 2 target_tokens" in body
    assert f"{path}:3: field 'target_tokens[1]': is an empty or whitespace-only token" in body
    assert f"{path}:4: field 'source_tags[1]': unknown tag 'BOGUS'" in body
    assert f"{path}:5: field 'target_tag_probs[1]': is neither a probability distribution" in body
    assert f"{path}:6:" not in body


def test_qa_answer_not_at_offset(tmp_path: Path) -> None:
    bad_src = {**QA, "source_answers": [{"text": "Anna", "answer_start": 0}]}
    neg = {**QA, "id": "q2", "answers": [{"text": "Anna", "answer_start": -1}]}
    path = _write(tmp_path / "q.jsonl", [bad_src, neg])
    body = "\n".join(_errors(path, "qa"))
    assert (
        f"{path}:1: field 'source_answers[0].answer_start': answer text 'Anna' is not at " in body
    )
    assert "found 'Then'" in body
    assert f"{path}:2: field 'answers[0].answer_start'" in body


def test_unknown_label_and_wrong_task(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [CLS, {**CLS, "id": "c2", "label": "zzz"}])
    body = "\n".join(_errors(path, "classify", labels=["a", "b"]))
    assert f"{path}:2: field 'label': unknown label 'zzz'" in body
    body = "\n".join(_errors(path, "qa"))
    assert "looks like a 'classify' record, not 'qa' (wrong --task?)" in body


def test_skip_bad_counts_and_keeps_good(tmp_path: Path) -> None:
    lines: list[object] = [CLS, "[1, 2]", {**CLS, "id": "c3", "target": ""}, {**CLS, "id": "c4"}]
    recs, report = read_jsonl(_write(tmp_path / "c.jsonl", lines), "classify", skip_bad=True)
    assert [r.id for r in recs] == ["c1", "c4"]
    assert report.n_skipped == 2 and report.n_records == 2
    assert report.errors[0].endswith(":2: field '<record>': a line must be a JSON object, got list")
    assert ":3: field 'target'" in report.errors[1]


def test_many_errors_are_truncated_with_a_count(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", ["oops"] * 25)
    lines = _errors(path, "classify")
    assert sum(":" in ln and "field '<json>'" in ln for ln in lines) == 20
    assert "  ... and 5 more" in lines


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl", "classify")
    with pytest.raises(UserError, match="has no classify records"):
        read_jsonl(_write(tmp_path / "e.jsonl", [""]), "classify")
    with pytest.raises(UserError, match="unknown task"):
        read_jsonl(tmp_path / "e.jsonl", "ner")


def test_validate_record_and_labels() -> None:
    rec, problems = validate_record({**TAG, "source_bt_tokens": ["Hi"]}, "tag")
    assert problems == [] and rec is not None
    _, problems = validate_record({**TAG, "source_bt_tags": ["X"]}, "tag")
    assert problems[0][0] == "source_bt_tags"
    assert collect_labels([validate_record(TAG, "tag")[0]]) == ["INTJ", "NOUN"]


def test_load_dataset_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [CLS, {**CLS, "id": "c2", "source_bt": "Hi world"}])
    ds = load_dataset(path, "classify")
    assert len(ds) == 2
    assert ds["source_bt"] == [None, "Hi world"]  # optional column present on every row
    assert ds[1]["label"] == "a"
