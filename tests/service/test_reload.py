"""Zero-downtime model updates (service.reload) on toy bundles (no torch): swap, refusal,
removal, the admin key, in-flight requests kept on their version, and a swap under load on a
real server."""

from __future__ import annotations

import asyncio
import gc
import shutil
import signal
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from service.app import create_app
from service.settings import Settings
from tests.core.toy_bundle import make_toy_bundle
from tests.service.conftest import Server
from xmixup.core.bundle import bundle_version

ADMIN = {"Authorization": "Bearer admin-secret"}
BODY = {"model": "toy", "inputs": [{"target": "hello world", "source": "hello"}]}
# The toy graph's scores depend on lengths only, so labels tell the versions apart in answers.
LABELS = {"v1": ["a", "b", "c"], "v2": ["x", "y", "z"], "v3": ["p", "q", "r"]}


def _bundle(root: Path, tag: str, name: str = "toy") -> Path:
    return make_toy_bundle(root / f".{name}-{tag}", name=name, labels=LABELS[tag])


def _swap_in(models: Path, new: Path, name: str = "toy") -> None:
    """What an operator does: the complete copy is renamed into place (two renames)."""
    old = models / name
    if old.exists():
        old.rename(models / f".{name}-retired-{time.monotonic_ns()}")
    new.rename(old)


def _corrupt(path: Path) -> Path:
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "model.onnx").write_bytes(bytes(data))
    return path


Scenario = Callable[[FastAPI, httpx.AsyncClient], Coroutine[Any, Any, None]]


def _run(settings: Settings, scenario: Scenario) -> None:
    app = create_app(settings)

    async def go() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await scenario(app, client)

    asyncio.run(go())


