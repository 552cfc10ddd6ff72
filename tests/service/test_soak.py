"""bench/soak.py end to end on a tiny bundle: a short soak (memory must not grow) and an
overload burst at 2x saturation (shed with 429 + Retry-After, never 5xx, then recover)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_short_soak_and_overload(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    # Half of saturation: the suite shares its cores with other work, and what this test bounds
    # is memory growth and the absence of 5xx, not the host's capacity.
    args = ["--bundle", str(models_dir / "tiny-classify"), "--duration", "40", "--interval", "10"]
    args += ["--load", "0.5"]
    args += ["--saturation-seconds", "3", "--overload", "--overload-seconds", "6"]
    args += ["--calm-seconds", "5", "--max-queue", "64", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    soak, over = result["soak"], result["overload"]
    assert result["saturation_items_per_s"] > 0 and result["host"]["cpu"]
    assert len(soak["per_interval"]) == 4 and all(r["rss_mb"] for r in soak["per_interval"])
    assert soak["5xx"] == 0, soak["per_interval"]
    # kept-alive connections the server closed idle are never written to (bench/loadgen.py)
    assert soak["transport_errors"] == {}, soak["per_interval"]
    assert soak["items_per_s"] > 0.5 * soak["rate_per_s"]
    # RSS must stay flat once warm: on a quiet host the growth after the first interval is well
    # under 1 %, but on one loaded by other jobs (load 9 on 2 cores) batches come out larger
    # than during warm-up and onnxruntime's arenas reach their high-water mark later (measured
    # 5.0 % from the first interval). So: the last two intervals against the second, where a
    # leak of a few KiB per request still shows, and a looser bound from the first.
    rss = [r["rss_mb"] for r in soak["per_interval"]]
    assert (rss[-1] - rss[1]) / rss[1] < 0.05, soak["per_interval"]
    assert soak["rss_growth"] < 0.10, soak["per_interval"]
    assert over["5xx"] == 0
    assert over["share_429"] > 0, over["burst"]  # 2x saturation with a 64-row queue must shed
    assert over["retry_after_on_429"] == 1.0
    assert over["burst"]["ok"] > 0 and over["accepted_p99_ms"] is not None
    # Recovered inside the calm window after the burst (10 s; it returns 10.0 when never).
    assert over["recovery_s"] < 10.0, over["after"]
