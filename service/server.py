"""Running the app under uvicorn with a load-balancer-friendly SIGTERM.

On SIGTERM (or SIGINT) the server first marks the app as draining — /readyz answers 503 so the
load balancer stops routing — keeps serving for ``drain_grace_s``, then lets uvicorn stop
accepting, finish every in-flight request (queued rows included) and run the lifespan shutdown.
A second SIGINT forces an immediate exit, as uvicorn users expect.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from service.app import create_app
from service.logs import configure_logging
from service.registry import Registry
from service.settings import Settings
from xmixup.errors import UserError

logger = logging.getLogger("service.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self.fastapi_app = app
        self.grace_s = grace_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:  # second signal: uvicorn's own behaviour (SIGINT forces exit)
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self.fastapi_app.state.draining = True
        logger.info(
            "%s: /readyz now 503; closing the listener in %.1fs, then finishing in-flight work",
            signal.Signals(sig).name,
            self.grace_s,
        )
        if self.grace_s <= 0:
            self._shutdown(sig, frame)
        else:
            timer = threading.Timer(self.grace_s, self._shutdown, args=(sig, frame))
            timer.daemon = True
            timer.start()

    def _shutdown(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises every captured signal once shut down, so a drained server would die
        # of SIGTERM (exit -15). A completed drain is a clean stop: orchestrators and the load
        # balancer test read exit 0. SIGINT keeps uvicorn's re-raise (Ctrl-C semantics).
        if sig == signal.SIGTERM:
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def build_settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"invalid settings: {problems}", "see `xmixup serve --help`") from None


def serve(overrides: dict[str, Any], log_level: str = "INFO") -> int:
    settings = build_settings(overrides)
    configure_logging(settings.log_json, log_level)
    if settings.models_dir is None:
        raise UserError("no models to serve", "pass --models DIR or set XMIXUP_MODELS_DIR")
    app = create_app(settings)
    # SIGHUP asks for a reload (service.reload) once the app runs; until then (loading can
    # take minutes) it must not end the process, which is its default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Load (verify checksums, build sessions) before binding the port: a bad bundle is refused
    # here as a UserError naming the file, not as a traceback inside uvicorn's startup.
    app.state.preloaded = Registry.load(settings, app.state.metrics)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # ours (JSON, request ids) from configure_logging
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=None,  # wait for every in-flight request
    )
    server = DrainingServer(config, app, settings.drain_grace_s)
    server.run()
    # uvicorn swallows a lifespan startup failure into "Application startup failed" + exit.
    return 0 if server.started else 3
