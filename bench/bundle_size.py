"""Bundle size options: bytes, eval metric, unknown pieces and speed, per option and task.

    .venv/bin/python bench/bundle_size.py --model tag=RUN/model:EVAL.jsonl \\
        --model classify=CKPT:EVAL.jsonl --model qa=CKPT:EVAL.jsonl

Each option is a real `xmixup export` of the same checkpoint (model_export.onnx_export), so
what is measured is what ships:

  fp32              the exact graph: fp32 graph, fp32 embeddings
  int8              int8 MatMuls (dynamic quantisation), fp32 embeddings
  fp32-emb8         fp32 MatMuls, int8 embedding rows
  int8-emb8         int8 MatMuls, int8 embedding rows
  int8mm-emb8       int8-emb8 with the fused self-attention (QKV projections) kept fp32
  int8-emb8-ffn32   int8-emb8 with the feed-forward down-projections (fed by GELU) kept fp32
  w8-emb8           fp32 graph whose weights are stored int8 (fp32 once loaded), int8 embeddings
  int8-emb8-latin   int8-emb8 with the vocabulary trimmed to Latin-script pieces (a deployment
                    for Latin-script languages; the other eval languages show the cost)

Per option and task: bundle bytes (and the ratio to fp32), the eval metric (`xmixup evaluate`'s
average over languages, per language too) and its change against fp32 in points, the share of
eval tokens whose piece was dropped and of extra `<unk>` tokens per language (trimmed options),
and onnxruntime throughput against the fp32 bundle, side by side (batch 8, length 128).
The default is chosen from these: the options within a third of the fp32 bytes that lose at
most 0.5 points on every task; among them one that keeps the whole vocabulary (it serves every
language), then the fastest. Results go to results/export.json under `bundle_options` and
`default_bundle` (other keys of the file are kept; so are other tasks measured earlier, and the
options measured earlier on the same checkpoint and eval data, so a task or an option can be
added without re-measuring the rest; the default is chosen among the options every task has).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info, merge_results  # noqa: E402
from model_export.cli import CLI_KEEP_FP32_AFTER  # noqa: E402

OPTIONS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "int8": {"precision": "int8"},
    "fp32-emb8": {"embeddings": "int8"},
    "int8-emb8": {"precision": "int8", "embeddings": "int8"},
    # int8 MatMuls but the fused self-attention (QKV projections) kept fp32
    "int8mm-emb8": {"precision": "int8", "embeddings": "int8", "quantize_ops": ["MatMul"]},
    # int8-emb8 with the feed-forward down-projections (fed by GELU) kept fp32
    "int8-emb8-ffn32": {
        "precision": "int8",
        "embeddings": "int8",
        "keep_fp32_after": list(CLI_KEEP_FP32_AFTER),
    },
    # fp32 graph, weights stored int8 (dequantised when the session opens), int8 embeddings
    "w8-emb8": {"embeddings": "int8", "weights": "int8"},
    "int8-emb8-latin": {"precision": "int8", "embeddings": "int8", "vocab_scripts": ["LATIN"]},
}
SIZE_BAR = 1 / 3  # of the fp32 bundle's bytes
METRIC_BAR = 0.5  # points lost, on every task


def say(message: str) -> None:
    print(f"[bench/bundle_size {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="TASK=CKPT:EVAL")
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated option names")
    p.add_argument("--per-lang", type=int, default=0, help="eval items per language (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=str(REPO / "cache" / "bundle-size"))
    p.add_argument("--out", default=str(REPO / "results" / "export.json"))
    return p.parse_args(argv)


def export_option(checkpoint: Path, out: Path, option: str, eval_data: Path) -> Path:
    """The option's bundle, reused when a previous run wrote it for the same checkpoint."""
    from model_export.onnx_export import export_bundle

    stamp = out / ".bench-source"
    fresh = (out / "manifest.json").is_file() and stamp.is_file()
    if fresh and stamp.read_text() == str(checkpoint.resolve()):
        return out
    from model_export.quantize import QuantizeOptions

    t0 = time.perf_counter()
    flags = dict(OPTIONS[option])
    ops = flags.pop("quantize_ops", None)
    after = flags.pop("keep_fp32_after", None)
    quantize = None
    if ops or after:
        quantize = QuantizeOptions(
            op_types=tuple(ops or QuantizeOptions.op_types), keep_fp32_after=tuple(after or ())
        )
    export_bundle(checkpoint, out, force=True, quantize_options=quantize, **flags)
    stamp.write_text(str(checkpoint.resolve()))
    say(f"{out.parent.name}/{option}: exported in {time.perf_counter() - t0:.0f}s")
    return out


