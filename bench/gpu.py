"""GPU readiness: fp16 export, CUDA serving with I/O binding, and the same ratios as on CPU.

    bash bench/gpu.sh                              # fresh classifier on the default backbone
    bash bench/gpu.sh --checkpoint CKPT --eval-data eval.jsonl

On a host whose onnxruntime has the CUDA provider (`onnxruntime-gpu`, see docker/install-serve.sh)
it exports the checkpoint as fp32 and fp16 bundles, scores both with `xmixup evaluate`'s code on
the CUDA provider (fp16 vs fp32 metric delta; without --eval-data, the argmax disagreement
between the two on generated inputs bounds it), runs bench/serve.py on the fp16 bundle with
`--device cuda` (bare onnxruntime with I/O binding vs the service, batching on vs off) and
writes results/gpu.json: `service_vs_ort`, `batching_speedup_32`, `fp16_metric_delta`, the GPU
and CPU names. Without CUDA it says so and exits 0, writing nothing (a CPU host has no GPU
figures to replace).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info  # noqa: E402

CUDA_PROVIDER = "CUDAExecutionProvider"


def say(message: str) -> None:
    print(f"[bench/gpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="xmixup checkpoint (default: fresh)")
    p.add_argument("--eval-data", default=None, help="JSONL eval file for the fp16 metric delta")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per serving point")
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--out", default=str(REPO / "results" / "gpu.json"))
    p.add_argument("--work-dir", default=None)
    return p.parse_args(argv)


def cuda_missing() -> str | None:
    """Why this host cannot run the GPU bench, or None when it can."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if CUDA_PROVIDER not in ort.get_available_providers():
        return (
            f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER} "
            f"(providers: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
            "in a separate venv (docker/install-serve.sh gpu) on a host with an NVIDIA GPU"
        )
    return None


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def summarize(serve: dict[str, Any], fp16: dict[str, Any], gpu: str | None) -> dict[str, Any]:
    """results/gpu.json from bench/serve.py's result and the fp16 quality figures."""
    return {
        "service_vs_ort": serve.get("service_vs_ort"),
        "batching_speedup_32": serve.get("batching_speedup_32"),
        "ort_batching_ceiling": serve.get("ort_batching_ceiling"),
        "fp16_metric_delta": fp16.get("delta"),
        "fp16_metric_delta_kind": fp16.get("kind"),
        "fp16": fp16,
        "serve": serve,
        "gpu": gpu,
        "host": host_info(),
    }


def write_results(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    say(
        f"service/ort {result['service_vs_ort']}, batching @32 {result['batching_speedup_32']}, "
        f"fp16 metric delta {result['fp16_metric_delta']} ({result['gpu']}); wrote {path}"
    )


def fp16_quality(fp32: Path, fp16: Path, eval_data: str | None) -> dict[str, Any]:
    """fp32 - fp16 metric points on --eval-data (both on CUDA), else the disagreement bound."""
    if eval_data is None:
        manifest = json.loads((fp16 / "manifest.json").read_text())
        figures = manifest["parity"].get("fp16", {})
        agree = min((o["agreement"] for o in figures.get("outputs", {}).values()), default=None)
        delta = None if agree is None else round(100 * (1 - agree), 3)
        return {"delta": delta, "kind": "bound: 100 x argmax disagreement fp16 vs PyTorch"}
    from training.data.schema import read_jsonl
    from training.evaluate import OnnxPredictor, evaluate_records

    manifest = json.loads((fp32 / "manifest.json").read_text())
    labels = manifest["labels"] if manifest["task"] != "qa" else None
    records, _ = read_jsonl(eval_data, manifest["task"], labels=labels)
    scores = {
        name: evaluate_records(OnnxPredictor(path, device="cuda"), records)
        for name, path in (("fp32", fp32), ("fp16", fp16))
    }
    delta = float(scores["fp32"]["avg"]) - float(scores["fp16"]["avg"])
    return {
        "delta": round(delta, 3),
        "kind": f"fp32 - fp16 {scores['fp32']['metric']} (points), both on CUDA",
        "fp32": scores["fp32"]["avg"],
        "fp16_value": scores["fp16"]["avg"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = cuda_missing()
    if missing:
        say(f"skipped: {missing}")
        return 0
    from bench.export import fresh_checkpoint
    from model_export.onnx_export import export_bundle

    with tempfile.TemporaryDirectory(prefix="xmixup-gpu-") as tmp:
        work = Path(args.work_dir or tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else fresh_checkpoint(work)
        bundles = {}
        for precision in ("fp32", "fp16"):
            bundles[precision] = work / precision
            export_bundle(checkpoint, bundles[precision], precision=precision, force=True)
        fp16 = fp16_quality(bundles["fp32"], bundles["fp16"], args.eval_data)
        serve_json = work / "serve.json"
        from bench.serve import main as serve_main

        serve_main(
            [
                "--device",
                "cuda",
                "--bundle",
                str(bundles["fp16"]),
                "--duration",
                str(args.duration),
                "--concurrency",
                args.concurrency,
                "--max-batch-size",
                "128",
                "--out",
                str(serve_json),
            ]
        )
        result = summarize(json.loads(serve_json.read_text()), fp16, gpu_name())
    write_results(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
