"""Input items and results of the three tasks: the shapes the HTTP API (``service/schemas.py``
wraps them in requests and responses) and the Python API (``xmixup.Predictor``) share.

Items forbid unknown fields so a typo (``"text"`` for ``"target"``) is an error naming it,
not a silently ignored field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from xmixup.core.words import WORD_SPLITTING_RULE


def _encodable(value: str) -> str:
    # Lone surrogates survive JSON decoding but cannot be UTF-8 encoded for the tokenizer.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an unpaired surrogate (invalid Unicode)") from None
    return value


Text = Annotated[str, Field(min_length=1), AfterValidator(_encodable)]
Token = Annotated[str, Field(min_length=1), AfterValidator(_encodable)]
Tokens = Annotated[list[Token], Field(min_length=1)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# Common response parts
# ---------------------------------------------------------------------------------------------
class _Result(BaseModel):
    mixup_ratio: float = Field(
        description="λ: how much of the source (translation) stream was mixed into the target "
        "stream (0 … λ0; 0 when the model does not mix, or when a classifier whose bundle "
        "answers requests without a translation with the mixing off got none). Averaged over "
        "windows for long QA contexts. It barely moves between a "
        "clean and a badly degraded translation, so it is not a measure of the translation's "
        "quality: `translation_trust` is."
    )
    translation_trust: float | None = Field(
        default=None,
        description="Probability that `source` is a faithful translation of the target, from "
        "the model's translation-trust head (read off the source stream at the mixup layer), "
        "calibrated on the training data's noise model (a clean English source vs the same "
        "source with about 30 % of its words dropped, swapped or substituted). It is not a "
        "quality estimate for the target or for the prediction. null when no source was "
        "given or the model has no trust head. Long QA contexts: the first window's value.",
        examples=[0.97],
    )
    source_used: bool = Field(
        description="False when no source was given (the target served as its own source, or "
        "was read with the mixing off: the bundle's `no_source_fallback`) or the model takes no "
        "source stream."
    )
    truncated: bool = Field(
        default=False, description="True when an input was cut to the model's max_length."
    )


# ---------------------------------------------------------------------------------------------
# /classify
# ---------------------------------------------------------------------------------------------
class ClassifyItem(_Item):
    target: Text = Field(description="Text in the target language (the user's language).")
    target_pair: Text | None = Field(
        default=None, description="Second sentence, for pair models (NLI, paraphrase)."
    )
    source: Text | None = Field(
        default=None, description="English (source-language) translation of `target`."
    )
    source_pair: Text | None = Field(default=None, description="Translation of `target_pair`.")

    @model_validator(mode="after")
    def _pairs_consistent(self) -> ClassifyItem:
        if self.source_pair is not None and self.source is None:
            raise ValueError("source_pair needs source")
        if self.source is not None and (self.target_pair is None) != (self.source_pair is None):
            raise ValueError("give source_pair exactly when target_pair is given")
        return self


class ClassifyResult(_Result):
    label: str = Field(examples=["positive"])
    scores: dict[str, float] = Field(
        description="Probability per label (mean of the source and mixed-target streams).",
        examples=[{"negative": 0.08, "positive": 0.92}],
    )


# ---------------------------------------------------------------------------------------------
# /tag
# ---------------------------------------------------------------------------------------------
class TagItem(_Item):
    target: Text | Tokens = Field(
        description="A string (split into words by the rule below) or pre-split tokens. "
        + WORD_SPLITTING_RULE
    )
    source: Text | Tokens | None = Field(
        default=None, description="English translation, as a string or as pre-split tokens."
    )


class TaggedToken(BaseModel):
    text: str
    start: int = Field(description="Character offset into the target string (inclusive).")
    end: int = Field(description="Character offset into the target string (exclusive).")
    tag: str | None = Field(description="null for a word cut off by truncation.")
    score: float | None = Field(description="Probability of the tag.")


class Entity(BaseModel):
    label: str = Field(examples=["PER"])
    text: str = Field(examples=["Angela Merkel"])
    start: int
    end: int
    score: float = Field(description="Mean tag probability over the entity's words.")
    token_start: int = Field(description="Index of the entity's first token.")
    token_end: int = Field(description="Index after the entity's last token.")


class TagResult(_Result):
    tokens: list[TaggedToken] = Field(
        description="One per word (per given token for pre-split input). For pre-split input "
        "offsets index the tokens joined by single spaces."
    )
    entities: list[Entity] = Field(
        description="Spans decoded from BIO tags (an I- without a matching B- opens a span); "
        "empty for models without a BIO tag scheme."
    )


# ---------------------------------------------------------------------------------------------
# /qa
# ---------------------------------------------------------------------------------------------
class QAItem(_Item):
    question: Text
    context: Text = Field(
        description="Long contexts are read in overlapping windows (the model's doc_stride)."
    )
    source_question: Text | None = None
    source_context: Text | None = Field(
        default=None,
        description="English translation of the context; only its first window is used.",
    )

    @model_validator(mode="after")
    def _source_complete(self) -> QAItem:
        if (self.source_question is None) != (self.source_context is None):
            raise ValueError("give both source_question and source_context, or neither")
        return self


class Answer(BaseModel):
    text: str = Field(examples=["Hamburg"])
    start: int = Field(description="Character offset into `context` (inclusive).", examples=[24])
    end: int = Field(description="Character offset into `context` (exclusive).", examples=[31])
    score: float = Field(description="Probability among the candidate spans.")


class QAResult(_Result):
    answers: list[Answer] = Field(description="Best first; at most top_k.")