def _metric(text: str, prefix: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    _swap_in(models, _bundle(models, "v1"))
    return models


def _settings(models: Path, **extra: Any) -> Settings:
    return Settings(models_dir=models, admin_key=SecretStr("admin-secret"), log_json=False, **extra)


def test_replace_refuse_and_remove_through_the_admin_route(models: Path) -> None:
    v1 = bundle_version(models / "toy")
    extra = make_toy_bundle(models / "other", name="other")

    async def scenario(app: FastAPI, c: httpx.AsyncClient) -> None:
        r = await c.post("/classify", json=BODY)
        assert r.headers["x-model-version"] == v1 and r.json()["results"][0]["label"] == "c"
        assert {m["name"]: m["version"] for m in (await c.get("/v1/models")).json()["data"]} == {
            "other": bundle_version(extra),
            "toy": v1,
        }

        new = _bundle(models, "v2")
        v2 = bundle_version(new)
        _swap_in(models, new)
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["loaded"] == ["toy"] and r.json()["unchanged"] == ["other"]
        assert r.json()["versions"]["toy"] == v2
        r = await c.post("/classify", json=BODY)
        assert r.headers["x-model-version"] == v2 and r.json()["results"][0]["label"] == "z"

        _swap_in(models, _corrupt(_bundle(models, "v3")))
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 409
        assert "model.onnx" in r.json()["refused"]["toy"] and r.json()["versions"]["toy"] == v2
        r = await c.post("/classify", json=BODY)
        assert r.status_code == 200 and r.headers["x-model-version"] == v2
        metrics = (await c.get("/metrics")).text
        assert _metric(metrics, 'xmixup_reloads_total{outcome="failed"}') == 1
        assert _metric(metrics, 'xmixup_model_reloads_total{model="toy",outcome="refused"}') == 1
        assert f'xmixup_model_info{{model="toy",task="classify",version="{v2}"}} 1.0' in metrics
        assert v1 not in metrics

        shutil.rmtree(models / "other")
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert r.json()["removed"] == ["other"]
        r = await c.post("/classify", json={**BODY, "model": "other"})
        assert r.status_code == 404
        assert (await c.get("/v1/models/other")).status_code == 404

    _run(_settings(models), scenario)


def test_admin_route_needs_its_own_key(models: Path) -> None:
    async def scenario(app: FastAPI, c: httpx.AsyncClient) -> None:
        api = {"Authorization": "Bearer client-key"}
        assert (await c.post("/classify", json=BODY, headers=api)).status_code == 200
        r = await c.post("/v1/admin/reload", headers=api)  # the API key is not the admin key
        assert r.status_code == 401 and "XMIXUP_ADMIN_KEY" in r.json()["detail"]
        assert (await c.post("/v1/admin/reload", headers=ADMIN)).status_code == 200

    _run(_settings(models, api_key=SecretStr("client-key")), scenario)

    async def off(app: FastAPI, c: httpx.AsyncClient) -> None:
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden")

    _run(Settings(models_dir=models, log_json=False), off)


def test_a_request_in_flight_finishes_on_the_version_it_started_on(models: Path) -> None:
    v1 = bundle_version(models / "toy")

    async def scenario(app: FastAPI, c: httpx.AsyncClient) -> None:
        old = app.state.registry.models["toy"]
        gate = threading.Event()
        Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

        def slow(feeds: dict[str, np.ndarray], run: Run = old.engine.run) -> dict[str, np.ndarray]:
            gate.wait(10)
            return run(feeds)

        old.engine.run = slow  # type: ignore[method-assign]
        pending = asyncio.create_task(c.post("/classify", json=BODY))
        while not old.active:
            await asyncio.sleep(0.01)
        _swap_in(models, _bundle(models, "v2"))
        report = (await c.post("/v1/admin/reload", headers=ADMIN)).json()
        assert report["loaded"] == ["toy"]
        assert not old.batcher._stopping  # retirement waits for the request in flight
        gate.set()
        r = await pending
        assert r.status_code == 200 and r.headers["x-model-version"] == v1
        assert r.json()["results"][0]["label"] == "c"
        for _ in range(100):
            if old.batcher._stopping:
                break
            await asyncio.sleep(0.01)
        assert old.batcher._stopping  # then the old worker stops
        gone = weakref.ref(old.engine)
        del old, slow
        for _ in range(100):  # ... and its session is freed: nothing keeps the runtime alive
            gc.collect()
            if gone() is None:
                break
            await asyncio.sleep(0.02)
        assert gone() is None

    _run(_settings(models, max_wait_ms=0), scenario)


def test_stray_directory_and_broken_default_are_refused(models: Path) -> None:
    v1 = bundle_version(models / "toy")

    async def scenario(app: FastAPI, c: httpx.AsyncClient) -> None:
        (models / "half-copied").mkdir()
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert (
            r.status_code == 409
            and "manifest.json is missing" in r.json()["refused"]["half-copied"]
        )
        (models / "half-copied").rmdir()
        shutil.rmtree(models / "toy")  # the configured default: refused as a whole
        make_toy_bundle(models / "other", name="other")
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 409 and "XMIXUP_DEFAULT_MODELS" in r.json()["refused"]["*"]
        r = await c.post("/classify", json=BODY)
        assert r.status_code == 200 and r.headers["x-model-version"] == v1
        shutil.rmtree(models / "other")
        (models / "half-copied").mkdir()  # no bundle left at all: refused as a whole
        r = await c.post("/v1/admin/reload", headers=ADMIN)
        assert r.status_code == 409 and "no bundle left" in r.json()["refused"]["*"]
        assert (await c.post("/classify", json=BODY)).headers["x-model-version"] == v1

    _run(_settings(models, default_models={"classify": "toy"}), scenario)


def test_watcher_applies_changes_and_does_not_retry_a_refused_copy(models: Path) -> None:
    async def scenario(app: FastAPI, c: httpx.AsyncClient) -> None:
        new = _bundle(models, "v2")
        _swap_in(models, new)
        await _until(
            c, lambda r: r.headers.get("x-model-version") == bundle_version(models / "toy")
        )
        _swap_in(models, _corrupt(_bundle(models, "v3")))
        await asyncio.sleep(0.5)  # ten watch ticks: refused once, not ten times
        text = (await c.get("/metrics")).text
        assert _metric(text, 'xmixup_model_reloads_total{model="toy",outcome="refused"}') == 1
        assert _metric(text, 'xmixup_reloads_total{outcome="ok"}') == 1

    _run(_settings(models, watch_interval_s=0.05), scenario)


async def _until(c: httpx.AsyncClient, ok: Callable[[httpx.Response], bool]) -> None:
    for _ in range(200):
        if ok(await c.post("/classify", json=BODY)):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the change was not applied")


# ---- under load, on a real server ------------------------------------------------------------
Seen = tuple[float, float, int, str, str]  # sent, answered, status, version, label


async def _post(client: httpx.AsyncClient) -> Seen:
    sent = time.monotonic()
    r = await client.post("/classify", json=BODY)
    label = r.json()["results"][0]["label"] if r.status_code == 200 else r.text
    return sent, time.monotonic(), r.status_code, r.headers.get("x-model-version", ""), label


@pytest.mark.integration
def test_swap_under_load_then_a_corrupt_copy_is_refused(models: Path, tmp_path: Path) -> None:
    v1 = bundle_version(models / "toy")
    new = _bundle(models, "v2")
    v2 = bundle_version(new)
    server = Server(models, tmp_path, {"XMIXUP_ADMIN_KEY": "admin-secret"})
    label_of = {v1: "c", v2: "z"}

    async def scenario() -> tuple[list[Seen], float]:
        # httpx keeps idle connections 5 s by default, exactly uvicorn's keep-alive timeout: a
        # request can race the server's close (a ReadError no server saw). Expire them sooner.
        limits = httpx.Limits(max_connections=400, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            before = [asyncio.create_task(_post(client)) for _ in range(200)]
            while sum(t.done() for t in before) < 20:  # the old version has answered
                await asyncio.sleep(0.005)
            _swap_in(models, new)
            # the reload goes out with what is left of the first 200 and 100 more beside it
            reload = asyncio.create_task(client.post("/v1/admin/reload", headers=ADMIN))
            during = [asyncio.create_task(_post(client)) for _ in range(100)]
            r = await reload
            swapped = time.monotonic()
            assert r.status_code == 200 and r.json()["versions"] == {"toy": v2}, r.text
            after = await asyncio.gather(*(_post(client) for _ in range(100)))
            return [*await asyncio.gather(*before, *during), *after], swapped

    try:
        seen, swapped = asyncio.run(scenario())
        assert len(seen) == 400 and [s for s in seen if s[2] != 200] == []
        assert {s[3] for s in seen} == {v1, v2}
        assert all(label == label_of[version] for *_, version, label in seen)
        assert {s[3] for s in seen if s[0] > swapped} == {v2}

        _swap_in(models, _corrupt(_bundle(models, "v3")))
        server.proc.send_signal(signal.SIGHUP)
        failed = 'xmixup_reloads_total{outcome="failed"}'
        for _ in range(300):
            if _metric(httpx.get(server.url + "/metrics").text, failed) == 1:
                break
            time.sleep(0.05)
        assert _metric(httpx.get(server.url + "/metrics").text, failed) == 1
        r = httpx.post(server.url + "/classify", json=BODY)
        assert r.status_code == 200 and r.headers["x-model-version"] == v2
        assert "model.onnx" in server.log() and "refused" in server.log()
    finally:
        assert server.stop() == []
