"""Input items → model rows, per task, with the core featuriser (xmixup/core/featurize.py).

Each function returns the rows to batch and, per item, a *plan*: what postprocessing needs to
map the row outputs back to the caller's strings. Client mistakes raise a ``RequestError`` with
the offending field: 413 for a limit, 422 for content the model cannot take. The service and
``xmixup.Predictor`` both call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel
from tokenizers import Encoding

from xmixup.core.featurize import Offsets, TextEncoder, context_offsets, word_tokens
from xmixup.core.manifest import Manifest
from xmixup.core.request_errors import RequestError, field_error
from xmixup.core.rows import Row
from xmixup.core.schemas import ClassifyItem, QAItem, TagItem
from xmixup.core.words import Word, join_words, split_words


class ModelView(Protocol):
    """What featurising and decoding need of a loaded model (the service's ``ModelRuntime``,
    the ``Predictor``)."""

    @property
    def name(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def encoder(self) -> TextEncoder: ...


def _ids(ids: list[int]) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64)


def check_chars(items: Sequence[BaseModel], limit: int) -> None:
    """413 for any text field over ``limit`` characters (tokens of a list count together)."""
    for i, item in enumerate(items):
        for name, value in item:
            if value is None:
                continue
            size = sum(len(t) + 1 for t in value) - 1 if isinstance(value, list) else len(value)
            if size > limit:
                raise field_error(
                    413,
                    f"inputs.{i}.{name}",
                    f"is {size} characters; the limit is {limit} (XMIXUP_MAX_TEXT_CHARS)",
                    kind="too-large",
                )


def _too_long(i: int, name: str, n: int, limit: int) -> RequestError:
    return field_error(
        413,
        f"inputs.{i}.{name}",
        f"is {n} tokens; the model takes at most {limit}. Send shorter text or set "
        '"truncate": true',
        kind="too-large",
    )


# ---------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------
@dataclass
class ClassifyPlan:
    source_used: bool
    truncated: bool


def classify_rows(
    rt: ModelView, items: list[ClassifyItem], truncate: bool
) -> tuple[list[Row], list[ClassifyPlan]]:
    pair = rt.manifest.pair_input
    for i, item in enumerate(items):
        if pair and item.target_pair is None:
            raise field_error(
                422, f"inputs.{i}.target_pair", f"required: {rt.name} is a sentence-pair model"
            )
        if not pair and item.target_pair is not None:
            raise field_error(
                422, f"inputs.{i}.target_pair", f"{rt.name} classifies single sentences"
            )
    enc = rt.encoder
    limit = enc.info.max_length
    flags = [truncate] * len(items)
    targets: list[str | tuple[str, str]] = [
        (it.target, it.target_pair) if it.target_pair is not None else it.target for it in items
    ]
    t_enc, t_cut = enc.encode_texts(targets, flags)
    for i, e in enumerate(t_enc):
        if len(e.ids) > limit:
            raise _too_long(i, "target", len(e.ids), limit)
    uses_source = rt.manifest.uses_source
    with_source = [i for i, it in enumerate(items) if it.source is not None and uses_source]
    sources: list[str | tuple[str, str]] = []
    for i in with_source:
        src, src_pair = items[i].source, items[i].source_pair
        assert src is not None
        sources.append((src, src_pair) if src_pair is not None else src)
    s_enc, s_cut = enc.encode_texts(sources, [truncate] * len(sources))
    source_of = dict(zip(with_source, zip(s_enc, s_cut, strict=True), strict=True))
    rows: list[Row] = []
    plans: list[ClassifyPlan] = []
    for i, te in enumerate(t_enc):
        target_ids = _ids(te.ids)
        truncated = t_cut[i]
        if not uses_source:
            rows.append(Row(target_ids, None))
            plans.append(ClassifyPlan(False, truncated))
        elif i in source_of:
            se, cut = source_of[i]
            if len(se.ids) > limit:
                raise _too_long(i, "source", len(se.ids), limit)
            rows.append(Row(target_ids, _ids(se.ids)))
            plans.append(ClassifyPlan(True, truncated or cut))
        else:  # no translation: the target is its own source
            rows.append(Row(target_ids, target_ids))
            plans.append(ClassifyPlan(False, truncated))
    return rows, plans


# ---------------------------------------------------------------------------------------------
# tagging
# ---------------------------------------------------------------------------------------------
@dataclass
class TagPlan:
    text: str  # the string offsets index (the caller's, or pre-split tokens joined by spaces)
    words: list[Word]
    word_index: list[int]  # per token: the word read on it, -1 elsewhere (word_tokens)
    source_used: bool
    truncated: bool


def _words(value: str | list[str], loc: str) -> tuple[str, list[Word]]:
    if isinstance(value, list):
        return join_words(value)
    words = split_words(value)
    if not words:
        raise field_error(422, loc, "contains no words (only whitespace)")
    return value, words


def tag_rows(
    rt: ModelView, items: list[TagItem], truncate: bool
) -> tuple[list[Row], list[TagPlan]]:
    enc = rt.encoder
    limit = enc.info.max_length
    texts, word_lists = [], []
    for i, item in enumerate(items):
        text, words = _words(item.target, f"inputs.{i}.target")
        texts.append(text)
        word_lists.append(words)
    t_enc, t_cut = enc.encode_words(
        [[w for w, _, _ in ws] for ws in word_lists], [truncate] * len(items)
    )
    uses_source = rt.manifest.uses_source
    with_source = [i for i, it in enumerate(items) if it.source is not None and uses_source]
    src_words = []
    for i in with_source:
        src = items[i].source
        assert src is not None
        src_words.append([w for w, _, _ in _words(src, f"inputs.{i}.source")[1]])
    s_enc, s_cut = enc.encode_words(src_words, [truncate] * len(src_words))
    source_of = dict(zip(with_source, zip(s_enc, s_cut, strict=True), strict=True))
    rows: list[Row] = []
    plans: list[TagPlan] = []
    for i, te in enumerate(t_enc):
        if len(te.ids) > limit:
            raise _too_long(i, "target", len(te.ids), limit)
        target_ids = _ids(te.ids)
        if not uses_source:
            row, used, cut = Row(target_ids, None), False, False
        elif i in source_of:
            se, cut = source_of[i]
            if len(se.ids) > limit:
                raise _too_long(i, "source", len(se.ids), limit)
            row, used = Row(target_ids, _ids(se.ids)), True
        else:
            row, used, cut = Row(target_ids, target_ids), False, False
        rows.append(row)
        index = word_tokens(te, rt.manifest.word_token_rule)
        plans.append(TagPlan(texts[i], word_lists[i], index, used, t_cut[i] or cut))
    return rows, plans


# ---------------------------------------------------------------------------------------------
# question answering
# ---------------------------------------------------------------------------------------------
@dataclass
class QAPlan:
    context: str
    # per window, per token: character offsets into the context, None off the context
    windows: list[list[Offsets | None]] = field(default_factory=list)
    source_used: bool = False
    truncated: bool = False


def _cap_question(rt: ModelView, question: str, loc: str, truncate: bool) -> tuple[str, bool]:
    """Cut a question to the manifest's max_query_length tokens (or 413 when not truncating)."""
    limit = rt.encoder.max_query_length
    [(capped, n)] = rt.encoder.cap_questions([question])
    if n > limit and not truncate:
        raise field_error(
            413,
            loc,
            f"is {n} tokens; the model reads at most {limit} question tokens",
            kind="too-large",
        )
    return capped, n > limit


