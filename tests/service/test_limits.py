"""Backpressure, deadlines, auth and the truncation default, each on its own real server."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_batcher(start_server: Any) -> Any:
    """Batches wait 3 s to fill (4 rows) while requests come closer together than that, a
    request may wait 1 s, 4 rows fit in the queue: rows queued right after another request sit
    past their deadline; a second request overflows the queue."""
    return start_server(
        {
            "XMIXUP_MAX_BATCH_SIZE": "4",
            "XMIXUP_MAX_QUEUE": "4",
            "XMIXUP_MAX_WAIT_MS": "3000",
            "XMIXUP_REQUEST_TIMEOUT_S": "1.0",
        }
    )


def _batches_run(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('xmixup_batch_size_count{model="tiny-classify"}')
    )


def test_queue_full_429_with_retry_after_and_deadline_504(slow_batcher: Any) -> None:
    url = slow_batcher.url
    # A lone request runs at once (no batch-mate is due); the next one, 0.2 s later, arrives
    # within the 3 s wait of it, so the batcher holds its rows to fill a batch.
    assert httpx.post(url + "/classify", json={"inputs": [{"target": "t"}]}).status_code == 200
    time.sleep(0.2)
    before = _batches_run(url)
    results: dict[str, httpx.Response] = {}

    def first() -> None:
        results["first"] = httpx.post(
            url + "/classify", json={"inputs": [{"target": f"t{i}"} for i in range(3)]}, timeout=10
        )

    thread = threading.Thread(target=first)
    t0 = time.monotonic()
    thread.start()
    time.sleep(0.4)  # the first request's 3 rows are queued, waiting for a 4th
    second = httpx.post(url + "/classify", json={"inputs": [{"target": "a"}, {"target": "b"}]})
    thread.join()
    elapsed = time.monotonic() - t0

    assert second.status_code == 429, second.text
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["type"].endswith("queue-full")
    deadline = results["first"]
    assert deadline.status_code == 504, deadline.text
    assert "XMIXUP_REQUEST_TIMEOUT_S" in deadline.json()["detail"]
    assert elapsed < 2.5  # answered at its deadline (1 s), not when the batch would have run (3 s)
    # the timed-out rows were dropped, never run: no batch of that model executed
    time.sleep(3.2)
    assert _batches_run(url) == before
    text = httpx.get(url + "/metrics").text
    assert 'xmixup_rejected_rows_total{model="tiny-classify",reason="deadline"} 3.0' in text
    assert 'xmixup_rejected_rows_total{model="tiny-classify",reason="queue_full"} 2.0' in text
    assert 'xmixup_requests_total{route="/classify",status="429"} 1.0' in text


def test_api_key(start_server: Any) -> None:
    server = start_server({"XMIXUP_API_KEY": "s3cret-key", "XMIXUP_TRUNCATE": "true"})
    body = {"inputs": [{"target": " ".join(["Berlin"] * 300)}]}
    with httpx.Client(base_url=server.url) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            r = c.post("/classify", json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.headers["content-type"] == "application/problem+json"
        # auth comes before parsing: a malformed body without a key is still a 401
        assert (
            c.post("/tag", content=b"{", headers={"content-type": "application/json"}).status_code
            == 401
        )
        assert c.get("/v1/models").status_code == 401
        ok = c.post("/classify", json=body, headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200
        # this server truncates by default (XMIXUP_TRUNCATE=true): over-long text is cut, not 413
        assert ok.json()["results"][0]["truncated"] is True
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert schemes["HTTPBearer"]["scheme"] == "bearer"
