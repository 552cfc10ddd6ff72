"""The ASGI app: ``create_app(settings) -> FastAPI`` (``uvicorn --factory service.app:create_app``).

Assembly only: the lifespan (service.lifecycle), the middleware (service.middleware), the task
endpoints (service.routes), the operations endpoints (service.ops) and the playground page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from service import admin, lifecycle, ops, routes
from service.errors import install_error_handlers
from service.metrics import Metrics
from service.middleware import install_middleware
from service.settings import Settings
from service.tracing import setup_tracing
from xmixup import __version__

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """
Cross-lingual NLU with **X-Mixup**: send the user's text (`target`) and, ideally, its English
translation (`source`). The model mixes the translation's hidden states into the target's and
predicts on the target; `mixup_ratio` (λ) says how much it leaned on the translation.

* Errors are RFC 9457 problem documents (`application/problem+json`).
* Timing headers: `x-tokenization-time`, `x-queue-time`, `x-inference-time`, `x-total-time` (ms).
* `X-Request-ID` is honoured (or generated) and returned.
* Model routes need `Authorization: Bearer <key>` when the server sets `XMIXUP_API_KEY`.
* `x-model` and `x-model-version` name the model and version that answered; `POST
  /v1/admin/reload` (with `XMIXUP_ADMIN_KEY`) or SIGHUP swaps in changed bundles.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. ``settings`` default to the ``XMIXUP_*`` environment."""
    settings = settings or Settings()
    # /docs and /redoc load Swagger UI and ReDoc from this server (/static-offline-docs), not
    # from a CDN: they work on an air-gapped host.
    app = FastAPIOffline(
        title="xmixup",
        version=__version__,
        summary="Cross-lingual classification, tagging and QA with X-Mixup on onnxruntime",
        description=DESCRIPTION,
        lifespan=lifecycle.lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.ready = False
    app.state.draining = False
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    install_middleware(app, settings)
    setup_tracing(app, settings)
    if STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    else:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

    return app