def bundle_bytes(bundle: Path) -> int:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return sum(int(f["size"]) for f in manifest["files"].values())


def eval_records(path: Path, task: str, labels: list[str] | None, per_lang: int) -> list[Any]:
    from training.data.schema import read_jsonl

    records, _ = read_jsonl(path, task, labels=labels)
    if not per_lang:
        return list(records)
    seen: dict[str, int] = defaultdict(int)
    kept = []
    for r in records:
        if seen[r.lang] < per_lang:
            seen[r.lang] += 1
            kept.append(r)
    return kept


def target_texts(records: list[Any]) -> dict[str, list[str]]:
    """The target-language text of each record, by language (what a trimmed vocabulary
    must cover; the English source is Latin script in every option here)."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    for r in records:
        d = r.model_dump() if hasattr(r, "model_dump") else dict(r)
        parts = [d.get(k) for k in ("target", "target_pair", "question", "context")]
        if d.get("target_tokens"):
            parts.append(" ".join(d["target_tokens"]))
        by_lang[d["lang"]].append(" ".join(p for p in parts if isinstance(p, str)))
    return by_lang


def piece_rates(bundle: Path, checkpoint: Path, records: list[Any]) -> dict[str, Any] | None:
    from model_export.vocab_trim import piece_rates as rates_of
    from model_export.vocab_trim import plan_vocab

    vocabulary = json.loads((bundle / "manifest.json").read_text())["vocabulary"]
    if vocabulary["size"] == vocabulary["source_size"]:
        return None
    plan = plan_vocab(checkpoint / "tokenizer.json", vocabulary["scripts"])
    return {
        lang: rates_of(checkpoint / "tokenizer.json", plan, texts).as_dict()
        for lang, texts in sorted(target_texts(records).items())
    }


def cached_eval(bundle: Path, eval_data: Path, args: argparse.Namespace, run: Any) -> Any:
    """The evaluation of ``bundle`` on ``eval_data``, kept beside it for later runs."""
    path = bundle / ".bench-eval.json"
    key = f"{eval_data.resolve()}:{args.per_lang}"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["result"]
    result = run()
    keep = {k: result[k] for k in ("metric", "avg", "per_lang")}
    path.write_text(json.dumps({"key": key, "result": keep}))
    return keep


def speed(bundles: dict[str, Path], threads: int, reps: int = 5) -> dict[str, float]:
    """Items/s of each bundle on the same random batch (8 x 128 per stream), side by side."""
    from xmixup.core.bundle import load_bundle
    from xmixup.core.runner import Runner

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    runners = {n: Runner.for_bundle(load_bundle(p), "cpu", threads) for n, p in bundles.items()}
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(reps):  # interleaved, so load on the host hits every option alike
        for name, runner in runners.items():
            vocab = json.loads((bundles[name] / "manifest.json").read_text())["vocabulary"]
            ids = rng.integers(5, vocab["size"], size=(8, 128), dtype=np.int64)
            feeds = {"target_input_ids": ids, "source_input_ids": ids[::-1].copy()}
            feeds |= {k.replace("input_ids", "attention_mask"): np.ones_like(ids) for k in feeds}
            t0 = time.perf_counter()
            runner.run(feeds)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        out[name] = 8 / float(np.median(ts[1:] if len(ts) > 1 else ts))
    return out


def bench_task(
    task: str, checkpoint: Path, eval_data: Path, options: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    from training.evaluate import OnnxPredictor, evaluate_records

    work = Path(args.work_dir) / task
    bundles = {o: export_option(checkpoint, work / o, o, eval_data) for o in options}
    manifest = json.loads((bundles[options[0]] / "manifest.json").read_text())
    labels = manifest["labels"] if task != "qa" else None
    records = eval_records(eval_data, task, labels, args.per_lang)
    per_option: dict[str, Any] = {}
    for option, path in bundles.items():
        result = cached_eval(
            path,
            eval_data,
            args,
            lambda p=path: evaluate_records(OnnxPredictor(p, args.threads), records),
        )
        per_option[option] = {
            "bytes": bundle_bytes(path),
            "metric": result["metric"],
            "value": round(float(result["avg"]), 3),
            "per_lang": {k: round(float(v), 3) for k, v in result["per_lang"].items()},
            "piece_rates": piece_rates(path, checkpoint, records),
        }
        say(
            f"{task}/{option}: {per_option[option]['bytes'] / 1e6:.1f} MB, "
            f"{result['metric']} {result['avg']:.2f}"
        )
    rates = speed(bundles, args.threads)
    base = per_option["fp32"]
    for option, entry in per_option.items():
        entry["size_vs_fp32"] = round(entry["bytes"] / base["bytes"], 4)
        entry["metric_delta"] = round(base["value"] - entry["value"], 3)  # points lost
        entry["items_per_s"] = round(rates[option], 2)
        entry["speed_vs_fp32"] = round(rates[option] / rates["fp32"], 3)
    return {
        "checkpoint": checkpoint.name if checkpoint.is_absolute() else str(checkpoint),
        "eval_data": eval_data.name,
        "items": len(records),
        "options": per_option,
    }


def earlier_tasks(out: Path) -> dict[str, Any]:
    """The tasks an earlier run wrote to ``out`` (each task's checkpoint comes from its own
    training run, so tasks can be measured one at a time)."""
    try:
        earlier = json.loads(out.read_text())["bundle_options"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return {}
    return dict(earlier.get("tasks", {}))


def merge_task(earlier: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A task measured again: options measured earlier on the same checkpoint and eval data
    (the fp32 metric equal, as it is deterministic) are kept beside the new ones, so an option
    can be added without re-measuring the others; anything else replaces the earlier entry."""
    if earlier is None or any(
        earlier.get(k) != new[k] for k in ("checkpoint", "eval_data", "items")
    ):
        return new
    if earlier["options"]["fp32"].get("value") != new["options"]["fp32"].get("value"):
        return new
    return {**new, "options": {**earlier["options"], **new["options"]}}


