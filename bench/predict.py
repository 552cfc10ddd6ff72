"""Batch scoring benchmark: `xmixup predict` against the HTTP service at saturation.

    .venv/bin/python bench/predict.py --quick            # about a minute once the bundle is cached
    .venv/bin/python bench/predict.py --bundle DIR       # any classification bundle

Measured in one run, on the same bundle, inputs (bench/serve.py's German sentences with their
English translations) and machine:
  (a) `xmixup predict` (``xmixup.batch.run.score_file``, what the command runs) on a JSONL file
      of --items records, with 1 worker (onnxruntime on every core) and with one worker per
      core (1 thread each); its rate is taken between the first and the last chunk written, so
      the model load is not counted;
  (b) the service (`xmixup serve`, dynamic batching, the same onnxruntime threads) under
      closed-loop clients (bench/loadgen.py) at --concurrency, with 1 and with
      --items-per-request items per request; its best point is its saturation throughput.
The two alternate over --rounds (the service idles while (a) runs) and each configuration's
median is kept, so a drift in the host's load reaches both sides.
Writes results/predict.json with `predict_vs_service` = best (a) / best (b) (goal ≥ 1.2) beside
the raw figures. The load generator shares the cores with the server: that cost is part of
"HTTP in the way" and is in the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve import (  # noqa: E402
    SENTENCES,
    _run_async,
    default_bundle,
    host_info,
    start_service,
)


def say(message: str) -> None:
    print(f"[bench/predict {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=None, help="classification bundle (default: cached e5)")
    p.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    p.add_argument("--items", type=int, default=None, help="records scored by xmixup predict")
    p.add_argument("--concurrency", default="32,128")
    p.add_argument("--items-per-request", type=int, default=8)
    p.add_argument("--duration", type=float, default=None, help="seconds per service point")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (median kept)")
    p.add_argument("--out", default=str(REPO / "results" / "predict.json"))
    return p.parse_args(argv)


def write_input(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            target, source = SENTENCES[i % len(SENTENCES)]
            rec = {"id": f"b{i}", "lang": "de", "target": target, "source": source}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def bench_predict(bundle: Path, inp: Path, workers: int, tmp: Path) -> dict[str, Any]:
    from xmixup.batch.run import PredictOptions, score_file

    marks: list[tuple[float, int]] = []
    opts = PredictOptions(
        model=bundle,
        input=inp,
        output=tmp / f"out-{workers}.jsonl",
        workers=workers,
        threads=None if workers == 1 else 1,
        overwrite=True,
        progress=False,
    )
    summary = score_file(opts, progress=lambda line: marks.append((time.perf_counter(), line)))
    (t0, l0), (t1, l1) = marks[0], marks[-1]
    return {
        "workers": workers,
        "threads_per_worker": opts.predictor_kwargs()["threads"] or os.cpu_count(),
        "items_per_s": (l1 - l0) / (t1 - t0),
        "items": summary.scored,
        "seconds_with_model_load": summary.seconds,
    }


def service_point(url: str, clients: int, k: int, duration: float) -> dict[str, Any]:
    from bench.loadgen import run_load

    payloads = [
        {
            "inputs": [
                {"target": t, "source": s}
                for t, s in (SENTENCES[(i + j) % len(SENTENCES)] for j in range(k))
            ]
        }
        for i in range(64)
    ]
    res = _run_async(run_load(url, "/classify", payloads, clients, duration, items_per_request=k))
    point = {
        "clients": clients,
        "items_per_request": k,
        "items_per_s": res.items / res.elapsed_s,
        "errors": res.errors,
    }
    say(f"service @{clients:>3} clients x {k} items: {point['items_per_s']:.1f} items/s")
    return point


def median_by(points: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One point per configuration: the median rate over the rounds (the host drifts)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(tuple(p[k] for k in keys), []).append(p)
    return [
        {
            **ps[0],
            "items_per_s": statistics.median(p["items_per_s"] for p in ps),
            "rounds": [round(p["items_per_s"], 2) for p in ps],
        }
        for ps in groups.values()
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",")]
    duration = args.duration or (5.0 if args.quick else 15.0)
    n_items = args.items or (1500 if args.quick else 6000)
    rounds = args.rounds or (1 if args.quick else 2)
    bundle = Path(args.bundle) if args.bundle else default_bundle()
    cores = os.cpu_count() or 1
    say(f"bundle {bundle}; {n_items} items for xmixup predict; {duration:.0f}s per service point")
    # Interleaved rounds, the service started once (idle while predict runs): load on the host
    # drifts, and both sides see the same drift.
    proc, url = start_service(bundle, {"XMIXUP_MAX_QUEUE": "8192"})
    predict_runs: list[dict[str, Any]] = []
    service_runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            write_input(tmp / "in.jsonl", n_items)
            for r in range(rounds):
                say(f"round {r + 1}/{rounds}")
                for workers in sorted({1, cores}):
                    point = bench_predict(bundle, tmp / "in.jsonl", workers, tmp)
                    say(f"xmixup predict, {workers} worker(s): {point['items_per_s']:.1f} items/s")
                    predict_runs.append(point)
                for k in sorted({1, args.items_per_request}):
                    for clients in levels:
                        service_runs.append(service_point(url, clients, k, duration))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    predict = median_by(predict_runs, ("workers",))
    service = median_by(service_runs, ("clients", "items_per_request"))
    best_predict = max(p["items_per_s"] for p in predict)
    best_service = max(p["items_per_s"] for p in service)
    result: dict[str, Any] = {
        "predict_vs_service": best_predict / best_service,
        "goals": {"predict_vs_service": 1.2},
        "predict_items_per_s": best_predict,
        "service_items_per_s": best_service,
        "predict": predict,
        "service": service,
        "bundle_name": json.loads((bundle / "manifest.json").read_text())["name"],
        "backbone": json.loads((bundle / "manifest.json").read_text())["backbone"],
        "duration_s": duration,
        "rounds": rounds,
        "quick": args.quick,
        "host": host_info(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(
        f"xmixup predict {best_predict:.1f} items/s vs the service at saturation "
        f"{best_service:.1f} items/s: {result['predict_vs_service']:.2f}x (goal ≥ 1.2); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
