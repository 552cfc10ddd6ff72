"""POST /classify, /tag, /qa: validate → tokenise → batch → postprocess.

Tokenising and postprocessing are the core's (``xmixup/core/preprocess.py``,
``postprocess.py``), the same calls ``xmixup.Predictor`` makes; this module adds the HTTP
limits and the dynamic batcher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from service.batcher import DeadlineExceeded, InferenceFailed, QueueFull, RowResult, Stopped
from service.errors import Problem, ServiceError
from service.lifecycle import ready_registry
from service.registry import ModelRuntime, Registry
from service.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    QARequest,
    QAResponse,
    TagRequest,
    TagResponse,
)
from service.security import bearer
from service.settings import Settings
from xmixup.core.postprocess import classify_results, qa_results, tag_results
from xmixup.core.preprocess import check_chars, classify_rows, qa_rows, tag_rows
from xmixup.core.request_errors import field_error
from xmixup.core.rows import Row

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}, "description": text}
    for code, text in {
        401: "Missing or wrong API key (when one is configured).",
        404: "Unknown model, or a model of another task.",
        413: "Body, item count or text beyond the limits (or over-long text with truncate off).",
        422: "Invalid input; `errors[].loc` names the field.",
        429: "Queue full; retry after `Retry-After` seconds.",
        503: "Not ready, draining, or the model's worker is failing.",
        504: "The request's deadline passed before its work ran.",
    }.items()
}

router = APIRouter(dependencies=[Depends(bearer)], responses=_ERRORS, tags=["inference"])

P = TypeVar("P")


def _state(request: Request) -> tuple[Settings, Registry]:
    return request.app.state.settings, ready_registry(request)


def _check_count(n: int, settings: Settings) -> None:
    if n > settings.max_items_per_request:
        raise field_error(
            413,
            "inputs",
            f"has {n} items; the limit is {settings.max_items_per_request} "
            "(XMIXUP_MAX_ITEMS_PER_REQUEST)",
            kind="too-large",
        )


async def _infer(
    request: Request,
    response: Response,
    rt: ModelRuntime,
    build: Callable[[], tuple[list[Row], list[P]]],
) -> tuple[list[RowResult], list[P]]:
    """Run a request on the runtime it looked up, even if a reload swaps it out meanwhile.

    Nothing awaits between ``registry.get`` and here, so no swap can come in between."""
    with rt.hold():
        response.headers["x-model-version"] = rt.version
        return await _infer_on(request, response, rt, build)


async def _infer_on(
    request: Request,
    response: Response,
    rt: ModelRuntime,
    build: Callable[[], tuple[list[Row], list[P]]],
) -> tuple[list[RowResult], list[P]]:
    """Tokenise, queue the rows, await them; map batcher outcomes to HTTP errors."""
    settings: Settings = request.app.state.settings
    t0 = time.perf_counter()
    rows, plans = build()
    tokenization_s = time.perf_counter() - t0
    request.app.state.metrics.tokenization.labels(rt.name).observe(tokenization_s)
    if len(rows) > settings.max_queue:
        raise field_error(
            413,
            "inputs",
            f"needs {len(rows)} model rows; the queue holds {settings.max_queue}",
            kind="too-large",
        )
    deadline = time.monotonic() + settings.request_timeout_s
    try:
        futures = rt.batcher.submit(rows, deadline)
    except Stopped:
        raise ServiceError(
            503, "draining", "the service is shutting down; retry", headers={"Retry-After": "1"}
        ) from None
    except QueueFull as exc:
        raise ServiceError(
            429,
            "queue-full",
            f"model {rt.name} has {rt.batcher.depth} rows queued; retry later",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    try:
        results: Sequence[RowResult] = await asyncio.wait_for(
            asyncio.gather(*futures), timeout=max(deadline - time.monotonic(), 0.0)
        )
    except (TimeoutError, DeadlineExceeded):
        raise ServiceError(
            504,
            "deadline",
            f"not answered within {settings.request_timeout_s}s (XMIXUP_REQUEST_TIMEOUT_S)",
        ) from None
    except InferenceFailed:
        raise ServiceError(
            503,
            "inference-failed",
            f"model {rt.name} failed to run this batch; retry",
            headers={"Retry-After": "1"},
        ) from None
    finally:
        for fut in futures:  # siblings of a failed row must not run for nothing
            fut.cancel()
    response.headers["x-tokenization-time"] = f"{tokenization_s * 1000:.3f}"
    response.headers["x-queue-time"] = f"{max(r.queue_s for r in results) * 1000:.3f}"
    response.headers["x-inference-time"] = f"{max(r.inference_s for r in results) * 1000:.3f}"
    response.headers["x-model"] = rt.name
    return list(results), plans


def _outputs(results: list[RowResult]) -> list[dict[str, np.ndarray]]:
    return [r.outputs for r in results]


def _truncate(flag: bool | None, settings: Settings) -> bool:
    return settings.truncate if flag is None else flag


@router.post("/classify", response_model=ClassifyResponse, summary="Classify sentences (or pairs)")
async def classify(body: ClassifyRequest, request: Request, response: Response) -> ClassifyResponse:
    """Label, per-label probabilities and λ per input. Give `source` (the English translation)
    for X-Mixup; without it the target is its own source and `source_used` is false."""
    settings, registry = _state(request)
    _check_count(len(body.inputs), settings)
    check_chars(body.inputs, settings.max_text_chars)
    rt = registry.get("classify", body.model)
    truncate = _truncate(body.truncate, settings)
    outs, plans = await _infer(
        request, response, rt, lambda: classify_rows(rt, body.inputs, truncate)
    )
    return ClassifyResponse(model=rt.name, results=classify_results(rt, plans, _outputs(outs)))


@router.post("/tag", response_model=TagResponse, summary="Tag words (NER, POS)")
async def tag(body: TagRequest, request: Request, response: Response) -> TagResponse:
    """A tag per word with character offsets, and entity spans for BIO models."""
    settings, registry = _state(request)
    _check_count(len(body.inputs), settings)
    check_chars(body.inputs, settings.max_text_chars)
    rt = registry.get("tag", body.model)
    truncate = _truncate(body.truncate, settings)
    outs, plans = await _infer(request, response, rt, lambda: tag_rows(rt, body.inputs, truncate))
    return TagResponse(model=rt.name, results=tag_results(rt, plans, _outputs(outs)))


@router.post("/qa", response_model=QAResponse, summary="Extractive question answering")
async def qa(body: QARequest, request: Request, response: Response) -> QAResponse:
    """The `top_k` best answer spans per input, with character offsets into `context`."""
    settings, registry = _state(request)
    _check_count(len(body.inputs), settings)
    if body.top_k > settings.max_top_k:
        raise field_error(422, "top_k", f"must be <= {settings.max_top_k} (XMIXUP_MAX_TOP_K)")
    check_chars(body.inputs, settings.max_text_chars)
    rt = registry.get("qa", body.model)
    truncate = _truncate(body.truncate, settings)
    outs, plans = await _infer(request, response, rt, lambda: qa_rows(rt, body.inputs, truncate))
    return QAResponse(model=rt.name, results=qa_results(rt, plans, _outputs(outs), body.top_k))
