"""The playground page at `/`, driven headless in real Debian chromium against a real server.

Three tiny bundles (random tiny backbone, exported by model_export) are served by uvicorn running
`service.app.create_app` on 127.0.0.1 with an API key. Through the UI only, the test enters the
key, runs one request per endpoint and checks that what the page renders (label and score bars,
tags and highlighted entities, the highlighted answer, λ, source_used) is exactly the JSON the API
returned, and that errors (401, 422) are shown as readable problem details. Screenshots go to
test-artifacts/ (gitignored).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
API_KEY = "playground-test-key"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LABELS = {
    "classify": ["politics", "sports", "travel", "health"],
    "tag": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "qa": [],
}
EXTRA: dict[str, dict[str, Any]] = {"classify": {}, "tag": {"tag_scheme": "BIO"}, "qa": {}}


def _chromium() -> str:
    path = os.environ.get("XMIXUP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def models_dir(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_export.onnx_export import export_bundle
    from tests.tiny import fit_tiny_trust, make_tiny_checkpoint

    root = tmp_path_factory.mktemp("playground_models")
    for task in ("classify", "tag", "qa"):
        ckpt = make_tiny_checkpoint(
            tmp_path_factory.mktemp(f"pg_{task}"),
            task,
            LABELS[task],
            backbone_dir=tiny_backbone,
            seed=3,
            **EXTRA[task],
        )
        fit_tiny_trust(ckpt)
        export_bundle(ckpt, root / task, name=f"tiny-{task}")
    return root


@pytest.fixture(scope="module")
def base_url(models_dir: Path) -> Iterator[str]:
    from service.app import create_app
    from service.settings import Settings

    settings = Settings(models_dir=models_dir, api_key=API_KEY, log_json=False, intra_op_threads=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            pytest.fail("the service did not become ready within 60 s")
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def page(base_url: str) -> Iterator[Any]:
    executable = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="xmixup-chromium-") as profile,
        sync_api.sync_playwright() as pw,
    ):
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(20_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(base_url + "/")
        yield pg
        context.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def _api(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{base_url}/{path}",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def _run(page: Any, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Click Run; return (request body the page sent, response JSON it received)."""
    with page.expect_response(lambda r: r.url.endswith("/" + path)) as info:
        page.click("#run")
    response = info.value
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])")
    return response.request.post_data_json, response.json()


def _check_lambda(page: Any, result: dict[str, Any]) -> None:
    lam = result["mixup_ratio"]
    assert float(page.get_attribute("#lambda", "data-lambda")) == pytest.approx(lam, abs=1e-12)
    assert f"λ = {lam:.3f}" in page.inner_text("#lambda-pct")
    width = page.eval_on_selector("#lambda-fill", "e => parseFloat(e.style.width)")
    assert width == pytest.approx(100 * lam, abs=0.01)
    note = page.inner_text("#lambda-note")
    # λ does not follow the translation's quality (measured), so the page must not read it so.
    assert "trusted" not in note and "line up" not in note
    if result["source_used"]:
        assert "trust line" in note
    trust = result["translation_trust"]
    shown = page.get_attribute("#trust", "data-trust")
    if trust is None:
        assert shown == "" and page.inner_text("#trust-value") == "n/a"
    else:
        assert float(shown) == pytest.approx(trust, abs=1e-12)
    assert page.inner_text("#source-used") == ("yes" if result["source_used"] else "no")
    assert "inference" in page.inner_text("#timings")


