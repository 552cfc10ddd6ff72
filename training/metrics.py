"""Task metrics: accuracy, conlleval entity F1, SQuAD EM/F1 with MLQA-style normalisation.

Numpy / stdlib only, so the metric code runs the same for PyTorch checkpoints and onnxruntime
bundles; entities are read with the service's BIO decoder (``xmixup/core/decode.py``). Scores
are percentages (0-100) as in the paper tables.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from xmixup.core.decode import bio_spans

# ----------------------------------------------------------------------------- QA normalisation

# MLQA's evaluation script strips every Unicode punctuation character (category P*), not just
# ASCII punctuation; answers in zh/ar/hi carry their own punctuation marks.
_PUNCT = frozenset(
    {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")}
    | set(string.punctuation)
)

# MLQA's per-language article lists (mlqa_evaluation_v1.py); other languages strip nothing.
_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
}

# Scripts written without spaces between words: each character is a token (MLQA's "mixed
# segmentation" for zh, extended to Japanese kana, Thai, Lao, Khmer and Myanmar; a per-character
# F1 for th is the usual convention since no standard word segmenter is assumed).
_NO_SPACE_CHAR = re.compile(
    "["
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "]"
)

# Data files name languages as ISO 639-1 ("de") or FLORES codes ("deu_Latn").
_ISO3_TO_1 = {"eng": "en", "spa": "es", "vie": "vi", "deu": "de", "arb": "ar", "ara": "ar"}


def base_lang(lang: str) -> str:
    """'deu_Latn' -> 'de', 'zh-CN' -> 'zh', 'en' -> 'en'."""
    code = re.split(r"[_-]", lang.strip().lower(), maxsplit=1)[0]
    return _ISO3_TO_1.get(code, code)


def qa_tokens(text: str) -> list[str]:
    """Whitespace tokens, with every character of a no-space script a token of its own."""
    out: list[str] = []
    buf: list[str] = []
    for ch in text:
        if _NO_SPACE_CHAR.match(ch):
            out.extend("".join(buf).split())
            buf = []
            out.append(ch)
        else:
            buf.append(ch)
    out.extend("".join(buf).split())
    return out


def normalize_answer(text: str, lang: str) -> str:
    """MLQA normalisation: lower-case, drop punctuation, drop articles, re-join tokens."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    articles = _ARTICLES.get(base_lang(lang))
    if articles is not None:
        text = articles.sub(" ", text)
    return " ".join(qa_tokens(text))


def qa_exact(prediction: str, gold: str, lang: str) -> float:
    return float(normalize_answer(prediction, lang) == normalize_answer(gold, lang))


def qa_f1(prediction: str, gold: str, lang: str) -> float:
    pred = normalize_answer(prediction, lang).split()
    ref = normalize_answer(gold, lang).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def qa_scores(prediction: str, golds: Sequence[str], lang: str) -> tuple[float, float]:
    """(EM, F1) of one prediction against the best-matching gold answer, in [0, 1]."""
    if not golds:
        raise ValueError("a QA item needs at least one gold answer")
    em = max(qa_exact(prediction, g, lang) for g in golds)
    f1 = max(qa_f1(prediction, g, lang) for g in golds)
    return em, f1


# ----------------------------------------------------------------------------- aggregation


def _per_lang(values: Iterable[tuple[str, float]]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for lang, v in values:
        groups[lang].append(v)
    return {lang: 100.0 * float(np.mean(vs)) for lang, vs in sorted(groups.items())}


def summarize(per_lang: Mapping[str, float], metric: str, counts: Mapping[str, int]) -> dict:
    """{"metric", "avg" (unweighted mean over languages, as the paper reports), "per_lang", "n"}."""
    avg = float(np.mean(list(per_lang.values()))) if per_lang else float("nan")
    return {"metric": metric, "avg": avg, "per_lang": dict(per_lang), "n": dict(counts)}


def accuracy_by_lang(langs: Sequence[str], preds: Sequence[int], golds: Sequence[int]) -> dict:
    """Classification accuracy per language (items)."""
    per = _per_lang((lang, float(p == g)) for lang, p, g in zip(langs, preds, golds, strict=True))
    return summarize(per, "accuracy", Counter(langs))


def word_accuracy_by_lang(
    langs: Sequence[str], preds: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]
) -> dict:
    """Tagging accuracy (POS) per language over words (micro within a language)."""
    pairs: list[tuple[str, float]] = []
    for lang, p, g in zip(langs, preds, golds, strict=True):
        if len(p) != len(g):
            raise ValueError(f"prediction has {len(p)} tags for {len(g)} gold tags")
        pairs.extend((lang, float(a == b)) for a, b in zip(p, g, strict=True))
    return summarize(_per_lang(pairs), "accuracy", Counter(langs))


def word_accuracy_per_item(
    preds: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]
) -> list[float]:
    """Each item's share of correctly tagged words, in [0, 1] (0 for an item without words)."""
    return [
        sum(a == b for a, b in zip(p, g, strict=True)) / len(g) if g else 0.0
        for p, g in zip(preds, golds, strict=True)
    ]


def _f1(correct: int, predicted: int, gold: int) -> float:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def entity_f1_by_lang(
    langs: Sequence[str], preds: Sequence[Sequence[str]], golds: Sequence[Sequence[str]]
) -> dict:
    """Entity F1 per language for BIO tags: micro over exact (label, start, end) matches, as
    conlleval and seqeval's default mode count them."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # correct, predicted, gold
    for lang, p, g in zip(langs, preds, golds, strict=True):
        if len(p) != len(g):
            raise ValueError(f"prediction has {len(p)} tags for {len(g)} gold tags")
        pred, gold = set(bio_spans(p)), set(bio_spans(g))
        c = counts[lang]
        c[0], c[1], c[2] = c[0] + len(pred & gold), c[1] + len(pred), c[2] + len(gold)
    per = {lang: 100.0 * _f1(*c) for lang, c in sorted(counts.items())}
    return summarize(per, "f1", Counter(langs))


def squad_by_lang(
    langs: Sequence[str], predictions: Sequence[str], golds: Sequence[Sequence[str]]
) -> dict:
    """SQuAD EM/F1 per language with MLQA normalisation; ``avg``/``per_lang`` carry F1."""
    ems, f1s = [], []
    for lang, pred, gold in zip(langs, predictions, golds, strict=True):
        em, f1 = qa_scores(pred, gold, lang)
        ems.append((lang, em))
        f1s.append((lang, f1))
    out = summarize(_per_lang(f1s), "f1", Counter(langs))
    em_per = _per_lang(ems)
    out["em"] = {"avg": float(np.mean(list(em_per.values()))), "per_lang": em_per}
    return out
