"""Soak and overload: the service for a long time at ~80 % of its saturation, then at 2x.

    .venv/bin/python bench/soak.py --duration 600                  # 10-minute soak
    .venv/bin/python bench/soak.py --duration 600 --overload       # + the overload run
    .venv/bin/python bench/soak.py --duration 60 --interval 10 --overload --out /tmp/soak.json

1. Saturation: closed-loop load (``--clients``) after a warm-up; its items/s is "saturation".
2. Soak: open-loop requests at ``--load`` x saturation for ``--duration`` s. Per ``--interval``:
   throughput, p50/p99 of answered requests, failed requests (anything but 200) and the
   server's resident memory (VmRSS of its process). ``rss_growth`` compares the last interval
   with the first (after warm-up), as a fraction.
3. Overload (``--overload``): open-loop at ``--overload-factor`` x saturation for
   ``--overload-seconds``, between two calm phases at half saturation. The server must shed
   with 429 + Retry-After (never 5xx, never a hang) and keep a bounded p99 for what it accepts;
   ``recovery_s`` is how long after the burst the answers are back to the calm phase's p99
   with no 429.

Writes ``--out`` (results/soak.json; keys of a part not run this time are kept from the file)
with the CPU model. Without --bundle the cached e5-small classification bundle of
bench/serve.py is used (random head: load behaviour does not depend on training).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import cpu_model, rss_mb  # noqa: E402
from bench.loadgen import Sample, run_load, run_open_loop, transport_errors  # noqa: E402
from bench.serve import (  # noqa: E402
    _run_async,
    default_bundle,
    requests_payloads,
    say,
    start_service,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="classification bundle (default: cached e5)")
    p.add_argument("--duration", type=float, default=600.0, help="soak seconds (0: skip soak)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds per soak record")
    p.add_argument("--load", type=float, default=0.8, help="soak rate as a share of saturation")
    p.add_argument("--clients", type=int, default=32, help="closed-loop clients for saturation")
    p.add_argument("--saturation-seconds", type=float, default=10.0)
    p.add_argument("--overload", action="store_true", help="also run the overload burst")
    p.add_argument("--overload-factor", type=float, default=2.0)
    p.add_argument("--overload-seconds", type=float, default=30.0)
    p.add_argument("--calm-seconds", type=float, default=10.0, help="half-load before/after")
    p.add_argument(
        "--max-queue", type=int, default=64, help="XMIXUP_MAX_QUEUE: rows queued before 429"
    )
    p.add_argument("--out", default=str(REPO / "results" / "soak.json"))
    return p.parse_args(argv)


def _ms(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else None


def summarize(samples: list[Sample], start: float, end: float) -> dict[str, Any]:
    """Counts and latencies of the requests sent in [start, end) seconds."""
    part = [s for s in samples if start <= s.sent_s < end]
    ok = [s.latency_s for s in part if s.status == 200]
    statuses: dict[str, int] = {}
    for s in part:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    return {
        "sent": len(part),
        "ok": len(ok),
        "items_per_s": len(ok) / (end - start),
        "p50_ms": _ms(ok, 50),
        "p99_ms": _ms(ok, 99),
        "failed": len(part) - len(ok),
        "statuses": statuses,
        "transport_errors": transport_errors(part),  # status 0 by kind
        "retried": sum(s.retried for s in part),  # re-sent once: the kept-alive conn was closed
    }


async def saturation(url: str, clients: int, seconds: float) -> float:
    payloads = requests_payloads(64)
    await run_load(url, "/classify", payloads, clients, min(3.0, seconds))  # warm-up
    res = await run_load(url, "/classify", payloads, clients, seconds)
    return res.items / res.elapsed_s


async def soak(url: str, pid: int, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    rss: list[float] = []

    async def watch_memory() -> None:
        while True:
            await asyncio.sleep(args.interval)
            rss.append(rss_mb(pid))

    watcher = asyncio.ensure_future(watch_memory())
    samples = await run_open_loop(url, "/classify", requests_payloads(64), rate, args.duration)
    watcher.cancel()
    n = int(args.duration // args.interval)
    if len(rss) < n:
        # a busy host can run the watcher's last wake-up just after the load ends
        rss.append(rss_mb(pid))
    per = [summarize(samples, k * args.interval, (k + 1) * args.interval) for k in range(n)]
    for k, record in enumerate(per):
        record["minute" if args.interval == 60 else "interval"] = k + 1
        record["rss_mb"] = rss[k] if k < len(rss) else None
    known = [r["rss_mb"] for r in per if r["rss_mb"] is not None]
    p99s = [r["p99_ms"] for r in per if r["p99_ms"] is not None]
    whole = summarize(samples, 0.0, args.duration)
    return {
        "rate_per_s": rate,
        "duration_s": args.duration,
        "interval_s": args.interval,
        "per_interval": per,
        "items_per_s": whole["items_per_s"],
        "failed": whole["failed"],
        "transport_errors": whole["transport_errors"],
        "retried": whole["retried"],
        "5xx": sum(v for k, v in whole["statuses"].items() if k.startswith("5")),
        "rss_first_mb": known[0] if known else None,
        "rss_last_mb": known[-1] if known else None,
        # the first interval holds the warm-up (allocator pools, onnxruntime arenas)
        "rss_growth": (known[-1] - known[0]) / known[0] if len(known) > 1 else None,
        "p99_drift": (p99s[-1] / p99s[0]) if len(p99s) > 1 and p99s[0] else None,
    }


def recovery_s(samples: list[Sample], burst_end: float, end: float, calm_p99: float) -> float:
    """Seconds after the burst until every later 1-s bucket is 429-free and near calm p99."""
    bound = max(2 * calm_p99, calm_p99 + 50.0)
    buckets = np.arange(burst_end, end - 1e-9, 1.0)
    good = []
    for b in buckets:
        s = summarize(samples, b, b + 1.0)
        good.append(
            s["sent"] > 0
            and s["statuses"].get("429", 0) == 0
            and (s["p99_ms"] is None or s["p99_ms"] <= bound)
        )
    for i in range(len(good)):
        if all(good[i:]):
            return float(buckets[i] - burst_end) if i else 0.0
    return float(end - burst_end)


async def overload(url: str, sat: float, args: argparse.Namespace) -> dict[str, Any]:
    calm, burst = args.calm_seconds, args.overload_seconds
    payloads = requests_payloads(64)
    before = await run_open_loop(url, "/classify", payloads, 0.5 * sat, calm)
    rate = args.overload_factor * sat
    # The calm phase after the burst starts when the burst stops sending, while its backlog
    # still drains: recovery is timed from there, the drain included.
    burst_task = asyncio.ensure_future(run_open_loop(url, "/classify", payloads, rate, burst))
    await asyncio.sleep(burst)
    after = await run_open_loop(url, "/classify", payloads, 0.5 * sat, 2 * calm)
    during = await burst_task
    calm_stats = summarize(before, 0.0, calm)
    burst_stats = summarize(during, 0.0, burst)
    n429 = burst_stats["statuses"].get("429", 0)
    shed = [s for s in during if s.status == 429]
    return {
        "rate_per_s": rate,
        "factor": args.overload_factor,
        "burst_s": burst,
        "max_queue": args.max_queue,
        "calm": calm_stats,
        "burst": burst_stats,
        "after": summarize(after, 0.0, 2 * calm),
        "5xx": sum(
            v
            for part in (before, during, after)
            for k, v in summarize(part, 0.0, 1e9)["statuses"].items()
            if k.startswith("5")
        ),
        "transport_errors": sum(
            1 for part in (before, during, after) for s in part if not s.status
        ),
        "transport_error_kinds": transport_errors([*before, *during, *after]),
        "share_429": n429 / max(1, burst_stats["sent"]),
        "retry_after_on_429": (sum(s.retry_after for s in shed) / len(shed)) if shed else None,
        "accepted_p99_ms": burst_stats["p99_ms"],
        "recovery_s": recovery_s(after, 0.0, 2 * calm, calm_stats["p99_ms"] or 0.0),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bundle = Path(args.bundle) if args.bundle else default_bundle()
    env = {"XMIXUP_MAX_QUEUE": str(args.max_queue), "XMIXUP_MAX_BATCH_SIZE": "32"}
    proc, url = start_service(bundle, env)
    try:
        sat = _run_async(saturation(url, args.clients, args.saturation_seconds))
        say(f"saturation: {sat:.1f} items/s ({args.clients} closed-loop clients)")
        result: dict[str, Any] = {}
        out = Path(args.out)
        if out.is_file():
            result = json.loads(out.read_text())
        result.update(
            saturation_items_per_s=sat,
            bundle=bundle.name,
            host={
                "cpu": cpu_model(),
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "loadavg_1m_at_start": os.getloadavg()[0],
            },
        )
        if args.duration > 0:
            result["soak"] = _run_async(soak(url, proc.pid, args.load * sat, args))
            s = result["soak"]
            say(
                f"soak {args.duration:.0f}s at {args.load * sat:.1f}/s: {s['items_per_s']:.1f} "
                f"items/s, failed {s['failed']}, rss growth {s['rss_growth']}, "
                f"p99 drift {s['p99_drift']}"
            )
        if args.overload:
            result["overload"] = _run_async(overload(url, sat, args))
            o = result["overload"]
            say(
                f"overload x{args.overload_factor}: 5xx {o['5xx']}, 429 share "
                f"{o['share_429']:.2f}, accepted p99 {o['accepted_p99_ms']} ms, "
                f"recovered in {o['recovery_s']:.1f} s"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {out}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