def test_playground_end_to_end(page: Any, base_url: str) -> None:
    # 1. Served at / with its assets; without the key the page asks for one and shows the 401.
    assert page.title() == "xmixup playground"
    page.wait_for_selector("#apikey-box.attention")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert "401" in error and "API key" in error

    # 2. The key unlocks GET /v1/models: the picker lists the classify model, as default.
    page.fill("#apikey", API_KEY)
    page.press("#apikey", "Enter")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["classify"]
    assert "λ0 0.5" in page.inner_text("#model-info")

    # 3. /classify with the German sample and its English source.
    sent, body = _run(page, "classify")
    assert sent["inputs"][0]["target"].startswith("Internationale Sanktionen")
    assert sent["inputs"][0]["source"].startswith("International sanctions")
    assert sent["model"] == "classify"
    result = body["results"][0]
    assert page.inner_text("#label") == result["label"]
    rows = page.eval_on_selector_all(
        ".bar-row", "rs => rs.map(r => [r.dataset.label, parseFloat(r.dataset.score)])"
    )
    assert dict(rows) == result["scores"]
    assert [label for label, _ in rows] == sorted(result["scores"], key=result["scores"].get)[::-1]
    assert page.get_attribute(".bar-row.winner", "data-label") == result["label"]
    assert page.inner_text("#served-model") == body["model"] == "classify"
    _check_lambda(page, result)
    assert result["source_used"] is True
    # What the page sent is what a direct API call with the same item answers.
    direct = _api(base_url, "classify", {"inputs": [sent["inputs"][0]]})["results"][0]
    assert direct["label"] == result["label"]
    assert all(math.isclose(direct["scores"][k], v, abs_tol=1e-6) for k, v in rows)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)

    # 4. /tag with the German sample: tokens with tags, entities highlighted in the text.
    page.click("#tab-tag")
    sent, body = _run(page, "tag")
    result = body["results"][0]
    target = sent["inputs"][0]["target"]
    assert target == "Die Ruinen wurden später überbaut."
    tokens = page.eval_on_selector_all(
        ".token",
        "ts => ts.map(t => [t.querySelector('.tok-text').textContent, t.dataset.tag,"
        " +t.dataset.start, +t.dataset.end])",
    )
    assert tokens == [[t["text"], t["tag"], t["start"], t["end"]] for t in result["tokens"]]
    assert result["entities"], "the tiny tag model should predict at least one entity here"
    marks = page.eval_on_selector_all(
        "mark.entity",
        "ms => ms.map(m => [m.dataset.label, +m.dataset.start, +m.dataset.end,"
        " m.firstChild.textContent])",
    )
    assert marks == [[e["label"], e["start"], e["end"], e["text"]] for e in result["entities"]]
    assert all(target[s:e] == text for _, s, e, text in marks)
    # Highlighting keeps the sentence intact (badges aside).
    shown = page.eval_on_selector(
        "#entity-text",
        "p => { const c = p.cloneNode(true); c.querySelectorAll('.badge').forEach(b => b.remove());"
        " return c.textContent; }",
    )
    assert shown == target
    _check_lambda(page, result)
    page.screenshot(path=str(ARTIFACTS / "playground-tag.png"), full_page=True)

    # 5. Pre-split input (the Chinese sample): tokens are sent as a list and align one-to-one.
    page.select_option("#sample", "1")
    assert page.is_checked("#presplit")
    sent, body = _run(page, "tag")
    words = sent["inputs"][0]["target"]
    assert isinstance(words, list) and words[0] == "六"
    shown_tokens = page.eval_on_selector_all(".tok-text", "ts => ts.map(t => t.textContent)")
    assert shown_tokens == words == [t["text"] for t in body["results"][0]["tokens"]]

    # 6. /qa with the German sample: the best answer is highlighted in the context.
    page.click("#tab-qa")
    sent, body = _run(page, "qa")
    result = body["results"][0]
    context = sent["inputs"][0]["context"]
    assert sent["inputs"][0]["source_question"].startswith("How many")
    assert sent["top_k"] == 3
    best = result["answers"][0]
    assert page.inner_text("#answer") == best["text"]
    mark = page.eval_on_selector(
        "mark.answer", "m => [m.textContent, +m.dataset.start, +m.dataset.end]"
    )
    assert mark == [context[best["start"] : best["end"]], best["start"], best["end"]]
    assert mark[0] == best["text"]
    assert page.inner_text("#answer-context") == context
    alternatives = page.eval_on_selector_all(".alternatives li", "ls => ls.length")
    assert alternatives == len(result["answers"]) > 1
    _check_lambda(page, result)
    page.screenshot(path=str(ARTIFACTS / "playground-qa.png"), full_page=True)

    # 7. A client mistake (no text) is shown as a readable problem, naming the field.
    page.click("#tab-classify")
    page.fill("#target", "")
    with page.expect_response(lambda r: r.url.endswith("/classify")) as info:
        page.click("#run")
    assert info.value.status == 422
    assert info.value.headers["content-type"].startswith("application/problem+json")
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert "422" in error and "inputs.0.target" in error
    assert page.is_hidden("#result")


def test_playground_shows_the_model_card(page: Any, base_url: str) -> None:
    """The classify model's card (GET /v1/models/{name}/card, with the key) opens under the
    model picker, as the API serves it."""
    page.click("#tab-classify")
    page.wait_for_selector("#model-card:not([hidden])")
    page.click("#model-card summary")
    page.wait_for_function(
        "document.getElementById('model-card-text').textContent.startsWith('# tiny-classify')"
    )
    card = httpx.get(
        f"{base_url}/v1/models/classify/card",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    assert card.status_code == 200
    assert page.inner_text("#model-card-text").strip() == card.text.strip()
    assert "## Evaluation" in card.text
    page.screenshot(path=str(ARTIFACTS / "playground-card.png"), full_page=True)


def test_api_docs_render_with_no_network(page: Any, base_url: str) -> None:
    """/docs (Swagger UI) and /redoc load their scripts and styles from this server: with every
    request off the host refused, both render the three task endpoints. (ReDoc's footer links
    a Redocly logo image from its CDN: refused like the rest, it is only a missing picture.)"""
    offsite: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
            return
        if route.request.resource_type != "image":
            offsite.append(f"{route.request.resource_type} {route.request.url}")
        route.abort()

    pg = page.context.new_page()  # the playground's browser; one Playwright per process
    pg.route("**/*", only_local)
    pg.goto(base_url + "/docs")
    pg.wait_for_selector(".opblock-summary-path")
    paths = pg.eval_on_selector_all(
        ".opblock-summary-path", "es => es.map(e => e.getAttribute('data-path'))"
    )
    assert {"/classify", "/tag", "/qa"} <= set(paths)
    pg.screenshot(path=str(ARTIFACTS / "docs-swagger.png"))
    pg.goto(base_url + "/redoc")
    for summary in ("Classify sentences", "Tag words", "Extractive question answering"):
        pg.wait_for_selector(f"h2:has-text('{summary}')")  # the operation's section
    body = pg.inner_text("body")
    assert all(path in body for path in ("/classify", "/tag", "/qa")), body[:2000]
    pg.screenshot(path=str(ARTIFACTS / "docs-redoc.png"))
    pg.close()
    assert offsite == [], f"the docs pages fetched from off the host: {offsite}"
