"""Request and response bodies of the HTTP API (docs/API.md), with OpenAPI examples.

The items and results inside them are the core's (``xmixup/core/schemas.py``), shared with the
Python API. Requests forbid unknown fields so a typo (``"text"`` for ``"target"``) is a 422
naming it, not a silently ignored field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xmixup.core.schemas import (
    ClassifyItem,
    ClassifyResult,
    QAItem,
    QAResult,
    TagItem,
    TagResult,
)

_MODEL_FIELD = Field(
    default=None,
    description="Model name (see GET /v1/models); the task's default model when omitted.",
    examples=[None],
)
_TRUNCATE_FIELD = Field(
    default=None,
    description="Truncate over-long inputs to the model's max_length (true) or refuse them with "
    "413 (false). Default: the server's XMIXUP_TRUNCATE setting.",
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _BatchRequest(_Request):
    """What every endpoint's body has besides its ``inputs``."""

    model: str | None = _MODEL_FIELD
    truncate: bool | None = _TRUNCATE_FIELD


# ---------------------------------------------------------------------------------------------
# /classify
# ---------------------------------------------------------------------------------------------
class ClassifyRequest(_BatchRequest):
    inputs: list[ClassifyItem] = Field(min_length=1)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {
                            "target": "Der Film war überraschend gut.",
                            "source": "The film was surprisingly good.",
                        },
                        {"target": "Das Essen war kalt."},
                    ]
                }
            ]
        },
    )


class ClassifyResponse(BaseModel):
    model: str
    results: list[ClassifyResult]


# ---------------------------------------------------------------------------------------------
# /tag
# ---------------------------------------------------------------------------------------------
class TagRequest(_BatchRequest):
    inputs: list[TagItem] = Field(min_length=1)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {
                            "target": "Angela Merkel traf Emmanuel Macron in Berlin.",
                            "source": "Angela Merkel met Emmanuel Macron in Berlin.",
                        },
                        {"target": ["Barack", "Obama", "besuchte", "Paris", "."]},
                    ]
                }
            ]
        },
    )


class TagResponse(BaseModel):
    model: str
    results: list[TagResult]


# ---------------------------------------------------------------------------------------------
# /qa
# ---------------------------------------------------------------------------------------------
class QARequest(_BatchRequest):
    inputs: list[QAItem] = Field(min_length=1)
    top_k: int = Field(default=1, ge=1, description="Answers per input, best first.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {
                            "question": "Wo wohnt Anna?",
                            "context": "Anna wohnt seit 2019 in Hamburg.",
                            "source_question": "Where does Anna live?",
                            "source_context": "Anna has lived in Hamburg since 2019.",
                        }
                    ],
                    "top_k": 2,
                }
            ]
        },
    )


class QAResponse(BaseModel):
    model: str
    results: list[QAResult]


# ---------------------------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------------------------
class ModelCard(BaseModel):
    name: str
    version: str = Field(
        description="The first 12 hex digits of the sha256 of the bundle's manifest.json (it "
        "lists every file's sha256); also sent as `x-model-version` on each inference response.",
        examples=["3f2a9c41b0de"],
    )
    task: str
    default: bool = Field(description="Served when a request names no model.")
    labels: list[str]
    provider: str = Field(description="onnxruntime execution provider in use.")
    ready: bool
    queue_depth: int
    manifest: dict[str, Any]
    card: str | None = Field(
        default=None,
        description="Path of the model card (Markdown: data, per-language metrics, limits), "
        "e.g. `/v1/models/sib/card`; null for a bundle exported without one.",
    )


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    models: dict[str, str] = Field(
        default_factory=dict, description="Per model: ready or the reason it is not."
    )
