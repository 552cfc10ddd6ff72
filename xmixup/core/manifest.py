"""The bundle manifest: file names, format versions and the schema of ``manifest.json``.

Format version 2 adds ``pad_id`` and ``special_tokens`` (read from the bundle's
``tokenizer.json`` at export); a version 1 manifest has neither, and a loader derives them from
its tokenizer by the same rule (``xmixup.core.special_tokens``).

Format version 3 adds ``vocabulary``: how many pieces the bundle's tokenizer and graph hold
(fewer than the checkpoint's when the export trimmed them) and the embedding table's precision.

``word_token`` (tag bundles only, optional in both versions): the token a tagged word is read
on (``xmixup.core.featurize.word_tokens``); a tag bundle without it was trained with "first".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xmixup import __version__ as XMIXUP_VERSION
from xmixup.core.special_tokens import SpecialTokens
from xmixup.core.vocab import INPUT_NAMES, SOURCE_PROBS_OUTPUT, TASK_OUTPUTS, WORD_TOKEN_RULES

FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = frozenset({1, 2, 3})
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
# The model card (written by `xmixup export`; older bundles have none). Listed in ``files``.
MODEL_CARD_NAME = "README.md"


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Vocabulary(BaseModel):
    """The pieces a bundle reads and how its embedding table is stored (format version 3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=1, description="pieces in tokenizer.json: the ids the graph reads")
    source_size: int = Field(ge=1, description="the checkpoint's pieces, before any trimming")
    embedding_precision: Literal["fp32", "fp16", "int8"]
    scripts: list[str] = Field(default_factory=list, description="scripts kept whole")
    corpus: list[str] = Field(default_factory=list, description="files whose pieces were kept")

    @model_validator(mode="after")
    def _no_larger_than_source(self) -> Vocabulary:
        if self.size > self.source_size:
            raise ValueError(f"size {self.size} exceeds source_size {self.source_size}")
        return self

    @property
    def trimmed(self) -> bool:
        return self.size < self.source_size


class Manifest(BaseModel):
    """``manifest.json``. Unknown keys are refused (a typo must not pass silently) except in the
    free-form ``parity``/``metrics``/``export`` dicts, which carry figures, not contract.
    ``pad_id`` and ``special_tokens`` are required from format version 2 and absent before;
    ``vocabulary`` is required from version 3 and absent before."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1)
    task: Literal["classify", "tag", "qa"]
    labels: list[str]
    tag_scheme: Literal["BIO"] | None = None
    word_token: str | None = None
    pair_input: bool = False
    method: str = "xmixup"
    # A request without a translation: "self" (the target read against itself; every bundle
    # before the field) or "unmixed" (the source stream's probabilities, the target with the
    # mixing off; X-Mixup classification). xmixup.core.vocab.NO_SOURCE_FALLBACKS.
    no_source_fallback: Literal["self", "unmixed"] = "self"
    backbone: str
    mixup_layer: int = Field(ge=0)
    lambda0: float
    max_length: int = Field(gt=0)
    doc_stride: int | None = Field(default=None, gt=0)
    max_query_length: int | None = Field(default=None, gt=0)
    max_answer_length: int | None = Field(default=None, gt=0)
    opset: int = Field(gt=0)
    precision: Literal["fp32", "fp16", "int8"]
    inputs: list[str]
    outputs: list[str]
    pad_id: int | None = Field(default=None, ge=0)
    special_tokens: SpecialTokens | None = None
    vocabulary: Vocabulary | None = None
    files: dict[str, FileEntry]
    parity: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    xmixup_version: str = XMIXUP_VERSION
    created_at: str = ""

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in INPUT_NAMES]
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; allowed: {list(INPUT_NAMES)}")
        if not value or len(set(value)) != len(value):
            raise ValueError("must list each graph input once, at least one")
        return value

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        # A manifest must not be able to point the loader outside its own directory.
        for name in value:
            if not name or Path(name).name != name or name in (".", "..", MANIFEST_NAME):
                raise ValueError(f"{name!r} is not a plain file name inside the bundle")
        for required in (MODEL_NAME, TOKENIZER_NAME):
            if required not in value:
                raise ValueError(f"must list {required!r}")
        return value

    @model_validator(mode="after")
    def _task_consistency(self) -> Manifest:
        missing = [o for o in TASK_OUTPUTS[self.task] if o not in self.outputs]
        if missing:
            raise ValueError(f"outputs: task {self.task!r} needs outputs {missing}")
        if self.no_source_fallback == "unmixed" and SOURCE_PROBS_OUTPUT not in self.outputs:
            raise ValueError(
                f"no_source_fallback: 'unmixed' reads the {SOURCE_PROBS_OUTPUT!r} output, which "
                "only X-Mixup classification graphs have"
            )
        if self.task in ("classify", "tag") and not self.labels:
            raise ValueError(f"labels: task {self.task!r} needs at least one label")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: duplicate label names")
        if self.tag_scheme is not None and self.task != "tag":
            raise ValueError("tag_scheme: only a 'tag' bundle has a tag scheme")
        if self.word_token is not None and self.task != "tag":
            raise ValueError("word_token: only a 'tag' bundle reads words on a token")
        if self.word_token is not None and self.word_token not in WORD_TOKEN_RULES:
            raise ValueError(f"word_token: {self.word_token!r} is not one of {WORD_TOKEN_RULES}")
        if self.task == "qa":
            for field in ("doc_stride", "max_query_length", "max_answer_length"):
                if getattr(self, field) is None:
                    raise ValueError(f"{field}: required for task 'qa'")
        # A stream is fed as ids + mask together; which streams depends on the method
        # (x-mixup: both; translate-train/zero-shot: target; translate-test: source).
        for stream in ("target", "source"):
            if (f"{stream}_input_ids" in self.inputs) != (
                f"{stream}_attention_mask" in self.inputs
            ):
                raise ValueError(f"inputs: {stream}_input_ids and _attention_mask come together")
        return self

    @model_validator(mode="after")
    def _tokens_by_version(self) -> Manifest:
        recorded = self.pad_id is not None, self.special_tokens is not None
        if (self.vocabulary is not None) != (self.format_version >= 3):
            raise ValueError("vocabulary: required from format version 3, absent before")
        if self.format_version == 1:
            if any(recorded):
                raise ValueError("pad_id, special_tokens: not fields of format version 1")
            return self
        if self.special_tokens is None or self.pad_id is None:
            raise ValueError("pad_id, special_tokens: required from format version 2")
        if self.pad_id != self.special_tokens.pad_id:
            raise ValueError(
                f"pad_id: {self.pad_id} differs from special_tokens' {self.special_tokens.pad_id}"
            )
        return self

    @property
    def word_token_rule(self) -> str:
        """The bundle's word-token rule; "first" when the manifest records none (older tag
        bundles were trained with it)."""
        return self.word_token or WORD_TOKEN_RULES[0]

    @property
    def uses_source(self) -> bool:
        """Whether the graph takes a source stream (translate-train / zero-shot do not)."""
        return "source_input_ids" in self.inputs

    @property
    def uses_target(self) -> bool:
        """Whether the graph takes a target stream (translate-test reads the source only)."""
        return "target_input_ids" in self.inputs
