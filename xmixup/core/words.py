"""The tagging word rule: how a string becomes the words a tagger labels.

Training data comes pre-split (``target_tokens``); a service caller may send a plain string,
which is split here so that the words it gets back are the words the model was taught on.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

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

Word = tuple[str, int, int]  # (text, start, end): character offsets, end exclusive


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


def split_words(text: str) -> list[Word]:
    """Split ``text`` into ``(word, start, end)`` by the rule in ``WORD_SPLITTING_RULE``."""
    words: list[Word] = []
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


def join_words(tokens: Sequence[str]) -> tuple[str, list[Word]]:
    """Pre-split tokens as one string (joined by single spaces) and their offsets into it."""
    words: list[Word] = []
    pos = 0
    for token in tokens:
        words.append((token, pos, pos + len(token)))
        pos += len(token) + 1
    return " ".join(tokens), words
