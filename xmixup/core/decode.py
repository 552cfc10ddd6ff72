"""Model outputs -> words' tags, BIO entities and answer spans: one decoder each.

Evaluation scores what the service answers: both read tags, entities and spans here, and
export verification compares spans with the same search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Candidate starts/ends examined per window; an answer's probability is normalised over the
# spans they form, independently of how many answers a caller asks for.
N_BEST = 20

Offsets = tuple[int, int]


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64."""
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------ tags
@dataclass(frozen=True)
class WordTag:
    tag: str
    score: float  # the tag's probability on the token the word is read on


def word_tags(
    logits: np.ndarray, word_index: Sequence[int], labels: Sequence[str], n_words: int
) -> list[WordTag | None]:
    """Per word: the most probable tag on the token it is read on; None for a word without tokens
    (cut off by truncation). ``word_index`` is the featuriser's per-token word index on a
    word's token (``xmixup.core.featurize.word_tokens``, -1 elsewhere)."""
    probs = softmax(logits)
    out: list[WordTag | None] = [None] * n_words
    for pos, word in enumerate(word_index):
        if word >= 0:
            best = int(np.argmax(probs[pos]))
            out[word] = WordTag(labels[best], float(probs[pos, best]))
    return out


def bio_spans(tags: Sequence[str | None]) -> list[tuple[str, int, int]]:
    """BIO tags -> ``(label, first word, end word exclusive)``. An ``I-X`` that does not continue
    an ``X`` span opens one (the lenient reading, as conlleval and seqeval's default); ``O``,
    untagged words and other labels close a span."""
    spans: list[tuple[str, int, int]] = []
    open_label: str | None = None
    begin = 0
    for k, tag in enumerate(tags):
        prefix, _, label = (tag or "O").partition("-")
        if prefix == "I" and label == open_label:
            continue
        if open_label is not None:
            spans.append((open_label, begin, k))
        open_label = label if prefix in ("B", "I") and label else None
        begin = k
    if open_label is not None:
        spans.append((open_label, begin, len(tags)))
    return spans


class TaggedWord(Protocol):
    @property
    def tag(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


@dataclass(frozen=True)
class Entity:
    label: str
    text: str
    start: int  # character offsets into the text, end exclusive
    end: int
    score: float  # mean tag probability of its words
    token_start: int  # word indices, end exclusive
    token_end: int


def bio_entities(words: Sequence[TaggedWord], text: str) -> list[Entity]:
    """The BIO entities of tagged words, with character offsets into ``text``."""
    entities = []
    for label, begin, end in bio_spans([w.tag for w in words]):
        start, stop = words[begin].start, words[end - 1].end
        score = float(np.mean([w.score or 0.0 for w in words[begin:end]]))
        entities.append(Entity(label, text[start:stop], start, stop, score, begin, end))
    return entities


# ------------------------------------------------------------------------------------ spans
@dataclass(frozen=True)
class Span:
    text: str
    start: int  # character offsets into the context, end exclusive
    end: int
    score: float  # start logit + end logit
    probability: float  # softmax of the score over every candidate span of the example


def token_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    positions: Sequence[int],
    max_answer_length: int,
    n_best: int = N_BEST,
) -> list[tuple[int, int, float]]:
    """Candidate ``(start, end, score)`` token spans: the ``n_best`` best starts and ends among
    ``positions``, start <= end, at most ``max_answer_length`` tokens."""
    pos = np.asarray(positions, dtype=np.int64)
    if pos.size == 0:
        return []
    starts = pos[np.argsort(-start_logits[pos], kind="stable")[:n_best]]
    ends = pos[np.argsort(-end_logits[pos], kind="stable")[:n_best]]
    return [
        (int(s), int(e), float(start_logits[s]) + float(end_logits[e]))
        for s in starts
        for e in ends
        if s <= e < s + max_answer_length
    ]


def _trim(context: str, start: int, end: int) -> tuple[int, int]:
    # Metaspace/SentencePiece offsets can include the space before a word.
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def best_spans(
    context: str,
    windows: Sequence[tuple[np.ndarray, np.ndarray, Sequence[Offsets | None]]],
    *,
    max_answer_length: int = 30,
    top_k: int = 1,
    n_best: int = N_BEST,
) -> list[Span]:
    """The ``top_k`` best distinct answers over all doc-stride windows of one example.

    Each window is (start logits, end logits, offsets) with ``offsets[i]`` the character span
    of token i in ``context``, None for question / special tokens (which never answer). A span
    found in overlapping windows keeps its best score; spans empty after trimming whitespace
    are dropped. Ranked by score; on an exact tie the shorter, then the earlier span first.
    Empty when no window has a context token.
    """
    best: dict[tuple[int, int], float] = {}
    for start_logits, end_logits, offsets in windows:
        positions = [i for i, o in enumerate(offsets) if o is not None]
        for s, e, score in token_spans(
            start_logits, end_logits, positions, max_answer_length, n_best
        ):
            key = _trim(context, offsets[s][0], offsets[e][1])  # type: ignore[index]
            if key[1] > key[0] and score > best.get(key, -np.inf):
                best[key] = score
    if not best:
        return []
    # exact ties: the shorter answer, then the earlier one
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0][1] - kv[0][0], kv[0][0]))
    probs = softmax(np.asarray([score for _, score in ranked]))
    return [
        Span(context[s:e], s, e, score, float(p))
        for ((s, e), score), p in zip(ranked[:top_k], probs[:top_k], strict=True)
    ]
