"""The mixup layer's own cost: the paired X-Mixup graph against the bare encoder, per stream.

    .venv/bin/python bench/mixup_cost.py                   # fresh classify + tag graphs
    .venv/bin/python bench/mixup_cost.py --cut-bundle tag=DIR --cut-bundle qa=DIR
                                         # fp32 tag/QA bundles on the same backbone

Measured side by side in one process, on the same random inputs (batch 8, both streams of
length 128), the same thread count and the same onnxruntime fusions:

- bare: the backbone encoder alone (the checkpoint's encoder, traced and fused like a bundle),
  on the target stream: tokens/s;
- paired: the X-Mixup classify graph (both streams through every layer, the cross-attention
  mix and λ gate at the mixup layer, the head): tokens/s per stream = 2 x B x L / time.
  `paired_vs_bare_per_stream` = paired / bare (goal >= 0.9: the mixing costs under 10 %);
- tag and QA graphs stop the source stream at the mixup layer: per task, `source_cut_saving`
  = 1 - time(its graph) / time(classify graph), beside the share of encoder sublayers the
  manifest says it skips (`encoder_work_saved`).

An onnxruntime profile of the paired graph splits its time by operator type, so the part of
the unfused mixup layer (its MatMuls, Softmax, Transpose) can be read beside the fused
Attention and MatMuls of the encoder. Results: results/export.json key `mixup_cost`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info, merge_results  # noqa: E402


def say(message: str) -> None:
    print(f"[bench/mixup_cost {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="classify checkpoint (default: fresh)")
    p.add_argument("--paired-bundle", default=None, help="fp32 bundle of --checkpoint (reused)")
    p.add_argument(
        "--cut-bundle",
        action="append",
        default=[],
        metavar="TASK=DIR",
        help="fp32 tag or qa bundle on the same backbone (repeatable)",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--out", default=str(REPO / "results" / "export.json"))
    return p.parse_args(argv)


def bare_encoder_graph(model: Any, path: Path) -> Path:
    """The checkpoint's encoder alone, traced and fused as the exporter does a bundle."""
    import torch

    from model_export.optimize import optimize_graph
    from model_export.trace import export_onnx

    class Bare(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.encoder

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state

    inputs = ("target_input_ids", "target_attention_mask")
    raw = path.with_suffix(".raw.onnx")
    export_onnx(model, raw, inputs=inputs, outputs=("hidden",), module=Bare().eval())
    cfg = model.encoder.config
    optimize_graph(
        raw, path, num_heads=int(cfg.num_attention_heads), hidden_size=int(cfg.hidden_size)
    )
    return path


def feeds(vocab: int, batch: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for stream in ("target", "source"):
        ids = rng.integers(5, vocab, size=(batch, length), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 0, 2
        out[f"{stream}_input_ids"] = ids
        out[f"{stream}_attention_mask"] = np.ones_like(ids)
    return out


def timed(runners: dict[str, Any], inputs: dict[str, np.ndarray], reps: int) -> dict[str, float]:
    """Median seconds per run of each runner, interleaved so host load hits all alike."""
    times: dict[str, list[float]] = defaultdict(list)
    for run in runners.values():
        run(inputs)  # warm-up
    for _ in range(reps):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(inputs)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def op_profile(path: Path, inputs: dict[str, np.ndarray], threads: int) -> dict[str, float]:
    """Share of the graph's kernel time by operator type (onnxruntime's profiler)."""
    from xmixup.core.bundle import read_manifest
    from xmixup.core.runner import Runner

    manifest = read_manifest(path)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(
            path / "model.onnx",
            manifest.inputs,
            manifest.outputs,
            intra_op_threads=threads,
            profile_prefix=str(Path(tmp) / "profile"),
        )
        for _ in range(3):
            runner.run(inputs)
        events = json.loads(Path(runner.session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += float(event["dur"])
    total = sum(by_op.values()) or 1.0
    return {k: round(v / total, 4) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.export import fresh_checkpoint
    from model_export.onnx_export import export_bundle
    from training.modeling import XMixupModel
    from xmixup.core.bundle import load_bundle
    from xmixup.core.runner import Runner

    with tempfile.TemporaryDirectory(prefix="xmixup-mixup-") as tmp:
        work = Path(tmp)
        checkpoint = Path(args.checkpoint) if args.checkpoint else fresh_checkpoint(work)
        model = XMixupModel.from_pretrained(checkpoint).eval()
        paired = Path(args.paired_bundle) if args.paired_bundle else work / "paired"
        if not args.paired_bundle:
            export_bundle(checkpoint, paired)
        bare = bare_encoder_graph(model, work / "bare.onnx")
        inputs = feeds(int(model.encoder.config.vocab_size), args.batch, args.length)
        bare_in = ("target_input_ids", "target_attention_mask")
        runners = {
            "bare": Runner(bare, bare_in, ["hidden"], intra_op_threads=args.threads).run,
            "paired": Runner.for_bundle(load_bundle(paired), "cpu", args.threads).run,
        }
        cut = {}
        for spec in args.cut_bundle:
            task, _, path = spec.partition("=")
            bundle = load_bundle(path)
            cut[task] = bundle.manifest
            runners[task] = Runner.for_bundle(bundle, "cpu", args.threads).run
        seconds = timed(runners, inputs, args.reps)
        tokens = args.batch * args.length
        bare_tps = tokens / seconds["bare"]
        paired_tps = 2 * tokens / seconds["paired"]
        result: dict[str, Any] = {
            "paired_vs_bare_per_stream": round(paired_tps / bare_tps, 3),
            "goal": 0.9,
            "tokens_per_s": {"bare": round(bare_tps, 1), "paired_per_stream": round(paired_tps, 1)},
            "seconds_per_batch": {k: round(v, 4) for k, v in seconds.items()},
            "paired_time_by_op": op_profile(paired, inputs, args.threads),
            "setup": {"batch": args.batch, "length": args.length, "threads": args.threads},
            "host": host_info(),
        }
        for task, manifest in cut.items():
            result[task] = {
                "source_cut_saving": round(1 - seconds[task] / seconds["paired"], 3),
                "encoder_work_saved": manifest.export.get("source_stream", {}).get(
                    "encoder_work_saved"
                ),
                "mixup_layer": manifest.mixup_layer,
            }
    merge_results(Path(args.out), {"mixup_cost": result})
    say(
        f"paired/bare per stream {result['paired_vs_bare_per_stream']}; "
        + "; ".join(f"{task} {result[task]}" for task in cut)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
