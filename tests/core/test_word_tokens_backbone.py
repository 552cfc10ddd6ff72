"""The word-token rules on the default backbone's real XLM-R/SentencePiece tokenizer, which
puts a bare "▁" before most pre-split Chinese words (the case "first-content" exists for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmixup.core.featurize import TextEncoder, word_tokens

WORDS = ["北京", "是", "中国", "的", "首都", "。"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    found = sorted(Path.home().glob(".cache/xmixup/backbones/*/tokenizer.json"))
    if not found:
        pytest.skip("no default backbone tokenizer (make backbone)")
    return TextEncoder.from_file(found[0], max_length=64)


def _chosen(encoder: TextEncoder, rule: str) -> list[str]:
    [e], _ = encoder.encode_words([WORDS], [True])
    index = word_tokens(e, rule)
    assert [w for w in index if w >= 0] == list(range(len(WORDS)))
    return [tok for tok, w in zip(e.tokens, index, strict=True) if w >= 0]


def test_first_reads_chinese_words_on_the_bare_boundary_piece(encoder: TextEncoder) -> None:
    assert _chosen(encoder, "first") == ["▁", "▁", "▁中国", "▁", "▁", "▁"]


def test_first_content_reads_each_chinese_word_on_its_characters(encoder: TextEncoder) -> None:
    assert _chosen(encoder, "first-content") == ["北京", "是", "▁中国", "的", "首都", "。"]


def test_both_rules_agree_on_english(encoder: TextEncoder) -> None:
    [e], _ = encoder.encode_words([["Angela", "Merkel", "visited", "Beijing"]], [True])
    assert word_tokens(e, "first") == word_tokens(e, "first-content")
