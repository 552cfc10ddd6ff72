"""The core decoders on hand-made logits: word tags, BIO spans/entities, n-best answer spans."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from xmixup.core.decode import best_spans, bio_entities, bio_spans, token_spans, word_tags


def test_word_tags_read_first_subtokens_and_leave_cut_words_untagged() -> None:
    labels = ["O", "B-PER", "I-PER"]
    logits = np.array([[9, 0, 0], [0, 2, 0], [5, 0, 0], [0, 0, 1], [9, 9, 9]], dtype=np.float32)
    tags = word_tags(logits, [-1, 0, -1, 1, -1], labels, n_words=3)
    assert tags[0] is not None and tags[0].tag == "B-PER"
    assert tags[0].score == pytest.approx(np.exp(2) / (np.exp(2) + 2))
    assert tags[1] is not None and tags[1].tag == "I-PER"
    assert tags[2] is None  # no token left for the third word


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["I-PER", "I-PER", "B-PER", "I-LOC"], [("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4)]),
        (["B-PER", None, "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
        (["O", "O"], []),
        ([], []),
        (["B-ORG", "I-ORG", "I-ORG"], [("ORG", 0, 3)]),
    ],
)
def test_bio_spans(tags: list[str | None], spans: list[tuple[str, int, int]]) -> None:
    assert bio_spans(tags) == spans


def test_bio_spans_match_seqeval_default_mode() -> None:
    """Entity F1 counts what conlleval / seqeval's default mode counts."""
    get_entities = pytest.importorskip("seqeval.metrics.sequence_labeling").get_entities
    rng = random.Random(7)
    pool = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    for _ in range(500):
        tags = [rng.choice(pool) for _ in range(rng.randint(1, 9))]
        expected = [(label, s, e + 1) for label, s, e in get_entities(tags)]
        assert sorted(bio_spans(tags)) == sorted(expected), tags


@dataclass
class _Word:
    tag: str | None
    score: float | None
    start: int
    end: int


def test_bio_entities_carry_character_offsets_and_mean_scores() -> None:
    text = "Angela Merkel besucht Paris"
    words = [
        _Word("B-PER", 0.9, 0, 6),
        _Word("I-PER", 0.7, 7, 13),
        _Word("O", 0.99, 14, 21),
        _Word("B-LOC", None, 22, 27),
    ]
    ents = bio_entities(words, text)
    assert [(e.label, e.text, e.start, e.end, e.token_start, e.token_end) for e in ents] == [
        ("PER", "Angela Merkel", 0, 13, 0, 2),
        ("LOC", "Paris", 22, 27, 3, 4),
    ]
    assert ents[0].score == pytest.approx(0.8) and ents[1].score == 0.0


CONTEXT = "Paris is in France"
OFFSETS = [None, (0, 5), (5, 8), (8, 11), (11, 18), None]


def test_best_spans_rank_trim_and_normalise() -> None:
    start = np.array([9.0, 1.0, 0.0, 3.0, 2.0, 9.0])
    end = np.array([9.0, 0.0, 0.0, 0.0, 4.0, 9.0])
    spans = best_spans(CONTEXT, [(start, end, OFFSETS)], max_answer_length=30, top_k=3)
    # specials never answer; " in France" is trimmed to "in France"
    assert [(s.text, s.start, s.end, s.score) for s in spans] == [
        ("in France", 9, 18, 7.0),
        ("France", 12, 18, 6.0),
        ("Paris is in France", 0, 18, 5.0),
    ]
    scores = np.array([7.0, 6.0, 5.0, 4.0, 3.0, 1.0, 1.0, 1.0, 0.0, 0.0])  # all 10 candidates
    assert spans[0].probability == pytest.approx(np.exp(7) / np.exp(scores).sum())
    assert best_spans(CONTEXT, [(start, end, OFFSETS)], max_answer_length=1)[0].text == "France"


def test_best_spans_over_windows_keep_the_best_score_per_span() -> None:
    w1 = (np.array([0.0, 1, 0, 0, 5, 0]), np.array([0.0, 0, 0, 0, 5, 0]), OFFSETS)
    w2 = (np.array([0.0, 8, 0, 0, 6, 0]), np.array([0.0, 8, 0, 0, 6, 0]), OFFSETS)
    spans = best_spans(CONTEXT, [w1, w2], top_k=5)
    assert [(s.text, s.score) for s in spans[:2]] == [("Paris", 16.0), ("Paris is in France", 14.0)]
    assert [s.score for s in spans if s.text == "France"] == [12.0]  # w2's, not w1's 10
    assert sum(s.probability for s in best_spans(CONTEXT, [w1, w2], top_k=99)) == pytest.approx(1)
    assert best_spans(CONTEXT, [(np.zeros(2), np.zeros(2), [None, None])]) == []


def test_token_spans_limit_candidates_and_length() -> None:
    start = np.array([0.0, 4, 3, 2, 1])
    end = np.array([0.0, 1, 2, 3, 4])
    spans = token_spans(start, end, [1, 2, 3, 4], max_answer_length=2, n_best=2)
    # best starts 1, 2; best ends 4, 3; at most 2 tokens long
    assert sorted(spans) == [(2, 3, 6.0)]
    assert token_spans(start, end, [], max_answer_length=5) == []
