"""The one pad-id / special-token rule, on tokenizers of both families and through transformers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.toy_bundle import SPECIALS, toy_tokenizer
from xmixup.core.special_tokens import (
    FALLBACK_PAD_ID,
    SpecialToken,
    pad_id_of,
    read_special_tokens,
    special_tokens_of,
)
from xmixup.errors import UserError


def _word_level(path: Path, vocab: dict[str, int]) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=next(iter(vocab))))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def test_sentencepiece_spellings_are_read_at_their_ids(tmp_path: Path) -> None:
    toy_tokenizer(tmp_path / "tokenizer.json")
    special = read_special_tokens(tmp_path / "tokenizer.json")
    assert {role: (t.token, t.id) for role, t in special if t is not None} == {
        "bos": ("<s>", SPECIALS["<s>"]),
        "eos": ("</s>", SPECIALS["</s>"]),
        "unk": ("<unk>", SPECIALS["<unk>"]),
        "pad": ("<pad>", SPECIALS["<pad>"]),
        "mask": ("<mask>", SPECIALS["<mask>"]),
    }
    # "<pad>" wins over the "[PAD]" the vocabulary also has, as the service always chose.
    assert special.pad_id == 3


def test_wordpiece_spellings(tmp_path: Path) -> None:
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3, "hello": 4, "[PAD]": 5}
    special = read_special_tokens(_word_level(tmp_path / "bert.json", vocab))
    assert special.bos == SpecialToken(token="[CLS]", id=1)
    assert special.eos == SpecialToken(token="[SEP]", id=2)
    assert special.unk == SpecialToken(token="[UNK]", id=0)
    assert special.mask == SpecialToken(token="[MASK]", id=3)
    assert special.pad_id == 5


def test_no_pad_token_pads_with_the_fallback(tmp_path: Path) -> None:
    special = read_special_tokens(_word_level(tmp_path / "t.json", {"<unk>": 0, "a": 1, "b": 2}))
    assert special.pad is None and special.bos is None
    assert special.pad_id == FALLBACK_PAD_ID == 0


def test_a_transformers_tokenizer_gives_what_its_file_gives(tmp_path: Path) -> None:
    """Training reads the pad id from its transformers tokenizer, the service from the bundle's
    tokenizer.json: the same rule, hence the same id; and the tiny backbone's (XLM-R layout)
    is the id transformers itself reports, so training pads as before."""
    from transformers import AutoTokenizer

    from tests.tiny import PAD_ID, make_tiny_tokenizer

    make_tiny_tokenizer(tmp_path)
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    assert pad_id_of(hf) == read_special_tokens(tmp_path / "tokenizer.json").pad_id
    assert pad_id_of(hf) == hf.pad_token_id == PAD_ID
    assert special_tokens_of(hf).mask == SpecialToken(token="<mask>", id=hf.mask_token_id)


def test_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"version": "1.0"}')
    with pytest.raises(UserError, match="not a tokenizer file"):
        read_special_tokens(bad)
