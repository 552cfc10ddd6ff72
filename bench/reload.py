"""Model reloads under load: how long a swap takes and what it costs in memory.

    .venv/bin/python bench/reload.py                      # cached e5-small bundle, 3 reloads
    .venv/bin/python bench/reload.py --bundle DIR --reloads 5 --out /tmp/reload.json

Serves the bundle as model "m" and, ``--reloads`` times, renames a new version of it into the
models directory (the same files, a manifest with another ``created_at``: a new version that
must be verified, loaded and warmed up like any other) and calls ``POST /v1/admin/reload``,
while ``--clients`` closed-loop clients keep sending /classify. Per reload: its duration, the
server's peak resident memory while it ran (two sessions side by side), the resident memory
once the old version is unloaded, and the requests answered meanwhile by status. Writes
``--out`` (results/reload.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loadgen import run_load  # noqa: E402
from bench.serve import default_bundle, requests_payloads, say, start_service  # noqa: E402
from bench.soak import cpu_model, rss_mb  # noqa: E402

ADMIN_KEY = "bench-reload"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="classification bundle (default: cached e5)")
    p.add_argument("--reloads", type=int, default=3)
    p.add_argument("--clients", type=int, default=4, help="closed-loop clients during reloads")
    p.add_argument("--out", default=str(REPO / "results" / "reload.json"))
    return p.parse_args(argv)


def new_version(bundle: Path, out: Path, stamp: str) -> Path:
    """``bundle``'s files (linked, not copied) under a manifest that differs in created_at."""
    out.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        (out / name).symlink_to((bundle / name).resolve())
    manifest["created_at"] = stamp
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


class PeakRss:
    """The largest VmRSS of ``pid`` seen while the context is open (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)


async def one_reload(
    url: str, models: Path, work: Path, bundle: Path, k: int, clients: int
) -> dict[str, Any]:
    import httpx

    fresh = new_version(bundle, work / f".m-{k}", f"bench-reload-{k}")
    (models / "m").rename(work / f".m-retired-{k}")
    fresh.rename(models / "m")
    payloads = requests_payloads(64)
    stop_load = asyncio.Event()

    async def keep_loading() -> list[Any]:
        results = []
        while not stop_load.is_set():
            results.append(await run_load(url, "/classify", payloads, clients, 0.5))
        return results

    loader = asyncio.ensure_future(keep_loading())
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        r = await client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    seconds = time.perf_counter() - start
    await asyncio.sleep(1.0)  # the old version drains and is unloaded
    stop_load.set()
    statuses: dict[str, int] = {}
    for res in await loader:
        for status, n in res.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
        for kind, n in res.transport_errors.items():
            statuses[kind] = statuses.get(kind, 0) + n
    report = r.json()
    assert r.status_code == 200, report
    return {"seconds": seconds, "version": report["versions"]["m"], "requests": statuses}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bundle = Path(args.bundle) if args.bundle else default_bundle()
    with tempfile.TemporaryDirectory(prefix="xmixup-reload-") as tmp:
        work = Path(tmp)
        models = work / "models"
        models.mkdir()
        new_version(bundle, work / ".m-0", "bench-reload-0").rename(models / "m")
        env = {"XMIXUP_ADMIN_KEY": ADMIN_KEY, "XMIXUP_MAX_BATCH_SIZE": "32"}
        proc, url = start_service(models, env)
        try:
            asyncio.run(run_load(url, "/classify", requests_payloads(64), args.clients, 3.0))
            serving = rss_mb(proc.pid)
            say(f"serving: rss {serving:.0f} MB")
            reloads = []
            for k in range(1, args.reloads + 1):
                with PeakRss(proc.pid) as peak:
                    record = asyncio.run(one_reload(url, models, work, bundle, k, args.clients))
                record |= {"peak_rss_mb": peak.peak, "rss_after_mb": rss_mb(proc.pid)}
                reloads.append(record)
                say(
                    f"reload {k}: {record['seconds']:.1f} s, peak rss {peak.peak:.0f} MB, after "
                    f"{record['rss_after_mb']:.0f} MB, requests meanwhile {record['requests']}"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    size = sum(
        (bundle / n).stat().st_size
        for n in json.loads((bundle / "manifest.json").read_text())["files"]
    )
    result = {
        "bundle": bundle.name,
        "bundle_mb": size / 2**20,
        "clients": args.clients,
        "rss_serving_mb": serving,
        "reloads": reloads,
        "host": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