def options_on_every_task(tasks: dict[str, Any]) -> list[str]:
    """The options measured on every task, in OPTIONS order (the default needs all tasks)."""
    return [o for o in OPTIONS if tasks and all(o in t["options"] for t in tasks.values())]


def choose_default(tasks: dict[str, Any], options: list[str]) -> dict[str, Any]:
    """Within a third of the fp32 bytes and at most 0.5 points lost on every task; then the
    whole vocabulary first (serves every language), then the fastest."""
    eligible = []
    for option in options:
        entries = [t["options"][option] for t in tasks.values()]
        if all(e["size_vs_fp32"] <= SIZE_BAR and e["metric_delta"] <= METRIC_BAR for e in entries):
            trimmed = any(e["piece_rates"] for e in entries)
            speed = float(np.mean([e["speed_vs_fp32"] for e in entries]))
            eligible.append((trimmed, -speed, option))
    if not eligible:
        return {"option": None, "why": "no option meets both bars"}
    trimmed, neg_speed, option = sorted(eligible)[0]
    return {
        "option": option,
        "export_flags": OPTIONS[option],
        "eligible": [o for _, _, o in sorted(eligible)],
        "why": f"≤ {SIZE_BAR:.3f} of fp32 bytes and ≤ {METRIC_BAR} points lost on every task; "
        f"{'trimmed' if trimmed else 'whole vocabulary'}, {-neg_speed:.2f}x fp32 speed",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = [o.strip() for o in args.options.split(",") if o.strip()]
    if options[0] != "fp32":
        options.insert(0, "fp32")  # every figure is relative to it
    tasks = earlier_tasks(Path(args.out))
    for spec in args.model:
        task, _, rest = spec.partition("=")
        checkpoint, _, eval_data = rest.partition(":")
        measured = bench_task(task, Path(checkpoint), Path(eval_data), options, args)
        measured["host"] = host_info()  # tasks may come from different runs
        tasks[task] = merge_task(tasks.get(task), measured)
    everywhere = options_on_every_task(tasks)
    results = {
        "bundle_options": {
            "options": {o: OPTIONS[o] for o in everywhere},
            "bars": {"size_vs_fp32": SIZE_BAR, "metric_delta_points": METRIC_BAR},
            "tasks": tasks,
            "per_lang_limit": args.per_lang or None,
            "host": host_info(),
        },
        "default_bundle": choose_default(tasks, everywhere),
    }
    merge_results(Path(args.out), results)
    say(f"default: {results['default_bundle']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
