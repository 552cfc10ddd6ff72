"""Start-up refusal, SIGTERM drain, the uvicorn factory and the watchdog."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import REPO, free_port

pytestmark = pytest.mark.integration

CONTEXT = " ".join(["Anna wohnt seit 2019 in Hamburg und arbeitet als Lehrerin."] * 12)


def _serve(models: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "xmixup", "serve", "--models", str(models), "--port", "0"]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_bad_bundles_are_refused_at_start_naming_the_file(models_dir: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(models_dir / "tiny-tag", corrupt / "tiny-tag")
    with open(corrupt / "tiny-tag" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    run = _serve(corrupt)
    assert run.returncode == 2, run.stderr
    assert "model.onnx" in run.stderr and "Traceback" not in run.stderr

    stray = tmp_path / "stray"
    shutil.copytree(models_dir / "tiny-tag", stray / "tiny-tag")
    (stray / "notes").mkdir()
    run = _serve(stray)
    assert run.returncode == 2
    assert str(stray / "notes" / "manifest.json") in run.stderr


def test_sigterm_finishes_every_queued_request(start_server: Any) -> None:
    server = start_server(
        {
            "XMIXUP_MAX_BATCH_SIZE": "1",
            "XMIXUP_MAX_WAIT_MS": "0",
            "XMIXUP_MAX_QUEUE": "4096",
            "XMIXUP_DRAIN_GRACE_S": "1.0",
        }
    )
    body = {"inputs": [{"question": "Wo wohnt Anna?", "context": CONTEXT}] * 4}

    async def scenario() -> tuple[list[httpx.Response], int, float]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as ac:
            tasks = [asyncio.create_task(ac.post("/qa", json=body)) for _ in range(30)]
            depth = 0.0
            while depth == 0.0:  # wait until rows really are queued
                await asyncio.sleep(0.01)
                for line in (await ac.get("/metrics")).text.splitlines():
                    if line.startswith('xmixup_queue_depth{model="tiny-qa"}'):
                        depth = float(line.rsplit(" ", 1)[1])
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            ready = (await ac.get("/readyz")).status_code  # still listening, but not ready
            return list(await asyncio.gather(*tasks)), ready, depth

    responses, ready, depth = asyncio.run(scenario())
    assert depth > 0
    assert ready == 503
    assert [r.status_code for r in responses] == [200] * 30
    assert all(len(r.json()["results"]) == 4 for r in responses)
    assert server.proc.wait(30) == 0, server.log()  # a completed drain is a clean exit
    assert '"msg": "stopped"' in server.log()


def test_uvicorn_factory(models_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "XMIXUP_MODELS_DIR": str(models_dir)}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        r = httpx.post(url + "/tag", json={"inputs": [{"target": "Hallo Welt"}]})
        assert r.status_code == 200 and r.json()["model"] == "tiny-tag"
    finally:
        proc.terminate()
        proc.wait(30)


def test_watchdog_turns_readyz_503_on_failing_or_hung_worker(models_dir: Path) -> None:
    settings = Settings(
        models_dir=models_dir / "tiny-classify",  # a bundle directory itself works too
        watchdog_interval_s=0.05,
        watchdog_timeout_s=0.3,
        max_consecutive_failures=2,
        max_wait_ms=0,
        log_json=False,
    )
    app = create_app(settings)
    body = {"inputs": [{"target": "Hallo Welt"}]}

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rt = app.state.registry.models["tiny-classify"]
                real_run = rt.engine.run

                def failing(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                    raise RuntimeError("CUDA error: an illegal memory access")

                rt.engine.run = failing  # type: ignore[method-assign]
                for _ in range(2):
                    r = await c.post("/classify", json=body)
                    assert r.status_code == 503 and r.headers["retry-after"] == "1"
                    assert r.json()["type"].endswith("inference-failed")
                ready = await c.get("/readyz")
                assert ready.status_code == 503
                assert "failed in a row" in ready.json()["models"]["tiny-classify"]

                rt.engine.run = real_run  # type: ignore[method-assign]
                await _until_ready(c)  # the watchdog's probe succeeds: ready again

                gate = threading.Event()

                def hung(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                    gate.wait(10)
                    return real_run(feeds)

                rt.engine.run = hung  # type: ignore[method-assign]
                pending = asyncio.create_task(c.post("/classify", json=body))
                await asyncio.sleep(0.6)
                ready = await c.get("/readyz")
                assert ready.status_code == 503
                assert "running for" in ready.json()["models"]["tiny-classify"]
                gate.set()
                assert (await pending).status_code == 200
                await _until_ready(c)

    asyncio.run(scenario())


async def _until_ready(c: httpx.AsyncClient, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await c.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not ready again")
