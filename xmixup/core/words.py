"""The tagging word rule: how a string becomes the words a tagger labels.

Training data comes pre-split (``target_tokens``); a service caller may send a plain string,
which is split here so that the words it gets back are the words the model was taught on.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Han and Japanese
# kana. A run of these characters is cut into words by ICU's dictionary-based word break
# iterator (icu4py bundles ICU and its dictionaries: no system library, no model download).
# ICU rather than per-language segmenters: one library covers all six scripts in 60 µs per
# sentence; measured against references in docs/API.md "Words".
_NO_SPACE_SCRIPTS: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0xA9E0, 0xA9FF),  # Myanmar extended-B
    (0xAA60, 0xAA7F),  # Myanmar extended-A
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B.. and compatibility supplement
)

WORD_SPLITTING_RULE = (
    "A string `target`/`source` is split into words at whitespace; every punctuation or symbol "
    "character (Unicode categories P*, S*) is a word of its own; text in scripts written "
    "without spaces (Thai, Lao, Khmer, Myanmar, Chinese, Japanese) is cut into words by ICU's "
    "dictionary-based word breaker. Send a list of strings instead to choose the words "
    "yourself. Offsets are character offsets into your string."
)

Word = tuple[str, int, int]  # (text, start, end): character offsets, end exclusive


def _in(ranges: tuple[tuple[int, int], ...], code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


def _segment(run: str, offset: int) -> list[Word]:
    """Words of a run of no-space-script characters, by ICU; one per character if ICU's
    segments ever failed to tile the run (then offsets could not be trusted)."""
    from icu4py.breakers import WordBreaker  # lazy: ~15 ms of ICU data load, only when needed

    pieces = list(WordBreaker(run, "root"))
    if "".join(pieces) != run:
        pieces = list(run)
    words, pos = [], offset
    for piece in pieces:
        words.append((piece, pos, pos + len(piece)))
        pos += len(piece)
    return words


def _kind(char: str) -> str:
    if char.isspace():
        return "space"
    if _in(_NO_SPACE_SCRIPTS, ord(char)):
        return "no-space"
    if unicodedata.category(char)[0] in "PS":
        return "single"
    return "word"


def split_words(text: str) -> list[Word]:
    """Split ``text`` into ``(word, start, end)`` by the rule in ``WORD_SPLITTING_RULE``."""
    words: list[Word] = []
    start, run_kind = -1, ""
    for i, char in enumerate(text + " "):  # the sentinel space closes the last run
        kind = _kind(char)
        if start >= 0 and kind != run_kind:
            run = text[start:i]
            words += _segment(run, start) if run_kind == "no-space" else [(run, start, i)]
            start = -1
        if kind == "single":
            words.append((char, i, i + 1))
        elif kind != "space" and start < 0:
            start, run_kind = i, kind
    return words


def join_words(tokens: Sequence[str]) -> tuple[str, list[Word]]:
    """Pre-split tokens as one string (joined by single spaces) and their offsets into it."""
    words: list[Word] = []
    pos = 0
    for token in tokens:
        words.append((token, pos, pos + len(token)))
        pos += len(token) + 1
    return " ".join(tokens), words
