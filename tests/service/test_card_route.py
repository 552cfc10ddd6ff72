"""The model card over HTTP: /v1/models links it, /v1/models/{name}/card serves the bundle's
README.md as Markdown; a bundle exported without one has `card: null` and a 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.core.toy_bundle import make_toy_bundle

pytestmark = pytest.mark.integration


def test_models_link_their_card_and_the_card_is_the_bundles(
    client: httpx.Client, models_dir: Path
) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["data"]}
    for name in ("tiny-classify", "tiny-tag", "tiny-qa", "tt-classify"):
        assert models[name]["card"] == f"/v1/models/{name}/card"
        r = client.get(models[name]["card"])
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/markdown; charset=utf-8"
        assert r.text == (models_dir / name / "README.md").read_text(encoding="utf-8")
        assert r.text.startswith(f"# {name}\n") and "## Intended use and limits" in r.text
    assert client.get("/v1/models/tiny-tag").json()["card"] == "/v1/models/tiny-tag/card"
    assert client.get("/v1/models/nope/card").status_code == 404


def test_a_bundle_without_a_card(start_server: Any, tmp_path: Path) -> None:
    make_toy_bundle(tmp_path / "models" / "old")
    server = start_server({"XMIXUP_WARMUP": "false"}, models=tmp_path / "models")
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        assert c.get("/v1/models").json()["data"][0]["card"] is None
        r = c.get("/v1/models/old/card")
        assert r.status_code == 404 and "without a model card" in r.json()["detail"]
