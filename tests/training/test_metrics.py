"""Metrics on hand-made predictions: accuracy, seqeval F1, SQuAD EM/F1 with MLQA normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics as M
from xmixup.core.decode import best_spans


def test_accuracy_per_language_and_unweighted_average() -> None:
    res = M.accuracy_by_lang(["de", "de", "de", "de", "zh"], [0, 1, 1, 1, 2], [0, 1, 0, 0, 2])
    assert res["per_lang"] == {"de": 50.0, "zh": 100.0}
    assert res["avg"] == 75.0  # mean over languages, not over items (60)
    assert res["n"] == {"de": 4, "zh": 1}


def test_seqeval_entity_f1() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    # 2 of 2 predicted entities correct, 2 of 3 gold found: P=1, R=2/3, F1=0.8
    res = M.entity_f1_by_lang(["de", "de"], pred, gold)
    assert res["per_lang"]["de"] == pytest.approx(80.0)
    # a partial span is wrong in entity F1 but right tokens count in accuracy
    part = M.entity_f1_by_lang(["x"], [["B-PER", "O"]], [["B-PER", "I-PER"]])
    assert part["avg"] == 0.0
    acc = M.word_accuracy_by_lang(["x"], [["B-PER", "O"]], [["B-PER", "I-PER"]])
    assert acc["avg"] == 50.0
    with pytest.raises(ValueError):
        M.word_accuracy_by_lang(["x"], [["O"]], [["O", "O"]])


def test_mlqa_normalisation() -> None:
    assert M.normalize_answer("The Eiffel Tower!", "en") == "eiffel tower"
    assert M.normalize_answer("der Bahnhof", "de") == "bahnhof"
    assert M.normalize_answer("der Bahnhof", "en") == "der bahnhof"  # articles are per language
    assert M.normalize_answer("los Angeles", "es") == "angeles"
    # unicode punctuation (CJK full stop, full-width comma) is removed
    assert M.normalize_answer("柏林，德国。", "zh") == "柏 林 德 国"
    assert M.normalize_answer("in Berlin 2024年", "zh") == "in berlin 2024 年"
    assert M.base_lang("deu_Latn") == "de" and M.base_lang("zh-CN") == "zh"


def test_squad_em_f1() -> None:
    assert M.qa_scores("the Eiffel Tower", ["Eiffel Tower"], "en") == (1.0, 1.0)
    em, f1 = M.qa_scores("Eiffel", ["Eiffel Tower", "tower"], "en")
    assert em == 0.0 and f1 == pytest.approx(2 * 1 * 0.5 / 1.5)
    # zh is scored per character: 北京市 vs 北京 -> P=2/3, R=1
    em, f1 = M.qa_scores("北京市", ["北京"], "zh")
    assert em == 0.0 and f1 == pytest.approx(0.8)
    # th likewise (no spaces between words)
    assert M.qa_scores("กรุงเทพ", ["กรุงเทพ"], "th") == (1.0, 1.0)
    assert 0 < M.qa_scores("กรุง", ["กรุงเทพ"], "th")[1] < 1
    res = M.squad_by_lang(["en", "zh"], ["Eiffel", "北京"], [["Eiffel Tower"], ["北京"]])
    assert res["per_lang"]["zh"] == 100.0
    assert res["em"]["per_lang"] == {"en": 0.0, "zh": 100.0}
    assert res["avg"] == pytest.approx((100 * 2 / 3 + 100) / 2)


def test_best_spans_over_windows() -> None:
    context = "Paris is in France"
    offsets = [None, (0, 5), (5, 8), (8, 11), (11, 18), None]
    start = np.array([9.0, 0.0, 0.0, 0.0, 5.0, 9.0])  # specials must never win
    end = np.array([9.0, 1.0, 0.0, 0.0, 6.0, 9.0])
    best = best_spans(context, [(start, end, offsets)], max_answer_length=30)[0]
    assert (best.text, best.start, best.end) == ("France", 12, 18) and best.score == 11.0
    # a span longer than max_answer_length is rejected
    start2 = np.array([0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    end2 = np.array([0.0, 0.0, 0.0, 0.0, 5.0, 0.0])
    spans = best_spans(context, [(start2, end2, offsets)], max_answer_length=2, top_k=3)
    assert all(s.end - s.start <= len("Paris is") for s in spans)
    # the best window wins across windows
    w2 = (np.array([0.0, 20.0, 0, 0, 0, 0]), np.array([0.0, 20.0, 0, 0, 0, 0]), offsets)
    assert best_spans(context, [(start, end, offsets), w2])[0].text == "Paris"
