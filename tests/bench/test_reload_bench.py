"""bench/reload.py end to end on a toy bundle: every reload swaps the version, requests sent
meanwhile are all answered, and the memory figures are there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.reload import main
from tests.core.toy_bundle import make_toy_bundle


@pytest.mark.integration
def test_reload_bench_on_a_toy_bundle(tmp_path: Path) -> None:
    bundle = make_toy_bundle(tmp_path / "toy")
    out = tmp_path / "reload.json"
    assert (
        main(["--bundle", str(bundle), "--reloads", "2", "--clients", "2", "--out", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    reloads = result["reloads"]
    assert len(reloads) == 2 and len({r["version"] for r in reloads}) == 2
    for r in reloads:
        assert set(r["requests"]) == {"200"} and r["requests"]["200"] > 0
        assert r["peak_rss_mb"] >= result["rss_serving_mb"] * 0.5 and r["rss_after_mb"] > 0
