"""Tokenisation for serving: word splitting for tagging and a thread-safe tokenizer wrapper.

The rules mirror docs/ARCHITECTURE.md ("Tokenisation rules shared by training, export and
service"): sentence pairs are encoded with ``tokenizer.encode(text, pair)`` and truncated
longest-first to the manifest's ``max_length``; tagging encodes pre-split words
(``is_pretokenized``) and reads each word's label from its first sub-token; QA encodes
``question`` + ``context`` with context-only truncation and ``doc_stride`` windows.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from xmixup.core.bundle import effective_doc_stride

# Scripts written without spaces between words. Splitting them on whitespace would tag a whole
# sentence as one word, so a string in these scripts is refused (the caller pre-splits it).
_UNSEGMENTED_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0E00, 0x0E7F, "Thai"),
    (0x0E80, 0x0EFF, "Lao"),
    (0x1000, 0x109F, "Myanmar"),
    (0xA9E0, 0xA9FF, "Myanmar"),
    (0xAA60, 0xAA7F, "Myanmar"),
    (0x1780, 0x17FF, "Khmer"),
    (0x19E0, 0x19FF, "Khmer"),
)
# Han ideographs and Japanese kana are emitted one character per word (as BERT's basic
# tokenizer does for Han): without a segmenter this never merges a clause into one "word".
_CHAR_PER_WORD: tuple[tuple[int, int], ...] = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B.. and compatibility supplement
)

WORD_SPLITTING_RULE = (
    "A string `target`/`source` is split into words at whitespace; every punctuation or symbol "
    "character (Unicode categories P*, S*) is a word of its own; Chinese characters and Japanese "
    "kana are one word each. Thai, Lao, Khmer and Myanmar are written without spaces and this "
    "server has no segmenter for them: send such text as pre-split tokens (a list of strings), "
    "otherwise the request is refused with 422. Offsets are character offsets into your string."
)


class UnsegmentedScript(ValueError):
    """A string in a script written without spaces, which the word splitter cannot split."""

    def __init__(self, script: str, position: int) -> None:
        super().__init__(
            f"{script} text (character {position}) is written without spaces between words and "
            "this server has no word segmenter for it; send pre-split tokens (a list of strings)"
        )
        self.script = script


def _in(ranges: tuple[tuple[int, int], ...], code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split ``text`` into ``(word, start, end)`` by the rule in ``WORD_SPLITTING_RULE``."""
    words: list[tuple[str, int, int]] = []
    start = -1
    for i, char in enumerate(text):
        code = ord(char)
        for lo, hi, script in _UNSEGMENTED_SCRIPTS:
            if lo <= code <= hi:
                raise UnsegmentedScript(script, i)
        if char.isspace():
            boundary, single = True, False
        elif _in(_CHAR_PER_WORD, code) or unicodedata.category(char)[0] in "PS":
            boundary, single = True, True
        else:
            boundary, single = False, False
        if boundary:
            if start >= 0:
                words.append((text[start:i], start, i))
                start = -1
            if single:
                words.append((char, i, i + 1))
        elif start < 0:
            start = i
    if start >= 0:
        words.append((text[start:], start, len(text)))
    return words


@dataclass(frozen=True)
class TokenizerInfo:
    max_length: int
    special_single: int
    special_pair: int


class TextEncoder:
    """A bundle's ``tokenizer.json`` in three fixed configurations.

    ``tokenizers.Tokenizer`` keeps truncation as mutable state, so instead of toggling it per
    call (a race between threads) each configuration is its own immutable copy.
    """

    def __init__(
        self,
        tokenizer_path: Path,
        max_length: int,
        doc_stride: int | None = None,
        max_query_length: int | None = None,
    ) -> None:
        base = Tokenizer.from_file(str(tokenizer_path))
        base.no_padding()
        base.no_truncation()
        self.plain = base
        self.truncating = Tokenizer.from_str(base.to_str())
        self.truncating.enable_truncation(max_length, strategy="longest_first")
        self.windowing: Tokenizer | None = None
        if doc_stride is not None:
            # doc_stride is the overlap between consecutive context windows, as in HF run_qa;
            # capped exactly as training capped it (a short max_length leaves less room).
            stride = effective_doc_stride(max_length, max_query_length, doc_stride)
            self.windowing = Tokenizer.from_str(base.to_str())
            self.windowing.enable_truncation(max_length, stride=stride, strategy="only_second")
        self.info = TokenizerInfo(
            max_length=max_length,
            special_single=base.num_special_tokens_to_add(False),
            special_pair=base.num_special_tokens_to_add(True),
        )

    def encode_texts(
        self, texts: list[str | tuple[str, str]], truncate: list[bool]
    ) -> tuple[list[Encoding], list[bool]]:
        """Encode strings or pairs; returns encodings and whether each was truncated.

        Items over ``max_length`` are re-encoded with truncation only when their flag says so;
        otherwise the untruncated (too long) encoding is returned and the caller refuses it.
        """
        encodings = self.plain.encode_batch(list(texts))
        limit = self.info.max_length
        over = [i for i, e in enumerate(encodings) if len(e.ids) > limit and truncate[i]]
        if over:
            redone = self.truncating.encode_batch([texts[i] for i in over])
            for i, enc in zip(over, redone, strict=True):
                encodings[i] = enc
        return encodings, [i in set(over) for i in range(len(texts))]

    def encode_words(
        self, word_lists: list[list[str]], truncate: list[bool]
    ) -> tuple[list[Encoding], list[bool]]:
        """Encode pre-split words (``is_pretokenized``), truncating where allowed."""
        encodings = self.plain.encode_batch(word_lists, is_pretokenized=True)
        limit = self.info.max_length
        over = [i for i, e in enumerate(encodings) if len(e.ids) > limit and truncate[i]]
        if over:
            redone = self.truncating.encode_batch(
                [word_lists[i] for i in over], is_pretokenized=True
            )
            for i, enc in zip(over, redone, strict=True):
                encodings[i] = enc
        return encodings, [i in set(over) for i in range(len(word_lists))]

    def count_tokens(self, text: str) -> Encoding:
        """The encoding of ``text`` without special tokens (for per-field length limits)."""
        return self.plain.encode(text, add_special_tokens=False)

    def encode_windows(self, question: str, context: str) -> list[Encoding]:
        """``question`` + ``context`` split into doc-stride windows over the context."""
        assert self.windowing is not None, "windowing needs the manifest's doc_stride"
        first = self.windowing.encode(question, context)
        return [first, *first.overflowing]
