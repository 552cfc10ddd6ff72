"""The ops router and the middleware, in-process on an app whose lifespan has not run
(no bundles needed): readiness states, the not-ready answer, request ids, key, body limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from service.app import create_app
from service.settings import Settings


def _call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def _app(**settings: Any) -> FastAPI:
    return create_app(Settings(log_json=False, **settings))


def test_probes_while_starting_and_draining() -> None:
    app = _app()
    health = _call(app, "GET", "/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = _call(app, "GET", "/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "starting", "models": {}})
    app.state.draining = True
    assert _call(app, "GET", "/readyz").json()["status"] == "draining"


def test_model_and_task_routes_answer_not_ready_before_the_lifespan() -> None:
    app = _app()
    for method, path, body in (
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/tiny", None),
        ("POST", "/classify", {"inputs": [{"target": "Hallo"}]}),
    ):
        r = _call(app, method, path, json=body)
        assert r.status_code == 503, path
        assert r.headers["retry-after"] == "1"
        assert r.json()["type"].endswith("/not-ready")


def test_request_id_is_echoed_when_tame_and_replaced_otherwise() -> None:
    app = _app()
    r = _call(app, "GET", "/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert float(r.headers["x-total-time"]) >= 0
    r = _call(app, "GET", "/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"
    assert len(r.headers["x-request-id"]) == 32


def test_key_is_checked_on_model_routes_only() -> None:
    app = _app(api_key=SecretStr("s3cret"))
    r = _call(app, "GET", "/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["type"].endswith("/unauthorized")
    ok = _call(app, "GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 503  # past the key; not ready yet
    assert _call(app, "GET", "/healthz").status_code == 200


def test_chunked_body_over_the_limit_is_refused_without_a_length() -> None:
    app = _app(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 400

    r = _call(app, "POST", "/classify", content=chunks())
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["type"].endswith("/too-large")
    metrics = _call(app, "GET", "/metrics").text
    assert 'xmixup_requests_total{route="/classify",status="413"}' not in metrics
    assert 'xmixup_requests_total{route="unmatched",status="413"} 1.0' in metrics
