"""Row outputs → response results, per task, with the core's decoders (xmixup/core/decode.py).

Offsets index the caller's strings.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from service.batcher import RowResult
from service.preprocess import ClassifyPlan, QAPlan, TagPlan
from service.schemas import (
    Answer,
    ClassifyResult,
    Entity,
    QAResult,
    TaggedToken,
    TagResult,
)
from xmixup.core.decode import best_spans, bio_entities, word_tags
from xmixup.core.vocab import TRUST_OUTPUT


def _trust(source_used: bool, out: RowResult | None) -> float | None:
    """The item's translation trust; None without a source (the target stood in) or when the
    graph has no trust output."""
    if not source_used or out is None or TRUST_OUTPUT not in out.outputs:
        return None
    return float(out.outputs[TRUST_OUTPUT])


def classify_result(labels: list[str], plan: ClassifyPlan, out: RowResult) -> ClassifyResult:
    probs = out.outputs["probabilities"].astype(np.float64)
    best = int(np.argmax(probs))
    return ClassifyResult(
        label=labels[best],
        scores={label: float(p) for label, p in zip(labels, probs, strict=True)},
        mixup_ratio=float(out.outputs["mixup_ratio"]),
        translation_trust=_trust(plan.source_used, out),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def tag_result(labels: list[str], bio: bool, plan: TagPlan, out: RowResult) -> TagResult:
    tags = word_tags(out.outputs["logits"], plan.word_index, labels, len(plan.words))
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
        mixup_ratio=float(out.outputs["mixup_ratio"]),
        translation_trust=_trust(plan.source_used, out),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def qa_result(plan: QAPlan, outs: list[RowResult], top_k: int, max_answer_length: int) -> QAResult:
    """n-best spans over all windows, scored by start+end logit, normalised by softmax."""
    windows = [
        (o.outputs["start_logits"], o.outputs["end_logits"], offsets)
        for offsets, o in zip(plan.windows, outs, strict=True)
    ]
    spans = best_spans(plan.context, windows, max_answer_length=max_answer_length, top_k=top_k)
    ratio = float(np.mean([float(o.outputs["mixup_ratio"]) for o in outs])) if outs else 0.0
    return QAResult(
        answers=[Answer(text=s.text, start=s.start, end=s.end, score=s.probability) for s in spans],
        mixup_ratio=ratio,
        translation_trust=_trust(plan.source_used, outs[0] if outs else None),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )
