"""Row outputs → results, per task, with the core's decoders (xmixup/core/decode.py).

A row's outputs are the graph's outputs by name, cut to the row (``xmixup.core.rows``).
Offsets index the caller's strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np

from xmixup.core.decode import best_spans, bio_entities, word_tags
from xmixup.core.preprocess import ClassifyPlan, ModelView, QAPlan, TagPlan
from xmixup.core.schemas import (
    Answer,
    ClassifyResult,
    Entity,
    QAResult,
    TaggedToken,
    TagResult,
)
from xmixup.core.vocab import SOURCE_PROBS_OUTPUT, TRUST_OUTPUT

Outputs = Mapping[str, np.ndarray]


def _trust(source_used: bool, out: Outputs | None) -> float | None:
    """The item's translation trust; None without a source (the target stood in) or when the
    graph has no trust output."""
    if not source_used or out is None or TRUST_OUTPUT not in out:
        return None
    return float(out[TRUST_OUTPUT])


def classify_result(
    labels: list[str], plan: ClassifyPlan, out: Outputs, no_source_fallback: str = "self"
) -> ClassifyResult:
    """``no_source_fallback`` "unmixed": an item without a translation is answered by the
    source stream, which read the target with no mixing (``SOURCE_PROBS_OUTPUT``); λ is 0."""
    unmixed = no_source_fallback == "unmixed" and not plan.source_used
    probs = out[SOURCE_PROBS_OUTPUT if unmixed else "probabilities"].astype(np.float64)
    best = int(np.argmax(probs))
    return ClassifyResult(
        label=labels[best],
        scores={label: float(p) for label, p in zip(labels, probs, strict=True)},
        mixup_ratio=0.0 if unmixed else float(out["mixup_ratio"]),
        translation_trust=_trust(plan.source_used, out),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def tag_result(labels: list[str], bio: bool, plan: TagPlan, out: Outputs) -> TagResult:
    tags = word_tags(out["logits"], plan.word_index, labels, len(plan.words))
    tokens = [
        TaggedToken(
            text=word,
            start=start,
            end=end,
            tag=tag.tag if tag is not None else None,  # None: cut off by truncation
            score=tag.score if tag is not None else None,
        )
        for (word, start, end), tag in zip(plan.words, tags, strict=True)
    ]
    return TagResult(
        tokens=tokens,
        entities=[Entity(**asdict(e)) for e in bio_entities(tokens, plan.text)] if bio else [],
        mixup_ratio=float(out["mixup_ratio"]),
        translation_trust=_trust(plan.source_used, out),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def qa_result(
    plan: QAPlan, outs: Sequence[Outputs], top_k: int, max_answer_length: int
) -> QAResult:
    """n-best spans over all windows, scored by start+end logit, normalised by softmax."""
    windows = [
        (o["start_logits"], o["end_logits"], offsets)
        for offsets, o in zip(plan.windows, outs, strict=True)
    ]
    spans = best_spans(plan.context, windows, max_answer_length=max_answer_length, top_k=top_k)
    ratio = float(np.mean([float(o["mixup_ratio"]) for o in outs])) if outs else 0.0
    return QAResult(
        answers=[Answer(text=s.text, start=s.start, end=s.end, score=s.probability) for s in spans],
        mixup_ratio=ratio,
        translation_trust=_trust(plan.source_used, outs[0] if outs else None),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def classify_results(
    model: ModelView, plans: Sequence[ClassifyPlan], outs: Sequence[Outputs]
) -> list[ClassifyResult]:
    """One result per item (each item is one row)."""
    labels, fallback = model.manifest.labels, model.manifest.no_source_fallback
    return [classify_result(labels, p, o, fallback) for p, o in zip(plans, outs, strict=True)]


def tag_results(
    model: ModelView, plans: Sequence[TagPlan], outs: Sequence[Outputs]
) -> list[TagResult]:
    """One result per item (each item is one row); entities for BIO models."""
    m = model.manifest
    bio = m.tag_scheme == "BIO"
    return [tag_result(m.labels, bio, p, o) for p, o in zip(plans, outs, strict=True)]


def qa_results(
    model: ModelView, plans: Sequence[QAPlan], outs: Sequence[Outputs], top_k: int
) -> list[QAResult]:
    """One result per item from its windows' rows (consecutive, in item order)."""
    max_answer = model.manifest.max_answer_length or 30
    results = []
    pos = 0
    for plan in plans:
        n = len(plan.windows)
        results.append(qa_result(plan, outs[pos : pos + n], top_k, max_answer))
        pos += n
    return results
