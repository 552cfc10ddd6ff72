"""The core featuriser on a tiny Unigram tokenizer: truncation, words, questions, windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import make_tiny_tokenizer
from xmixup.core.featurize import (
    POOLED_FROM,
    TextEncoder,
    context_offsets,
    effective_doc_stride,
    word_tokens,
)
from xmixup.core.words import join_words


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    make_tiny_tokenizer(out)
    return out / "tokenizer.json"


def test_sentences_and_pairs_truncate_only_when_allowed(tokenizer_json: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_json, max_length=10)
    long = "the cat sat on the mat and looked out of the window"
    (full, cut, pair), flags = enc.encode_texts(
        [long, long, ("the cat sat", "on the mat today")], [False, True, True]
    )
    assert len(full.ids) > 10 and flags[0] is False  # too long, left for the caller to refuse
    assert len(cut.ids) == 10 and flags[1] is True
    assert cut.ids[:-1] == full.ids[:9] and cut.ids[-1] == 2  # cut before the closing </s>
    assert len(pair.ids) == 10 and pair.ids[0] == 0 and pair.ids.count(2) == 3
    short, _ = enc.encode_texts(["the cat"], [True])
    assert short[0].ids == enc.plain.encode("the cat").ids  # under the limit: untouched


def test_words_first_subtokens(tokenizer_json: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_json, max_length=64)
    text, words = join_words(["Katzen", "schauen", "aus"])
    assert text == "Katzen schauen aus" and words[1] == ("schauen", 7, 14)
    [e], _ = enc.encode_words([[w for w, _, _ in words]], [True])
    assert e.tokens[:3] == ["<s>", "\u2581", "K"]  # the tiny Unigram splits off a bare "▁"
    first = word_tokens(e, "first")
    assert first == [-1, 0, -1, -1, -1, -1, 1, -1, -1, 2, -1]
    # "first-content" moves word 0 off its bare "▁" onto "K"; "▁scha" and "▁aus" stay
    assert word_tokens(e, "first-content") == [-1, -1, 0, -1, -1, -1, 1, -1, -1, 2, -1]


def test_first_content_skips_bare_boundary_pieces_with_content_after(
    tokenizer_json: Path,
) -> None:
    enc = TextEncoder.from_file(tokenizer_json, max_length=64)
    [cjk, lone], _ = enc.encode_words([["北京", "是"], ["\u2581", "the"]], [True, True])
    assert cjk.tokens == ["<s>", "\u2581", "北京", "\u2581", "是", "</s>"]
    assert word_tokens(cjk, "first") == [-1, 0, -1, 1, -1, -1]
    assert word_tokens(cjk, "first-content") == [-1, -1, 0, -1, 1, -1]
    # A word that is nothing but "▁" keeps it (no later sub-token to read it on); "the"
    # moves off its own bare "▁".
    assert lone.tokens == ["<s>", "\u2581", "\u2581", "the", "</s>"]
    assert lone.word_ids == [None, 0, 1, 1, None]
    assert word_tokens(lone, "first-content") == [-1, 0, -1, 1, -1]
    with pytest.raises(ValueError, match="word-token rule"):
        word_tokens(cjk, "last")


def test_questions_are_capped_and_windows_cover_the_context(tokenizer_json: Path) -> None:
    enc = TextEncoder.from_file(tokenizer_json, 40, doc_stride=8, max_query_length=4)
    question = "where did the cat sit on the mat"
    [(capped, n)] = enc.cap_questions([question])
    assert n > 4 and len(enc.plain.encode(capped, add_special_tokens=False).ids) == 4
    assert question.startswith(capped) and capped != question
    n_cat = len(enc.plain.encode("cat", add_special_tokens=False).ids)
    assert enc.cap_questions(["cat"]) == [("cat", n_cat)]
    context = " ".join(["the cat sat on the mat"] * 12)
    [windows] = enc.encode_windows([capped], [context])
    assert len(windows) > 2 and all(len(w.ids) <= 40 for w in windows)
    covered: set[int] = set()
    for w in windows:
        offsets = context_offsets(w)
        assert offsets[0] is None  # <s>, question and separators carry no context offsets
        question_tokens = [i for i, s in enumerate(w.sequence_ids) if s == 0]
        assert question_tokens and all(offsets[i] is None for i in question_tokens)
        for o in offsets:
            if o is not None:
                covered.update(range(*o))
    assert all(i in covered for i, ch in enumerate(context) if not ch.isspace())


def test_doc_stride_is_capped_to_the_room_left() -> None:
    assert effective_doc_stride(384, 64, 128) == 128
    assert effective_doc_stride(128, 64, 128) == 30  # (128 - 64 - 4) // 2
    assert effective_doc_stride(64, None, 128) == 30
    assert effective_doc_stride(16, 64, 128) == 0


def _view(e: object) -> tuple[object, ...]:
    return (e.ids, e.offsets, e.word_ids, e.sequence_ids, e.type_ids, e.attention_mask)  # type: ignore[attr-defined]


def test_a_few_items_encode_one_by_one_exactly_as_the_pooled_batch(tokenizer_json: Path) -> None:
    """Small batches skip the tokenizer's thread pool; the encodings must not change."""
    enc = TextEncoder.from_file(tokenizer_json, max_length=12, doc_stride=4, max_query_length=4)
    texts = ["the cat sat on the mat", "Katzen schauen aus dem Fenster", "the"]
    pairs = [("who", "the cat sat on the mat today and then"), ("the", "on the mat")]
    words = [["Katzen", "schauen", "aus"], ["the", "cat"]]
    many = POOLED_FROM  # the pooled path: the same items repeated up to the threshold
    for mode, items, kw in (
        (enc.plain, texts, {}),
        (enc.truncating, [*texts, ("the cat sat", "on the mat today and then")], {}),
        (enc.plain, words, {"is_pretokenized": True}),
        (enc.plain, texts, {"add_special_tokens": False}),
        (enc.windowing, pairs, {}),
    ):
        few = mode.encode_batch(items, **kw)
        pooled = mode.encode_batch((items * many)[:many], **kw)[: len(items)]
        assert len(items) < POOLED_FROM
        for a, b in zip(few, pooled, strict=True):
            assert _view(a) == _view(b)
            assert [_view(o) for o in a.overflowing] == [_view(o) for o in b.overflowing]
    assert [_view(o) for o in few[0].overflowing]  # the windowing pair did overflow


