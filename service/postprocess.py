"""Row outputs → response results, per task. Pure numpy; offsets index the caller's strings."""

from __future__ import annotations

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

# Candidate starts/ends examined per window; the answer probability is normalised over the
# spans they form, independently of the top_k a client asks for.
N_BEST = 20


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classify_result(labels: list[str], plan: ClassifyPlan, out: RowResult) -> ClassifyResult:
    probs = out.outputs["probabilities"].astype(np.float64)
    best = int(np.argmax(probs))
    return ClassifyResult(
        label=labels[best],
        scores={label: float(p) for label, p in zip(labels, probs, strict=True)},
        mixup_ratio=float(out.outputs["mixup_ratio"]),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def bio_entities(tokens: list[TaggedToken], text: str) -> list[Entity]:
    """Decode BIO tags into spans. An ``I-X`` that does not continue an ``X`` span opens one
    (the lenient reading, as seqeval's default); ``O``, untagged words and other labels close."""
    entities: list[Entity] = []
    open_label: str | None = None
    begin = 0
    scores: list[float] = []

    def close(end_index: int) -> None:
        if open_label is None:
            return
        start, end = tokens[begin].start, tokens[end_index - 1].end
        entities.append(
            Entity(
                label=open_label,
                text=text[start:end],
                start=start,
                end=end,
                score=float(np.mean(scores)),
                token_start=begin,
                token_end=end_index,
            )
        )

    for k, tok in enumerate(tokens):
        tag = tok.tag or "O"
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == open_label
        if continues:
            scores.append(tok.score or 0.0)
            continue
        close(k)
        open_label, scores = None, []
        if prefix in ("B", "I") and label:
            open_label, begin, scores = label, k, [tok.score or 0.0]
    close(len(tokens))
    return entities


def tag_result(labels: list[str], bio: bool, plan: TagPlan, out: RowResult) -> TagResult:
    probs = _softmax(out.outputs["logits"].astype(np.float64))
    tokens = []
    for (word, start, end), pos in zip(plan.words, plan.first_token, strict=True):
        if pos is None:  # cut off by truncation (or a word the tokenizer maps to nothing)
            tokens.append(TaggedToken(text=word, start=start, end=end, tag=None, score=None))
            continue
        best = int(np.argmax(probs[pos]))
        tokens.append(
            TaggedToken(
                text=word, start=start, end=end, tag=labels[best], score=float(probs[pos, best])
            )
        )
    return TagResult(
        tokens=tokens,
        entities=bio_entities(tokens, plan.text) if bio else [],
        mixup_ratio=float(out.outputs["mixup_ratio"]),
        source_used=plan.source_used,
        truncated=plan.truncated,
    )


def qa_result(plan: QAPlan, outs: list[RowResult], top_k: int, max_answer_length: int) -> QAResult:
    """n-best spans over all windows, scored by start+end logit, normalised by softmax."""
    context = plan.context
    best: dict[tuple[int, int], float] = {}
    for window, out in zip(plan.windows, outs, strict=True):
        if not window.context_positions:
            continue
        start_logits = out.outputs["start_logits"]
        end_logits = out.outputs["end_logits"]
        ctx = np.asarray(window.context_positions)
        starts = ctx[np.argsort(-start_logits[ctx], kind="stable")[:N_BEST]]
        ends = ctx[np.argsort(-end_logits[ctx], kind="stable")[:N_BEST]]
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                char_start, char_end = window.offsets[s][0], window.offsets[e][1]
                # Metaspace/SentencePiece offsets can include the space before a word.
                while char_start < char_end and context[char_start].isspace():
                    char_start += 1
                while char_end > char_start and context[char_end - 1].isspace():
                    char_end -= 1
                if char_end <= char_start:
                    continue
                score = float(start_logits[s]) + float(end_logits[e])
                key = (char_start, char_end)
                if score > best.get(key, -np.inf):  # overlapping windows: keep the best
                    best[key] = score
    answers: list[Answer] = []
    if best:
        spans = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        raw = np.asarray([score for _, score in spans], dtype=np.float64)
        probs = _softmax(raw)
        for ((start, end), _), p in zip(spans[:top_k], probs[:top_k], strict=False):
            answers.append(Answer(text=context[start:end], start=start, end=end, score=float(p)))
    ratio = float(np.mean([float(o.outputs["mixup_ratio"]) for o in outs])) if outs else 0.0
    return QAResult(
        answers=answers,
        mixup_ratio=ratio,
        source_used=plan.source_used,
        truncated=plan.truncated,
    )
