"""Why onnxruntime beats, or loses to, PyTorch on this CPU: kernels, threading, spinning.

    .venv/bin/python bench/ort_vs_torch.py                       # fresh classifier
    .venv/bin/python bench/ort_vs_torch.py --checkpoint CKPT [--bundle FP32_BUNDLE]

`bench/export.py` gives one number, onnxruntime fp32 vs PyTorch eager at 2 threads. On one
2-core host it was 1.9x, on another (a Xeon with AVX-512 VNNI) 1.12x with onnxruntime slower at
length 64. This script splits that ratio into factors measured side by side, on the same
inputs, configurations interleaved so host load hits all alike:

    ort/torch at N threads = kernels x threading
    kernels   = ort/torch at 1 thread          (the kernels alone: MLAS + fusions vs oneDNN/MKL)
    threading = (ort N/1 thread) / (torch N/1)  (how much better each runtime uses the cores)

plus `spinning` (onnxruntime with its idle threads spinning vs sleeping; the Runner spins by
default) and, from both runtimes' profilers, the share of time per operator, with the part of
onnxruntime's time spent outside its fused kernels (the mixup layer's cross-attention is not
fused: its MatMul/Softmax/Where run as plain ops). The verdict names the factor below 1.

`bench/export.py` runs this by itself when onnxruntime loses at any length. Results:
results/export.json key `ort_vs_torch_diagnosis`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info, merge_results  # noqa: E402

# onnxruntime ops that are the transformer fusions (or the plain GEMMs around them); time in
# any other op is elementwise glue, most of it the unfused mixup layer
FUSED_OR_GEMM = {
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "FusedGemm",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
}


def say(message: str) -> None:
    print(f"[bench/ort_vs_torch {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="xmixup checkpoint (default: fresh)")
    p.add_argument("--bundle", default=None, help="fp32 bundle of --checkpoint (reused)")
    p.add_argument("--lengths", default="32,64,128")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="N, compared with 1 thread")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--out", default=str(REPO / "results" / "export.json"))
    return p.parse_args(argv)


def diagnose(items_per_s: dict[str, dict[str, float]], threads: int) -> dict[str, Any]:
    """The ratio's factors per length, from items/s of each configuration.

    Configurations: ``torch_1``, ``torch_N``, ``ort_1``, ``ort_N`` (spinning) and
    ``ort_N_nospin``, N = ``threads``. kernels x threading == ort_N / torch_N exactly.
    """
    n = threads
    factors: dict[str, dict[str, float]] = {}
    for length, row in items_per_s.items():
        ratio = row[f"ort_{n}"] / row[f"torch_{n}"]
        kernels = row["ort_1"] / row["torch_1"]
        factors[length] = {
            "ort_vs_torch": round(ratio, 3),
            "kernels": round(kernels, 3),
            "threading": round(ratio / kernels, 3),
            "ort_scaling": round(row[f"ort_{n}"] / row["ort_1"], 3),
            "torch_scaling": round(row[f"torch_{n}"] / row["torch_1"], 3),
            "spinning": round(row[f"ort_{n}"] / row[f"ort_{n}_nospin"], 3),
        }
    losing = [length for length, f in factors.items() if f["ort_vs_torch"] < 1]
    if not losing:
        verdict = (
            f"onnxruntime is ahead at every length (x{min(f['ort_vs_torch'] for f in factors.values())}"
            f"-{max(f['ort_vs_torch'] for f in factors.values())}): nothing to explain on this CPU"
        )
        return {"factors": factors, "losing_lengths": [], "cause": None, "verdict": verdict}

    def mean_log(key: str) -> float:
        return sum(math.log(factors[length][key]) for length in losing) / len(losing)

    cause = "kernels" if mean_log("kernels") <= mean_log("threading") else "threading"
    worst = min(losing, key=lambda length: factors[length]["ort_vs_torch"])
    f = factors[worst]
    if cause == "kernels":
        why = (
            f"at 1 thread onnxruntime runs x{f['kernels']} PyTorch's speed: its kernels, not its "
            "threads (see the operator split: a large unfused share points at the mixup layer)"
        )
    else:
        why = (
            f"onnxruntime gains x{f['ort_scaling']} from {n} threads, PyTorch x{f['torch_scaling']}"
            f" (1-thread kernels x{f['kernels']}); spinning x{f['spinning']}: try "
            "XMIXUP_INTRA_OP_THREADS=1 with more replicas, or cores that are not hyperthreads"
        )
    verdict = f"onnxruntime loses at length {', '.join(losing)}; cause: {cause}. {why}"
    return {"factors": factors, "losing_lengths": losing, "cause": cause, "verdict": verdict}


def torch_op_split(model: Any, tensors: list[Any], threads: int) -> dict[str, float]:
    """Share of PyTorch's self CPU time per aten op (top 12)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    with torch.inference_mode():
        model.predict(*tensors)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model.predict(*tensors)
    by_op = {e.key: float(e.self_cpu_time_total) for e in prof.key_averages()}
    total = sum(by_op.values()) or 1.0
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:12]
    return {k: round(v / total, 4) for k, v in top}


