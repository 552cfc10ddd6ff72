"""Operations endpoints: liveness, readiness, Prometheus metrics and the served models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.errors import ServiceError
from service.lifecycle import ReadyRegistry
from service.registry import ModelRuntime, Registry
from service.schemas import ModelCard, ModelList, Readiness

router = APIRouter()


class MarkdownResponse(PlainTextResponse):
    media_type = "text/markdown"  # Starlette adds "; charset=utf-8"


@router.get("/healthz", tags=["operations"], summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process and its event loop respond (liveness probe)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["operations"],
    summary="Readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "starting, draining or unhealthy"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 once every bundle is loaded and warmed up and every model's worker is healthy;
    503 while starting, draining, or when a worker hangs or keeps failing (watchdog)."""
    state = request.app.state
    if not state.ready or state.draining:
        status = "draining" if state.draining else "starting"
        return JSONResponse(Readiness(status=status).model_dump(), status_code=503)
    models = {
        name: rt.batcher.health_reason() or "ready" for name, rt in state.registry.models.items()
    }
    ok = all(v == "ready" for v in models.values())
    body = Readiness(status="ready" if ok else "unhealthy", models=models)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", tags=["operations"], summary="Prometheus metrics")
async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state
    if state.ready:
        for name, rt in state.registry.models.items():
            state.metrics.queue_depth.labels(name).set(rt.batcher.depth)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", tags=["models"], response_model=ModelList, summary="Served models")
async def list_models(registry: ReadyRegistry) -> ModelList:
    return ModelList(data=[_model_card(rt, registry) for rt in registry.models.values()])


@router.get(
    "/v1/models/{name}",
    tags=["models"],
    response_model=ModelCard,
    summary="One model",
    responses={404: {"description": "unknown model"}},
)
async def get_model(name: str, registry: ReadyRegistry) -> ModelCard:
    if name not in registry.models:
        raise ServiceError(404, "model-not-found", f"unknown model {name!r}")
    return _model_card(registry.models[name], registry)


@router.get(
    "/v1/models/{name}/card",
    tags=["models"],
    summary="One model's card (Markdown)",
    response_class=MarkdownResponse,
    responses={
        200: {"description": "the bundle's README.md"},
        404: {"description": "unknown model, or a bundle without a card"},
    },
)
async def get_model_card(name: str, registry: ReadyRegistry) -> MarkdownResponse:
    """The bundle's model card (README.md, checksummed in its manifest): task, labels,
    training data, per-language metrics with seen/unseen languages, λ, intended use."""
    if name not in registry.models:
        raise ServiceError(404, "model-not-found", f"unknown model {name!r}")
    path = registry.models[name].bundle.card_path
    if path is None:
        raise ServiceError(404, "not-found", f"model {name!r} was exported without a model card")
    return MarkdownResponse(path.read_text(encoding="utf-8"))


def _model_card(rt: ModelRuntime, registry: Registry) -> ModelCard:
    return ModelCard(
        name=rt.name,
        version=rt.version,
        task=rt.task,
        default=registry.defaults.get(rt.task) == rt.name,
        labels=list(rt.manifest.labels),
        provider=rt.engine.provider,
        ready=rt.batcher.healthy,
        queue_depth=rt.batcher.depth,
        manifest=rt.manifest.model_dump(mode="json", exclude={"files"}),
        card=f"/v1/models/{rt.name}/card" if rt.bundle.card_path is not None else None,
    )
