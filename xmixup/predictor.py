"""``Predictor``: a bundle in-process, from Python — the HTTP service's pipeline without HTTP.

    from xmixup import Predictor

    p = Predictor("bundles/sib")
    [r] = p.classify([{"target": "Der Film war gut.", "source": "The film was good."}])
    r.label, r.scores, r.mixup_ratio

Items are the dicts (or the item models) of the HTTP request's ``inputs``; results are the
pydantic result models of the HTTP response's ``results`` (``r.model_dump(mode="json")`` is the
JSON object the service answers for that item). Tokenising, padding, batching and decoding are
the service's own code (``xmixup/core/``), so the answers are the service's. Input the model
cannot take raises the errors the service answers with 4xx (``xmixup.core.request_errors``:
``InvalidInput`` 422, ``InputTooLarge`` 413, ``ModelNotFound`` 404 for a method of another
task), naming the field (``inputs.3.target``).

Torch-free and FastAPI-free: it needs numpy, pydantic, tokenizers and onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from xmixup.core.bundle import Bundle, load_bundle
from xmixup.core.featurize import TextEncoder
from xmixup.core.manifest import Manifest
from xmixup.core.postprocess import Outputs, classify_results, qa_results, tag_results
from xmixup.core.preprocess import check_chars, classify_rows, qa_rows, tag_rows
from xmixup.core.request_errors import (
    FieldError,
    ModelNotFound,
    field_error,
    invalid_input,
    validation_field_errors,
)
from xmixup.core.rows import Row, cut_batches, pad_rows, row_outputs
from xmixup.core.runner import Runner
from xmixup.core.schemas import (
    ClassifyItem,
    ClassifyResult,
    QAItem,
    QAResult,
    TagItem,
    TagResult,
)

Item = TypeVar("Item", bound=BaseModel)
Result = ClassifyResult | TagResult | QAResult
# The service's defaults (XMIXUP_MAX_BATCH_SIZE, XMIXUP_MAX_BATCH_TOKENS).
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_TOKENS = 16384


def parse_items(cls: type[Item], items: Sequence[Mapping[str, Any] | BaseModel]) -> list[Item]:
    """Validate request items (dicts, or the item models themselves); one ``InvalidInput``
    naming every bad field (``inputs.N.field``), as the service's 422."""
    parsed: list[Item] = []
    errors: list[FieldError] = []
    for i, raw in enumerate(items):
        if isinstance(raw, cls):
            parsed.append(raw)
            continue
        try:
            data = raw.model_dump(exclude_unset=True) if isinstance(raw, BaseModel) else raw
            parsed.append(cls.model_validate(data))
        except ValidationError as exc:
            errors += validation_field_errors(exc, ("inputs", i))
    if errors:
        raise invalid_input(errors)
    return parsed


class Predictor:
    """One bundle loaded for in-process inference; thread-compatible, not thread-safe.

    ``truncate``: cut over-long inputs to the model's max_length (the service's default) or
    refuse them with ``InputTooLarge``. ``max_text_chars``: refuse longer text fields (the
    service's ``XMIXUP_MAX_TEXT_CHARS``; None = no limit). ``batch_size`` / ``batch_tokens``:
    the batch policy of the service's batcher (rows, padded tokens). ``threads``: onnxruntime
    intra-op threads (None = all cores).
    """

    def __init__(
        self,
        bundle: str | Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        truncate: bool = True,
        max_text_chars: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        self.bundle: Bundle = load_bundle(bundle)  # checksums verified; BundleError names a file
        self._encoder = TextEncoder.for_bundle(self.bundle)
        self.runner = Runner.for_bundle(self.bundle, device, threads, spin=False)
        self.truncate = truncate
        self.max_text_chars = max_text_chars
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens

    # ---- what the pipeline reads (xmixup.core.preprocess.ModelView) -------------------------
    @property
    def name(self) -> str:
        return self.bundle.manifest.name

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def encoder(self) -> TextEncoder:
        return self._encoder

    @property
    def task(self) -> str:
        return self.bundle.manifest.task

    @property
    def labels(self) -> list[str]:
        return list(self.bundle.manifest.labels)

    # ---- the three tasks ----------------------------------------------------------------------
    def classify(
        self, items: Sequence[Mapping[str, Any] | ClassifyItem], *, truncate: bool | None = None
    ) -> list[ClassifyResult]:
        """Label, per-label probabilities, λ and translation trust per item (``/classify``)."""
        parsed = self._items("classify", ClassifyItem, items)
        rows, plans = classify_rows(self, parsed, self._truncate(truncate))
        return classify_results(self, plans, self.run_rows(rows))

    def tag(
        self, items: Sequence[Mapping[str, Any] | TagItem], *, truncate: bool | None = None
    ) -> list[TagResult]:
        """A tag per word with character offsets, and BIO entity spans (``/tag``)."""
        parsed = self._items("tag", TagItem, items)
        rows, plans = tag_rows(self, parsed, self._truncate(truncate))
        return tag_results(self, plans, self.run_rows(rows))

    def qa(
        self,
        items: Sequence[Mapping[str, Any] | QAItem],
        *,
        top_k: int = 1,
        truncate: bool | None = None,
    ) -> list[QAResult]:
        """The ``top_k`` best answer spans per item, offsets into its context (``/qa``)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise field_error(422, "top_k", f"must be an integer >= 1, not {top_k!r}")
        parsed = self._items("qa", QAItem, items)
        rows, plans = qa_rows(self, parsed, self._truncate(truncate))
        return qa_results(self, plans, self.run_rows(rows), top_k)

    def predict(
        self, items: Sequence[Any], *, top_k: int = 1, truncate: bool | None = None
    ) -> list[Result]:
        """The bundle's own task: ``classify``, ``tag`` or ``qa`` (``top_k`` is for QA)."""
        if self.task == "qa":
            return list(self.qa(items, top_k=top_k, truncate=truncate))
        if self.task == "tag":
            return list(self.tag(items, truncate=truncate))
        return list(self.classify(items, truncate=truncate))

    # ---- internals ----------------------------------------------------------------------------
    def _items(self, task: str, cls: type[Item], items: Sequence[Any]) -> list[Item]:
        if self.task != task:
            raise ModelNotFound(f"model {self.name!r} is a {self.task} model; call .{self.task}()")
        if isinstance(items, (str, bytes, Mapping)):
            raise field_error(422, "inputs", "must be a list of items")
        parsed = parse_items(cls, items)
        if self.max_text_chars is not None:
            check_chars(parsed, self.max_text_chars)
        return parsed

    def _truncate(self, flag: bool | None) -> bool:
        return self.truncate if flag is None else flag

    def run_rows(self, rows: Sequence[Row]) -> list[Outputs]:
        """Each row's outputs: batched by the service's policy, padded, run, cut back."""
        outs: list[dict[str, np.ndarray]] = [{} for _ in rows]
        pad_id = self.bundle.pad_id
        for group in cut_batches(rows, self.batch_size, self.batch_tokens):
            feeds, _, _ = pad_rows([rows[i] for i in group], pad_id)
            outputs = self.runner.run(feeds)
            for j, i in enumerate(group):
                outs[i] = row_outputs(outputs, j, len(rows[i].target_ids))
        return list(outs)