def measure(
    model: Any, bundle: Path, lengths: list[int], batch: int, threads: int, reps: int
) -> dict[str, dict[str, float]]:
    """Items/s of every configuration per length, interleaved within each repetition."""
    import torch

    from bench.export import make_inputs
    from bench.mixup_cost import timed
    from xmixup.core.bundle import load_bundle
    from xmixup.core.runner import Runner
    from xmixup.core.vocab import INPUT_NAMES

    loaded = load_bundle(bundle)
    ort = {
        "ort_1": Runner.for_bundle(loaded, "cpu", 1),
        f"ort_{threads}": Runner.for_bundle(loaded, "cpu", threads),
        f"ort_{threads}_nospin": Runner.for_bundle(loaded, "cpu", threads, spin=False),
    }
    vocab = int(model.encoder.config.vocab_size)
    out: dict[str, dict[str, float]] = {}
    for length in lengths:
        feeds = make_inputs(vocab, batch, length, seed=length)
        tensors = [torch.from_numpy(feeds[k]) for k in INPUT_NAMES]

        def torch_run(n: int, t: list[Any] = tensors) -> None:
            torch.set_num_threads(n)
            with torch.inference_mode():
                model.predict(*t)

        runs: dict[str, Any] = {"torch_1": lambda _f: torch_run(1)}
        runs[f"torch_{threads}"] = lambda _f: torch_run(threads)
        runs.update({name: r.run for name, r in ort.items()})
        seconds = timed(runs, feeds, reps)  # warm-up, then interleaved medians
        out[str(length)] = {k: round(batch / v, 2) for k, v in seconds.items()}
        say(f"L={length} items/s: {out[str(length)]}")
    torch.set_num_threads(threads)
    return out


def run_diagnosis(
    model: Any, bundle: Path, lengths: list[int], batch: int, threads: int, reps: int
) -> dict[str, Any]:
    """Measure, split by operator at the shortest length, and diagnose."""
    import torch

    from bench.export import make_inputs
    from bench.mixup_cost import op_profile
    from xmixup.core.vocab import INPUT_NAMES

    items = measure(model, bundle, lengths, batch, threads, reps)
    result = diagnose(items, threads)
    feeds = make_inputs(int(model.encoder.config.vocab_size), batch, min(lengths), seed=0)
    ort_ops = op_profile(bundle, feeds, threads)
    tensors = [torch.from_numpy(feeds[k]) for k in INPUT_NAMES]
    result.update(
        items_per_s=items,
        ort_time_by_op=ort_ops,
        ort_unfused_share=round(sum(v for k, v in ort_ops.items() if k not in FUSED_OR_GEMM), 4),
        torch_time_by_op=torch_op_split(model, tensors, threads),
        setup={"batch": batch, "lengths": lengths, "threads": threads, "reps": reps},
        host=host_info(),
    )
    say(result["verdict"])
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from bench.export import fresh_checkpoint
    from model_export.onnx_export import export_bundle
    from training.modeling import XMixupModel

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="xmixup-ortvt-") as tmp:
        work = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else fresh_checkpoint(work)
        bundle = Path(args.bundle) if args.bundle else work / "fp32"
        if not args.bundle:
            export_bundle(checkpoint, bundle)
        model = XMixupModel.from_pretrained(checkpoint).eval()
        lengths = [int(x) for x in args.lengths.split(",")]
        result = run_diagnosis(model, bundle, lengths, args.batch, args.threads, args.reps)
        result["checkpoint"] = str(args.checkpoint or "fresh classifier on the default backbone")
    merge_results(Path(args.out), {"ort_vs_torch_diagnosis": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
