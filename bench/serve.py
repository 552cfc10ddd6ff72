"""Serving benchmark: bare onnxruntime vs the service (dynamic batching) vs batching off.

    .venv/bin/python bench/serve.py --quick            # < 1 minute once the bundle is cached
    .venv/bin/python bench/serve.py --bundle DIR       # any classification bundle

Measured in one run, on loopback, on the same inputs (sentence + English translation, 1 item
per request) and the same onnxruntime thread count:
  (a) bare onnxruntime: the service's own featurisation and padding, batches of
      --max-batch-size formed by the batcher's policy (length-sorted windows), back to back;
  (a') a lone client against bare batch 1, and the most clients against bare batch
      --max-batch-size, each in alternating turns (the host's speed drifts; turns side by side
      cancel the drift) -> `one_client_vs_ort_batch1`, `saturation_vs_ort`;
  (b) the service (`xmixup serve`, dynamic batching) at 1, 8, 32, 128 concurrent clients;
  (c) the service with batching off (XMIXUP_MAX_BATCH_SIZE=1) at the same concurrencies.
Clients are closed-loop (each sends its next request when the last is answered).

Writes results/serve.json with `service_vs_ort` (best (b) throughput / (a)) and
`batching_speedup_32` ((b) / (c) at 32 clients) beside the raw figures, and results/serve.png.
Without --bundle a classification bundle on the default backbone (random head: throughput does
not depend on training) is exported once and cached in cache/bench-serve-bundle.
Note: the load generator (bench/loadgen.py, a lean keep-alive HTTP/1.1 client) shares the
machine's cores with the server; on a small host what it costs is still part of the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info, merge_results  # noqa: E402
from bench.lone_wait import bench_lone_wait  # noqa: E402
from bench.serve_inputs import (  # noqa: E402
    SENTENCES,
    BareOrt,
    bench_ort,
    requests_payloads,
)


def say(message: str) -> None:
    print(f"[bench/serve {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="classification bundle (default: cached e5)")
    p.add_argument("--quick", action="store_true", help="short runs (whole bench < 1 min)")
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--duration", type=float, default=None, help="seconds per point")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default all)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", default=str(REPO / "results" / "serve.json"))
    return p.parse_args(argv)


def default_bundle() -> Path:
    out = REPO / "cache" / "bench-serve-bundle"
    if (out / "manifest.json").is_file():
        return out
    say("exporting a classification bundle on the default backbone (once; cached)")
    import tempfile

    import torch

    from model_export.onnx_export import export_bundle
    from training.backbone import resolve_backbone
    from training.config import XMixupConfig
    from training.modeling import XMixupModel

    torch.manual_seed(0)
    config = XMixupConfig(task="classify", labels=["negative", "neutral", "positive"])
    model = XMixupModel.from_backbone(resolve_backbone(None, log=say), config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = model.save_pretrained(Path(tmp) / "checkpoint")
        export_bundle(ckpt, out, name="bench-classify", force=True)
    return out


# ---------------------------------------------------------------------------------------------
# (b), (c) the service over HTTP
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(bundle: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    full = {**os.environ, "PYTHONPATH": str(REPO), "XMIXUP_LOG_JSON": "true", **env}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xmixup",
            "--log-level",
            "WARNING",
            "serve",
            "--models",
            str(bundle),
            "--port",
            str(port),
        ],
        env=full,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("service not ready in 60 s")


async def load(url: str, clients: int, duration: float) -> dict[str, float]:
    from bench.loadgen import run_load

    res = await run_load(url, "/classify", requests_payloads(64), clients, duration)
    lat = np.asarray(res.latencies_s) * 1000 if res.latencies_s else np.zeros(1)
    return {
        "clients": clients,
        "items_per_s": res.items / res.elapsed_s,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": res.errors,
    }


def _run_async(coro: Any) -> Any:
    try:  # the server runs on uvloop too; the client's own loop overhead matters on 2 cores
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def bench_service(
    bundle: Path, env: dict[str, str], levels: list[int], duration: float, label: str
) -> list[dict[str, float]]:
    proc, url = start_service(bundle, env)
    try:
        out = []
        for clients in levels:
            point = _run_async(load(url, clients, duration))
            say(
                f"{label} @{clients:>3} clients: {point['items_per_s']:7.1f} items/s  "
                f"p50 {point['p50_ms']:.1f} p95 {point['p95_ms']:.1f} p99 {point['p99_ms']:.1f} ms"
            )
            out.append(point)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def bench_turns(
    bundle: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    *,
    batch: int,
    clients: int,
    rounds: int,
    seconds: float,
) -> dict[str, Any]:
    """The service at ``clients`` against bare onnxruntime at ``batch``, interleaved:
    ``rounds`` turns of ``seconds`` each, bare then service, on the same inputs. On a shared
    host the speed drifts by tens of percent over a minute; two figures taken minutes apart
    compare the drift, turns taken side by side compare the service."""
    bare = BareOrt(bundle, batch, args.threads, args.device)
    proc, url = start_service(bundle, env)
    turns: list[dict[str, float]] = []
    try:
        _run_async(load(url, clients, min(seconds, 2.0)))  # warm-up: first requests, full queue
        for _ in range(rounds):
            done, elapsed = bare.run_for(seconds)
            point = _run_async(load(url, clients, seconds))
            turns.append(
                {
                    "ort_items_per_s": done / elapsed,
                    "service_items_per_s": point["items_per_s"],
                    "service_p50_ms": point["p50_ms"],
                }
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    ort_rate = float(np.mean([t["ort_items_per_s"] for t in turns]))
    service_rate = float(np.mean([t["service_items_per_s"] for t in turns]))
    ratios = [t["service_items_per_s"] / t["ort_items_per_s"] for t in turns]
    return {
        "ratio": service_rate / ort_rate,
        "ratio_per_turn": [round(r, 3) for r in ratios],
        "ort_batch": batch,
        "ort_items_per_s": ort_rate,
        "clients": clients,
        "service_items_per_s": service_rate,
        "rounds": rounds,
        "seconds_per_turn": seconds,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, name in (("service", "service (dynamic batching)"), ("no_batching", "batch size 1")):
        pts = result[key]
        xs = [p["clients"] for p in pts]
        ax1.plot(xs, [p["items_per_s"] for p in pts], marker="o", label=name)
        ax2.plot(xs, [p["p50_ms"] for p in pts], marker="o", label=f"{name} p50")
        ax2.plot(xs, [p["p99_ms"] for p in pts], marker="x", linestyle="--", label=f"{name} p99")
    ax1.axhline(
        result["ort"]["items_per_s"],
        color="gray",
        linestyle=":",
        label=f"bare onnxruntime (batch {result['ort']['batch']})",
    )
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.legend(fontsize=8)
    ax1.set_ylabel("items / s")
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    fig.suptitle(
        f"xmixup serve: {result['bundle_name']} on {result['host']['cpu_count']} CPU cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",")]
    duration = args.duration or (2.5 if args.quick else 15.0)
    bundle = Path(args.bundle) if args.bundle else default_bundle()
    env = {
        "XMIXUP_MAX_BATCH_SIZE": str(args.max_batch_size),
        "XMIXUP_MAX_QUEUE": "4096",
        "XMIXUP_DEVICE": args.device,
    }
    if args.threads:
        env["XMIXUP_INTRA_OP_THREADS"] = str(args.threads)
    say(f"bundle {bundle}; {duration:.0f}s per point; clients {levels}")
    ort = bench_ort(bundle, args.max_batch_size, args.threads, duration, args.device)
    say(f"bare onnxruntime, batch {args.max_batch_size}: {ort['items_per_s']:.1f} items/s")
    # What batching can buy on this hardware at all: the batching ratio of the service cannot
    # exceed onnxruntime's own batch-N / batch-1 ratio (on a few CPU cores a single item already
    # keeps every core busy; on a GPU the ratio is large).
    ort1 = bench_ort(bundle, 1, args.threads, duration, args.device)
    say(f"bare onnxruntime, batch 1: {ort1['items_per_s']:.1f} items/s")
    lone_wait = bench_lone_wait(bundle, args.threads, SENTENCES[0])
    say(f"a lone request through the batcher (ms, p50): {lone_wait}")
    one_client, saturation = side_by_side(bundle, env, args, max(levels), duration)
    service = bench_service(bundle, env, levels, duration, "service    ")
    nobatch = bench_service(
        bundle,
        {**env, "XMIXUP_MAX_BATCH_SIZE": "1", "XMIXUP_MAX_WAIT_MS": "0"},
        levels,
        duration,
        "batch-of-1 ",
    )
    best = max(p["items_per_s"] for p in service)
    by_clients = {p["clients"]: p["items_per_s"] for p in service}
    at32 = by_clients.get(32)
    nb32 = {p["clients"]: p["items_per_s"] for p in nobatch}.get(32)
    result: dict[str, Any] = {
        "service_vs_ort": best / ort["items_per_s"],
        "batching_speedup_32": (at32 / nb32) if at32 and nb32 else None,
        # a lone client against bare onnxruntime at batch 1, in turns side by side: what the
        # service adds per request
        "one_client_vs_ort_batch1": one_client["ratio"],
        "one_client": one_client,
        # the most clients against bare onnxruntime at --max-batch-size, in turns side by side
        "saturation_vs_ort": saturation["ratio"],
        "saturation": saturation,
        "goals": {
            "service_vs_ort": 0.85,
            "batching_speedup_32": 4.0,
            "one_client_vs_ort_batch1": 0.9,
            "saturation_vs_ort": 0.95,
        },
        "ort_batching_ceiling": ort["items_per_s"] / ort1["items_per_s"],
        "ort": ort,
        "ort_batch1": ort1,
        "lone_request_batcher_ms": lone_wait,
        "service": service,
        "no_batching": nobatch,
        # relative to the repo when inside it: results are committed, machine paths are not
        "bundle": str(bundle.resolve().relative_to(REPO))
        if bundle.resolve().is_relative_to(REPO)
        else bundle.name,
        "bundle_name": json.loads((bundle / "manifest.json").read_text())["name"],
        "duration_s": duration,
        "quick": args.quick,
        "device": args.device,
        # other work on the host distorts every figure; its load average is recorded in it
        "host": host_info(),
    }
    out = Path(args.out)
    merge_results(out, result)  # keeps other benches' keys (bench/startup.py: "startup")
    plot(result, out.with_suffix(".png"))
    report(result, args.max_batch_size, max(levels), out)
    return 0


def side_by_side(
    bundle: Path, env: dict[str, str], args: argparse.Namespace, most: int, duration: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ratios with goals, each in alternating turns: a lone client vs bare batch 1,
    ``most`` clients vs bare --max-batch-size."""
    turns = {"rounds": 3 if args.quick else 6, "seconds": duration / 3}
    one_client = bench_turns(bundle, env, args, batch=1, clients=1, **turns)
    saturation = bench_turns(bundle, env, args, batch=args.max_batch_size, clients=most, **turns)
    for what, t in (("a lone client", one_client), (f"{most} clients", saturation)):
        say(
            f"{what} vs bare batch {t['ort_batch']}, in {t['rounds']} alternating turns: "
            f"{t['service_items_per_s']:.1f} vs {t['ort_items_per_s']:.1f} items/s = "
            f"{t['ratio']:.2f} (per turn {t['ratio_per_turn']})"
        )
    return one_client, saturation


def report(result: dict[str, Any], max_batch_size: int, most: int, out: Path) -> None:
    say(
        f"1 client / ort batch 1 = {result['one_client_vs_ort_batch1'] or float('nan'):.2f} "
        f"(goal ≥ 0.9); {most} clients / ort = {result['saturation_vs_ort']:.2f} (goal ≥ 0.95)"
    )
    say(
        f"service/ort = {result['service_vs_ort']:.2f} (goal ≥ 0.85); batching speedup @32 = "
        f"{result['batching_speedup_32'] or float('nan'):.2f} (goal ≥ 4; onnxruntime's own "
        f"batch-{max_batch_size}/batch-1 ratio here: {result['ort_batching_ceiling']:.2f}); "
        f"wrote {out}"
    )


if __name__ == "__main__":
    sys.exit(main())
