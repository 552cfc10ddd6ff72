"""Admin routes (``XMIXUP_ADMIN_KEY``): reload the models directory without a restart."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from service.errors import Problem
from service.lifecycle import ready_registry
from service.reload import Reloader, ReloadReport
from service.security import bearer

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(bearer)])


@router.post(
    "/reload",
    summary="Rescan the models directory",
    response_model=ReloadReport,
    responses={
        401: {"model": Problem, "description": "Missing or wrong admin key."},
        403: {"model": Problem, "description": "The admin API is off (no XMIXUP_ADMIN_KEY)."},
        409: {
            "model": ReloadReport,
            "description": "A bundle was refused; its old version "
            "(if any) keeps serving, every other change is applied.",
        },
        503: {"model": Problem, "description": "The service is starting."},
    },
)
async def reload_models(request: Request) -> JSONResponse:
    """Load new and changed bundles beside the serving ones (verified and warmed up), swap them
    in, drop removed ones; requests in flight finish on the version they started on. Answers
    when the rescan is done (SIGHUP does the same without waiting)."""
    ready_registry(request)  # 503 while starting
    reloader: Reloader = request.app.state.reloader
    report = await reloader.reload("admin")
    return JSONResponse(report.model_dump(), status_code=200 if report.ok else 409)