def _windows(rt: ModelView, question: str, context: str, loc: str) -> list[Encoding]:
    try:
        return rt.encoder.encode_windows([question], [context])[0]
    except Exception as exc:  # tokenizers refuses when the question leaves no room
        raise field_error(422, loc, f"cannot be encoded: {exc}") from None


def qa_rows(rt: ModelView, items: list[QAItem], truncate: bool) -> tuple[list[Row], list[QAPlan]]:
    uses_source = rt.manifest.uses_source
    rows: list[Row] = []
    plans: list[QAPlan] = []
    for i, item in enumerate(items):
        question, cut = _cap_question(rt, item.question, f"inputs.{i}.question", truncate)
        windows = _windows(rt, question, item.context, f"inputs.{i}.question")
        plan = QAPlan(item.context, truncated=cut)
        source_ids = None
        if uses_source and item.source_question is not None and item.source_context is not None:
            loc = f"inputs.{i}.source_question"
            s_question, s_cut = _cap_question(rt, item.source_question, loc, truncate)
            source_ids = _ids(_windows(rt, s_question, item.source_context, loc)[0].ids)
            plan.source_used = True
            plan.truncated = plan.truncated or s_cut
        for w in windows:
            plan.windows.append(context_offsets(w))
            target_ids = _ids(w.ids)
            if not uses_source:
                rows.append(Row(target_ids, None))
            else:  # without a translation each window is its own source
                rows.append(Row(target_ids, source_ids if source_ids is not None else target_ids))
        plans.append(plan)
    return rows, plans