def test_the_encoder_owns_fixed_configurations(tokenizer_json: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(3)
    enc = TextEncoder(tok, 12, doc_stride=4, max_query_length=3)
    assert enc.plain.truncation is None and enc.plain.padding is None
    assert enc.truncating.truncation["max_length"] == 12
    assert enc.windowing is not None
    assert enc.windowing.truncation["strategy"] == "only_second"
    assert enc.windowing.truncation["stride"] == 2  # (12 - 3 - 4) // 2
    assert enc.max_query_length == 3
    assert TextEncoder(Tokenizer.from_file(str(tokenizer_json)), 12).max_query_length == 12


def _specials(tokenizer_json: Path) -> set[int]:
    """Control ids, <unk> aside: a character outside the vocabulary legitimately becomes it."""
    import json

    added = json.loads(tokenizer_json.read_text())["added_tokens"]
    return {t["id"] for t in added if t["special"] and t["content"] != "<unk>"}


def test_special_token_strings_are_text_in_training_and_serving(tokenizer_json: Path) -> None:
    """A literal "<pad>" or "</s>" in user text is text: no control id outside the positions
    the template adds, through the service's encoder and training's featuriser alike."""
    from transformers import PreTrainedTokenizerFast

    from training.features import Featurizer

    hostile = "a <pad> b </s> <s> <unk> <mask>"
    specials = _specials(tokenizer_json)
    enc = TextEncoder.from_file(tokenizer_json, max_length=64)
    (served,), _ = enc.encode_texts([hostile], [False])
    assert served.ids[0] == 0 and served.ids[-1] == 2
    assert not specials & set(served.ids[1:-1]), served.tokens
    assert enc.encode_texts(["<unk>"], [False])[0][0].ids != [0, 3, 2]
    (words,), _ = enc.encode_words([hostile.split()], [False])
    assert not specials & set(words.ids[1:-1]), words.tokens
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), pad_token="<pad>")
    feat = Featurizer("classify", hf, labels=["x", "y"], max_length=64)
    (trained,) = feat([{"id": "1", "target": hostile, "source": hostile, "label": "x"}])
    assert trained["target_input_ids"] == served.ids
    # Ordinary text is encoded exactly as the untouched tokenizer does.
    plain = "the cat sat on the mat"
    assert enc.encode_texts([plain], [False])[0][0].ids == hf.backend_tokenizer.encode(plain).ids
