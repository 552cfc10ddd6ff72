"""The JSONL record schemas per task (pydantic models) and their per-field checks.

A record that fails a check names its field (``FieldError``), so the reader in
``training/data/schema.py`` can report ``file:line: field 'x': what is wrong``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NonEmptyStr = Field(min_length=1)


class BaseRecord(BaseModel):
    # strict: a label written as 1 instead of "1" or tokens given as a string are user errors,
    # not something to coerce silently. extra="forbid": a misspelt optional field
    # ("sorce_bt") would otherwise be ignored without a word.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=False)

    id: str = NonEmptyStr
    lang: str = NonEmptyStr
    # The parallel group (row index, sentence id, article title): an item and its translations
    # share it, so splits and leakage checks work on it. Optional for hand-written files.
    group: str | None = None
    # Free-form provenance; never read by training.
    meta: dict[str, Any] | None = None


class ClassificationRecord(BaseRecord):
    target: str = NonEmptyStr
    target_pair: str | None = None
    source: str = NonEmptyStr
    source_pair: str | None = None
    source_bt: str | None = None
    source_bt_pair: str | None = None
    label: str = NonEmptyStr

    @model_validator(mode="after")
    def _pairs_consistent(self) -> ClassificationRecord:
        # A pair task must be a pair task on every stream, or the two encoders see different
        # input shapes (one sentence vs two) for the same item.
        paired = self.target_pair is not None
        if (self.source_pair is not None) != paired:
            missing = "source_pair" if paired else "target_pair"
            raise FieldError(missing, "must be given when the other side has a pair text")
        if self.source_bt is not None and (self.source_bt_pair is not None) != paired:
            raise FieldError(
                "source_bt_pair", "must be given exactly when target_pair is (pair task)"
            )
        if self.source_bt is None and self.source_bt_pair is not None:
            raise FieldError("source_bt", "missing while source_bt_pair is given")
        for name in ("target_pair", "source_pair", "source_bt", "source_bt_pair"):
            if getattr(self, name) == "":
                raise FieldError(name, "is empty")
        return self


class TaggingRecord(BaseRecord):
    target_tokens: list[str] = Field(min_length=1)
    source_tokens: list[str] = Field(min_length=1)
    source_bt_tokens: list[str] | None = None
    # Tags of source_bt_tokens when the back-translation is noise over the source (the noise
    # model keeps tags aligned); a real MT back-translation has none.
    source_bt_tags: list[str] | None = None
    target_tags: list[str] | None = None
    source_tags: list[str]
    # Pseudo-labels: per target token the label distribution (order = the label list).
    target_tag_probs: list[list[float]] | None = None

    @model_validator(mode="after")
    def _aligned(self) -> TaggingRecord:
        _check_tokens("target_tokens", self.target_tokens)
        _check_tokens("source_tokens", self.source_tokens)
        if len(self.source_tags) != len(self.source_tokens):
            raise FieldError(
                "source_tags",
                f"has {len(self.source_tags)} tags for {len(self.source_tokens)} source_tokens",
            )
        if self.target_tags is not None and len(self.target_tags) != len(self.target_tokens):
            raise FieldError(
                "target_tags",
                f"has {len(self.target_tags)} tags for {len(self.target_tokens)} target_tokens",
            )
        if self.source_bt_tokens is not None:
            _check_tokens("source_bt_tokens", self.source_bt_tokens)
            if not self.source_bt_tokens:
                raise FieldError("source_bt_tokens", "is empty")
        if self.source_bt_tags is not None and (
            self.source_bt_tokens is None or len(self.source_bt_tags) != len(self.source_bt_tokens)
        ):
            raise FieldError("source_bt_tags", "must have one tag per source_bt_tokens token")
        if self.target_tag_probs is not None:
            if len(self.target_tag_probs) != len(self.target_tokens):
                raise FieldError(
                    "target_tag_probs",
                    f"has {len(self.target_tag_probs)} rows for "
                    f"{len(self.target_tokens)} target_tokens",
                )
            width = len(self.target_tag_probs[0]) if self.target_tag_probs else 0
            for i, row in enumerate(self.target_tag_probs):
                if len(row) != width or width == 0:
                    raise FieldError(f"target_tag_probs[{i}]", f"has {len(row)} values")
                # An all-zero row marks a word without a label (e.g. unaligned by
                # `xmixup project-tags`): the soft-label loss does not count it.
                mass = sum(row)
                if any(not (0.0 <= v <= 1.0) for v in row) or not (
                    math.isclose(mass, 1.0, abs_tol=1e-3) or mass == 0.0
                ):
                    raise FieldError(
                        f"target_tag_probs[{i}]", "is neither a probability distribution nor zeros"
                    )
        return self


class Answer(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    text: str = NonEmptyStr
    answer_start: int = Field(ge=0)


class QARecord(BaseRecord):
    question: str = NonEmptyStr
    context: str = NonEmptyStr
    answers: list[Answer] = Field(min_length=1)
    source_question: str = NonEmptyStr
    source_context: str = NonEmptyStr
    # May be empty: a translated source need not contain a findable answer span; training then
    # skips the source-side task loss for that item.
    source_answers: list[Answer]
    source_bt_question: str | None = None
    source_bt_context: str | None = None
    # Answers re-located in source_bt_context when it is noise over the source context.
    source_bt_answers: list[Answer] | None = None

    @model_validator(mode="after")
    def _spans(self) -> QARecord:
        _check_spans("answers", self.answers, self.context)
        _check_spans("source_answers", self.source_answers, self.source_context)
        if (self.source_bt_question is None) != (self.source_bt_context is None):
            raise FieldError(
                "source_bt_context" if self.source_bt_context is None else "source_bt_question",
                "source_bt_question and source_bt_context come together",
            )
        if self.source_bt_answers is not None:
            if self.source_bt_context is None:
                raise FieldError("source_bt_answers", "given without source_bt_context")
            _check_spans("source_bt_answers", self.source_bt_answers, self.source_bt_context)
        return self


RECORD_TYPES: dict[str, type[BaseRecord]] = {
    "classify": ClassificationRecord,
    "tag": TaggingRecord,
    "qa": QARecord,
}


class FieldError(ValueError):
    """A validation failure that knows its field (pydantic's model validators do not)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def _check_tokens(name: str, tokens: Sequence[str]) -> None:
    for i, tok in enumerate(tokens):
        # An empty or all-space word gives no sub-tokens, so its tag would have no position.
        if not tok.strip():
            raise FieldError(f"{name}[{i}]", "is an empty or whitespace-only token")


def _check_spans(name: str, answers: Sequence[Answer], context: str) -> None:
    for i, ans in enumerate(answers):
        found = context[ans.answer_start : ans.answer_start + len(ans.text)]
        if found != ans.text:
            raise FieldError(
                f"{name}[{i}].answer_start",
                f"answer text {ans.text[:40]!r} is not at offset {ans.answer_start} of the "
                f"context (found {found[:40]!r})",
            )
