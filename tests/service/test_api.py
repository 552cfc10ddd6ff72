"""Endpoints against a real server: shapes, offsets, entities, batching invariance, errors."""

from __future__ import annotations

import asyncio
import json
import math
import random
from typing import Any

import httpx
import pytest

from tests.service.conftest import LABELS

pytestmark = pytest.mark.integration

DE = "Angela Merkel traf den Präsidenten von Frankreich in Berlin."
EN = "Angela Merkel met the president of France in Berlin."
ZH = "猫坐在垫子上，看着窗外。"
CONTEXT = (
    "Anna wohnt seit 2019 in Hamburg. Sie arbeitet dort als Lehrerin an einer großen Schule in "
    "der Stadtmitte und fährt jeden Tag mit dem Fahrrad zur Arbeit, auch wenn es regnet. Am "
    "Wochenende besucht sie ihre Eltern in Lübeck, die dort ein kleines Café am Hafen führen."
)


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    assert "Traceback" not in r.text
    return body


# ---------------------------------------------------------------------------------------------
# shapes and values
# ---------------------------------------------------------------------------------------------
def test_classify_shapes_and_source_flag(client: httpx.Client) -> None:
    r = client.post(
        "/classify",
        json={"inputs": [{"target": DE, "source": EN}, {"target": "Das Essen war kalt."}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-classify"
    assert len(body["results"]) == 2
    for res, used in zip(body["results"], [True, False], strict=True):
        assert res["source_used"] is used
        assert set(res["scores"]) == set(LABELS["classify"])
        assert math.isclose(sum(res["scores"].values()), 1.0, abs_tol=1e-5)
        assert res["label"] == max(res["scores"], key=res["scores"].get)
        assert 0.0 <= res["mixup_ratio"] <= 0.5  # λ = λ0 · sigmoid(...), λ0 = 0.5
    # The translation changes the source stream, so it must change the prediction's numbers.
    alone = client.post("/classify", json={"inputs": [{"target": DE}]}).json()["results"][0]
    assert alone["scores"] != body["results"][0]["scores"]
    for name in ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"):
        assert float(r.headers[name]) >= 0.0
    assert r.headers["x-model"] == "tiny-classify"


def test_baseline_bundle_takes_no_source(client: httpx.Client) -> None:
    """translate-train graphs have no source inputs: the service feeds only manifest.inputs."""
    one = {"target": DE, "source": EN}
    r = client.post("/classify", json={"inputs": [one, {"target": DE}], "model": "tt-classify"})
    assert r.status_code == 200, r.text
    a, b = r.json()["results"]
    assert a["source_used"] is False and b["source_used"] is False
    assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)  # the source cannot matter


def test_translation_trust_on_every_endpoint(client: httpx.Client) -> None:
    """A probability when a source is sent to a trust-fitted model; null without a source or
    for a graph without the trust output (the translate-train baseline)."""
    qa_item = {"question": "Wo wohnt Anna?", "context": " ".join([CONTEXT] * 3)}
    qa_src = {"source_question": "Where does Anna live?", "source_context": "Anna lives here."}
    cases = {
        "/classify": ({"target": DE}, {"source": EN}, {"source": "met Berlin the of"}),
        "/tag": ({"target": DE}, {"source": EN}, {"source": "met Berlin the of"}),
        "/qa": (qa_item, qa_src, {**qa_src, "source_context": "lives Anna."}),
    }
    for path, (base, source, other) in cases.items():
        items = [{**base, **source}, base, {**base, **other}]
        r = client.post(path, json={"inputs": items})
        assert r.status_code == 200, r.text
        with_src, without, changed = r.json()["results"]
        assert 0.0 < with_src["translation_trust"] < 1.0, path
        assert without["translation_trust"] is None and without["source_used"] is False
        # The head reads the source: another source gives another value.
        assert changed["translation_trust"] != with_src["translation_trust"], path
    one = {"target": DE, "source": EN}
    r = client.post("/classify", json={"inputs": [one], "model": "tt-classify"})
    assert r.json()["results"][0]["translation_trust"] is None


def test_openapi_documents_trust_and_not_lambda_as_the_quality_signal(
    client: httpx.Client,
) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("ClassifyResult", "TagResult", "QAResult"):
        props = schemas[name]["properties"]
        assert "faithful translation" in props["translation_trust"]["description"], name
        assert (
            "not a measure of the translation's quality" in (props["mixup_ratio"]["description"])
        ), name


def test_tag_offsets_slice_the_text_and_entities_follow_tags(client: httpx.Client) -> None:
    tokens = ["Barack", "Obama", "besuchte", "Paris", "."]
    r = client.post(
        "/tag",
        json={"inputs": [{"target": DE, "source": EN}, {"target": tokens}, {"target": ZH}]},
    )
    assert r.status_code == 200, r.text
    de, pre, zh = r.json()["results"]
    assert de["source_used"] and not pre["source_used"]
    assert [t["text"] for t in de["tokens"]][:3] == ["Angela", "Merkel", "traf"]
    assert de["tokens"][-1]["text"] == "."  # punctuation is its own word
    for t in de["tokens"]:
        assert DE[t["start"] : t["end"]] == t["text"]
        assert t["tag"] in LABELS["tag"] and 0 < t["score"] <= 1
    # pre-split input: one result token per given token, offsets into the joined tokens
    assert [t["text"] for t in pre["tokens"]] == tokens
    joined = " ".join(tokens)
    assert all(joined[t["start"] : t["end"]] == t["text"] for t in pre["tokens"])
    # Chinese: ICU's dictionary words, never the whole sentence as one word
    assert [t["text"] for t in zh["tokens"]] == [
        "猫",
        "坐在",
        "垫子",
        "上",
        "，",
        "看",
        "着",
        "窗外",
        "。",
    ]
    for res, text in ((de, DE), (pre, joined), (zh, ZH)):
        _check_entities(res, text)


def _check_entities(res: dict[str, Any], text: str) -> None:
    tags = [t["tag"] for t in res["tokens"]]
    covered = set()
    for e in res["entities"]:
        span = range(e["token_start"], e["token_end"])
        assert tags[span.start] in (f"B-{e['label']}", f"I-{e['label']}")
        assert all(tags[k] == f"I-{e['label']}" for k in span[1:])
        assert e["start"] == res["tokens"][span.start]["start"]
        assert e["end"] == res["tokens"][span[-1]]["end"]
        assert text[e["start"] : e["end"]] == e["text"]
        covered.update(span)
    # every B-/I- tagged word belongs to exactly one entity, O words to none
    assert covered == {k for k, t in enumerate(tags) if t and t != "O"}


def test_tag_segments_thai_and_chinese_strings_and_takes_tokens(client: httpx.Client) -> None:
    thai, chinese = "แมวนั่งอยู่บนเสื่อ", "北京是中国的首都。"
    r = client.post("/tag", json={"inputs": [{"target": thai}, {"target": chinese}]})
    assert r.status_code == 200, r.text
    th, zh = (res["tokens"] for res in r.json()["results"])
    assert [t["text"] for t in th] == ["แมว", "นั่ง", "อยู่", "บน", "เสื่อ"]
    assert [t["text"] for t in zh] == ["北京", "是", "中国", "的", "首都", "。"]
    for text, tokens in ((thai, th), (chinese, zh)):
        assert all(text[t["start"] : t["end"]] == t["text"] for t in tokens)
    ok = client.post("/tag", json={"inputs": [{"target": ["แมว", "นั่ง", "อยู่", "บน", "เสื่อ"]}]})
    assert ok.status_code == 200
    assert len(ok.json()["results"][0]["tokens"]) == 5


def test_qa_answers_slice_the_context(client: httpx.Client) -> None:
    item = {
        "question": "Wo wohnt Anna?",
        "context": CONTEXT,
        "source_question": "Where does Anna live?",
        "source_context": "Anna has lived in Hamburg since 2019.",
    }
    r = client.post(
        "/qa", json={"inputs": [item, {"question": "Wer?", "context": "Anna."}], "top_k": 3}
    )
    assert r.status_code == 200, r.text
    long, short = r.json()["results"]
    assert long["source_used"] and not short["source_used"]
    assert 1 <= len(long["answers"]) <= 3
    scores = [a["score"] for a in long["answers"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    for a in long["answers"]:
        assert CONTEXT[a["start"] : a["end"]] == a["text"] and a["text"] == a["text"].strip()
    for a in short["answers"]:
        assert "Anna."[a["start"] : a["end"]] == a["text"]


def test_qa_reads_the_whole_long_context(client: httpx.Client) -> None:
    """A context of many windows: answers may come from any of them (offsets stay valid)."""
    context = " ".join([CONTEXT] * 4)
    r = client.post("/qa", json={"inputs": [{"question": "Wo?", "context": context}], "top_k": 20})
    assert r.status_code == 200, r.text
    answers = r.json()["results"][0]["answers"]
    assert len(answers) == 20
    assert all(context[a["start"] : a["end"]] == a["text"] for a in answers)
    assert max(a["end"] for a in answers) > len(CONTEXT)  # beyond the first window's reach


# ---------------------------------------------------------------------------------------------
# batching changes nothing
# ---------------------------------------------------------------------------------------------
def _mixed_requests(n: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(7)
    words = (DE + " " + EN + " " + CONTEXT).split()
    reqs: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        kind = i % 3
        if kind == 0:
            item = {"target": text, **({"source": EN} if i % 2 else {})}
            reqs.append(("/classify", {"inputs": [item], "truncate": True}))
        elif kind == 1:
            tag_items = [{"target": text}, {"target": text.split()[:5]}]
            reqs.append(("/tag", {"inputs": tag_items, "truncate": True}))
        else:
            ctx = " ".join(rng.choice(words) for _ in range(rng.randint(5, 120)))
            qa_item = {"question": text[:60], "context": ctx}
            reqs.append(("/qa", {"inputs": [qa_item], "top_k": 2, "truncate": True}))
    return reqs


def test_200_concurrent_mixed_requests_equal_one_by_one(server: Any, client: httpx.Client) -> None:
    reqs = _mixed_requests(200)
    sequential = []
    for path, body in reqs:
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        sequential.append(r.json())

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as ac:
            return await asyncio.gather(*(ac.post(p, json=b) for p, b in reqs))

    concurrent = asyncio.run(fire())
    assert all(r.status_code == 200 for r in concurrent)
    batched = 0
    for seq, r in zip(sequential, concurrent, strict=True):
        assert _discrete(r.json()) == _discrete(seq)  # labels, tags, spans: identical
        assert _numbers(r.json()) == pytest.approx(_numbers(seq), abs=1e-5)
        batched += float(r.headers["x-queue-time"]) >= 0
    # the concurrent run really was batched: some executed batch held more than one row
    metrics = client.get("/metrics").text
    assert _max_batch_bucket(metrics) > 1


def _discrete(body: dict[str, Any]) -> Any:
    return json.loads(json.dumps(body), parse_float=lambda _: None)


def _numbers(body: dict[str, Any]) -> list[float]:
    out: list[float] = []

    def walk(x: Any) -> None:
        if isinstance(x, float):
            out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(body)
    return out


def _max_batch_bucket(metrics: str) -> float:
    """Largest batch-size bucket bound whose count is below the total (a batch went past it)."""
    counts: dict[str, float] = {}
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("xmixup_batch_size_bucket") and 'model="tiny-' in line:
            le = line.split('le="')[1].split('"')[0]
            counts[le] = counts.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("xmixup_batch_size_count") and 'model="tiny-' in line:
            total += float(line.rsplit(" ", 1)[1])
    below = [float(le) for le, c in counts.items() if le != "+Inf" and c < total]
    return max(below) if below else 0.0


# ---------------------------------------------------------------------------------------------
# client errors
# ---------------------------------------------------------------------------------------------
def test_unknown_model_is_404(client: httpx.Client) -> None:
    body = _problem(
        client.post("/classify", json={"inputs": [{"target": "x"}], "model": "nope"}), 404
    )
    assert "nope" in body["detail"] and "tiny-classify" in body["detail"]
    wrong_task = client.post("/classify", json={"inputs": [{"target": "x"}], "model": "tiny-tag"})
    assert "tag model" in _problem(wrong_task, 404)["detail"]
    _problem(client.get("/v1/models/nope"), 404)


@pytest.mark.parametrize(
    ("path", "payload", "loc"),
    [
        ("/classify", b'{"inputs": [{"target": "x"}', "body"),  # malformed JSON
        ("/classify", {"inputs": [{"target": 5}]}, "inputs.0.target"),
        ("/classify", {"inputs": [{"text": "x"}]}, "inputs.0.target"),
        ("/classify", {"inputs": []}, "inputs"),
        ("/classify", {"inputs": [{"target": "x", "target_pair": "y"}]}, "inputs.0.target_pair"),
        ("/tag", {"inputs": [{"target": ["a", 3]}]}, "inputs.0.target"),
        ("/tag", {"inputs": [{"target": "   "}]}, "inputs.0.target"),
        ("/qa", {"inputs": [{"question": "q"}]}, "inputs.0.context"),
        ("/qa", {"inputs": [{"question": "q", "context": "c"}], "top_k": 0}, "top_k"),
        ("/qa", {"inputs": [{"question": "q", "context": "c"}], "top_k": 500}, "top_k"),
        ("/qa", {"inputs": [{"question": "q", "context": "c"}], "top_k": "many"}, "top_k"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: httpx.Client, path: str, payload: Any, loc: str
) -> None:
    if isinstance(payload, bytes):
        r = client.post(path, content=payload, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=payload)
    body = _problem(r, 422)
    assert any(e["loc"] == loc for e in body["errors"]), body
    assert loc in body["detail"]


def test_lone_surrogate_is_422_not_500(client: httpx.Client) -> None:
    raw = b'{"inputs": [{"target": "abc \\ud800 def"}]}'
    r = client.post("/classify", content=raw, headers={"content-type": "application/json"})
    assert "inputs.0.target" in _problem(r, 422)["detail"]


def test_limits_are_413_naming_the_limit(client: httpx.Client) -> None:
    many = client.post("/classify", json={"inputs": [{"target": "x"}] * 17})
    assert "XMIXUP_MAX_ITEMS_PER_REQUEST" in _problem(many, 413)["detail"]
    big = client.post("/classify", json={"inputs": [{"target": "x" * 70_000}]})
    assert "XMIXUP_MAX_BODY_BYTES" in _problem(big, 413)["detail"]
    chars = client.post("/tag", json={"inputs": [{"target": "ab " * 1500}]})
    assert _problem(chars, 413)["errors"][0]["loc"] == "inputs.0.target"


def test_overlong_text_413_when_not_truncating_else_truncated(client: httpx.Client) -> None:
    long = " ".join(["Berlin"] * 300)  # > max_length (128) tokens, < char limit
    r = client.post("/classify", json={"inputs": [{"target": "ok"}, {"target": long}]})
    body = _problem(r, 413)
    assert body["errors"][0]["loc"] == "inputs.1.target" and "truncate" in body["detail"]
    r = client.post("/classify", json={"inputs": [{"target": long}], "truncate": True})
    assert r.status_code == 200 and r.json()["results"][0]["truncated"] is True
    # tagging: words past the limit come back untagged, never silently dropped
    r = client.post("/tag", json={"inputs": [{"target": long}], "truncate": True})
    tokens = r.json()["results"][0]["tokens"]
    assert len(tokens) == 300 and tokens[0]["tag"] is not None and tokens[-1]["tag"] is None
    # QA: a long question is a limit, a long context is windows (never 413)
    q = client.post("/qa", json={"inputs": [{"question": long, "context": "c"}]})
    assert _problem(q, 413)["errors"][0]["loc"] == "inputs.0.question"


# ---------------------------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------------------------
def test_request_id_models_health_and_metrics(client: httpx.Client) -> None:
    r = client.post(
        "/classify", json={"inputs": [{"target": "x"}]}, headers={"X-Request-ID": "abc-123"}
    )
    assert r.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and set(ready["models"]) >= {"tiny-classify", "tiny-qa"}
    models = {m["name"]: m for m in client.get("/v1/models").json()["data"]}
    assert set(models) == {"tiny-classify", "tiny-tag", "tiny-qa", "tt-classify"}
    assert models["tiny-classify"]["default"] and not models["tt-classify"]["default"]
    assert models["tiny-qa"]["manifest"]["doc_stride"] == 16
    assert models["tt-classify"]["manifest"]["inputs"] == [
        "target_input_ids",
        "target_attention_mask",
    ]
    text = client.get("/metrics").text
    for needle in (
        'xmixup_requests_total{route="/classify",status="200"}',
        'xmixup_batch_tokens_total{kind="real",model="tiny-classify"}',
        'xmixup_batch_tokens_total{kind="padded",model="tiny-classify"}',
        "xmixup_queue_wait_seconds_bucket",
        "xmixup_inference_seconds_bucket",
        "xmixup_in_flight_requests",
        'xmixup_queue_depth{model="tiny-tag"}',
        'xmixup_model_ready{model="tiny-qa"} 1.0',
    ):
        assert needle in text, needle
    assert client.get("/openapi.json").json()["info"]["title"] == "xmixup"
