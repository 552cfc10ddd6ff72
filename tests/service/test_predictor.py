"""``xmixup.Predictor`` against the HTTP service on the same bundles and inputs.

The Python API runs the service's own pipeline (xmixup/core/), so on the same multilingual
items it must give the same labels, tags, entities and spans, and scores within 1e-6 (batch
composition differs, and padding invariance holds to float precision); the errors it raises
are the ones the service answers with 4xx, field for field.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import REPO
from xmixup import Predictor
from xmixup.core.request_errors import InputTooLarge, InvalidInput, ModelNotFound, RequestError

pytestmark = pytest.mark.integration

CONTEXT = (
    "Anna wohnt seit 2019 in Hamburg. Sie arbeitet dort als Lehrerin an einer großen Schule in "
    "der Stadtmitte und fährt jeden Tag mit dem Fahrrad zur Arbeit, auch wenn es regnet. Am "
    "Wochenende besucht sie ihre Eltern in Lübeck, die dort ein kleines Café am Hafen führen."
)
CLASSIFY = [
    {"target": "Der Film war überraschend gut.", "source": "The film was surprisingly good."},
    {"target": "猫坐在垫子上，看着窗外。", "source": "The cat sits on the mat."},
    {"target": "Это был худший день в моей жизни."},
    {"target": "الطعام كان باردا جدا", "source": "The food was very cold"},
    {"target": "Hyvää huomenta kaikille! " * 6, "source": "Good morning everyone! " * 6},
]
TAG = [
    {
        "target": "Angela Merkel traf Emmanuel Macron in Berlin.",
        "source": "Angela Merkel met Emmanuel Macron in Berlin.",
    },
    {"target": ["Barack", "Obama", "besuchte", "Paris", "."]},
    {"target": "北京是中华人民共和国的首都。", "source": ["Beijing", "is", "the", "capital", "."]},
    {"target": "Владимир живёт в Москве", "source": "Vladimir lives in Moscow"},
]
QA = [
    {"question": "Wo wohnt Anna?", "context": CONTEXT},  # several windows at max_length 64
    {
        "question": "Wo wohnt Anna?",
        "context": "Anna wohnt seit 2019 in Hamburg.",
        "source_question": "Where does Anna live?",
        "source_context": "Anna has lived in Hamburg since 2019.",
    },
    {"question": "谁住在汉堡？", "context": "安娜住在汉堡。她是老师。"},
]


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats within 1e-6 (everything else exactly: labels, tags, offsets, texts)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), path
        assert math.isclose(a, b, abs_tol=1e-6), f"{path}: {a} vs {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: {a} vs {b}"
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a} vs {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


@pytest.fixture(scope="module")
def predictors(models_dir: Path) -> dict[str, Predictor]:
    return {
        task: Predictor(models_dir / f"tiny-{task}", threads=1, batch_size=2)
        for task in ("classify", "tag", "qa")
    }


@pytest.mark.parametrize(
    ("task", "items", "extra"),
    [("classify", CLASSIFY, {}), ("tag", TAG, {}), ("qa", QA, {"top_k": 3})],
)
def test_predictor_answers_what_the_service_answers(
    client: httpx.Client,
    predictors: dict[str, Predictor],
    task: str,
    items: list[dict[str, Any]],
    extra: dict[str, Any],
) -> None:
    # The service fixture refuses over-long text (truncate off); both sides truncate here.
    r = client.post(f"/{task}", json={"inputs": items, "truncate": True, **extra})
    assert r.status_code == 200, r.text
    http = r.json()["results"]
    # batch_size 2: the predictor's batches differ from the service's, the answers must not.
    results = getattr(predictors[task], task)(items, **extra)
    local = [res.model_dump(mode="json") for res in results]
    _same(local, http)
    if task == "tag":
        assert any(res["entities"] for res in local)  # spans were compared, not just empties
    if task == "qa":
        assert all(len(res["answers"]) == 3 for res in local)
    assert predictors[task].predict(items, **extra) == results  # the bundle's own task


def _http_error(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    return r.json()


@pytest.mark.parametrize(
    ("task", "items", "extra", "error"),
    [
        ("classify", [{"target": "ok"}, {"target": ""}], {}, InvalidInput),
        ("classify", [{"target": "ok", "text": "typo"}], {}, InvalidInput),
        ("classify", [{"target": "ok", "source_pair": "x"}], {}, InvalidInput),
        ("classify", [{"target": "Wort " * 200}], {}, InputTooLarge),
        ("tag", [{"target": "   "}], {}, InvalidInput),
        ("tag", [{"target": ["ok", ""]}], {}, InvalidInput),
        (
            "qa",
            [{"question": "Wo?", "context": "Hier.", "source_question": "Where?"}],
            {},
            InvalidInput,
        ),
    ],
)
def test_predictor_raises_what_the_service_answers(
    client: httpx.Client,
    predictors: dict[str, Predictor],
    task: str,
    items: list[dict[str, Any]],
    extra: dict[str, Any],
    error: type[RequestError],
) -> None:
    """Same status, same field paths and messages (the server refuses over-long text, so the
    predictor is asked to refuse too)."""
    problem = _http_error(client, f"/{task}", {"inputs": items, **extra})
    with pytest.raises(error) as info:
        getattr(predictors[task], task)(items, truncate=False, **extra)
    exc = info.value
    assert exc.status == problem["status"]
    assert [e.model_dump() for e in exc.errors or []] == problem["errors"]
    assert exc.detail == problem["detail"]


def test_predictor_refuses_another_task_and_bad_top_k(predictors: dict[str, Predictor]) -> None:
    with pytest.raises(ModelNotFound, match="is a classify model"):
        predictors["classify"].tag([{"target": "x"}])
    with pytest.raises(InvalidInput, match="top_k"):
        predictors["qa"].qa(QA[:1], top_k=0)
    with pytest.raises(InvalidInput, match="list of items"):
        predictors["classify"].classify({"target": "x"})  # type: ignore[arg-type]
    assert predictors["classify"].classify([]) == []


def test_import_is_cheap_and_the_predictor_torch_and_fastapi_free() -> None:
    code = (
        "import sys, json, xmixup\n"
        "cheap = 'xmixup.predictor' not in sys.modules and 'onnxruntime' not in sys.modules\n"
        "from xmixup import Predictor\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'fastapi', 'starlette', 'service', 'training'})\n"
        "print(json.dumps([cheap, heavy]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == [True, []]
