"""Training cost: X-Mixup's step time against translate-train's, measured side by side.

    .venv/bin/python bench/train_cost.py                       # classify + tag, demo samples
    .venv/bin/python bench/train_cost.py --tasks tag --steps 30 --rounds 3

Each round trains one X-Mixup and one translate-train model with the product's CLI
(`xmixup train`) at the same time, one thread each, on the same data, budget and backbone, so
whatever else runs on the host slows both alike; the rounds alternate which one starts first.
The step time is the trainer's median (`metrics.json` → `train.step_time`, warm-up steps
excluded); the ratio is per round, and its median is what `results/train_cost.json` reports
(goal ≤ 2.2: X-Mixup runs a second stream, the mix and the consistency losses on top).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info, merge_results  # noqa: E402

DATA = {"classify": "sib200", "tag": "pud", "qa": "xquad"}
METHODS = ("xmixup", "translate-train")
GOAL = 2.2


def say(message: str) -> None:
    print(f"[bench/train_cost {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="classify,tag", help="comma-separated: classify,tag,qa")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--backbone", default=None, help="HF encoder directory (default: built-in)")
    p.add_argument("--out", default=str(REPO / "results" / "train_cost.json"))
    return p.parse_args(argv)


def train_command(task: str, method: str, out: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "xmixup.cli", "train", "--task", task, "--method", method]
    cmd += ["--train", str(REPO / "examples" / "data" / DATA[task] / "train.jsonl")]
    cmd += ["--max-steps", str(args.steps), "--batch-size", str(args.batch_size)]
    cmd += ["--max-length", str(args.max_length), "--num-threads", "1", "--no-progress"]
    cmd += ["--freeze-embeddings", "--no-trust-head", "--seed", "0", "--out", str(out)]
    if task == "tag":
        cmd += ["--target-labels", "gold"]  # the cost of pseudo-labels is the teacher's, once
    if args.backbone:
        cmd += ["--backbone", args.backbone]
    return cmd


def side_by_side(task: str, first: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """Both methods at once, ``first`` started first; median seconds per step each."""
    order = [first, *(m for m in METHODS if m != first)]
    procs = {}
    for method in order:
        out = work / f"{task}-{method}"
        with (work / f"{task}-{method}.log").open("w") as log:  # the child keeps its own handle
            procs[method] = (
                out,
                subprocess.Popen(
                    train_command(task, method, out, args), stdout=log, stderr=subprocess.STDOUT
                ),
            )
    seconds = {}
    for method, (out, proc) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{task}/{method} failed: see {work / f'{task}-{method}.log'}")
        metrics = json.loads((out / "metrics.json").read_text())
        seconds[method] = float(metrics["train"]["step_time"]["median_s"])
    return seconds


def bench_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    rounds = []
    for r in range(args.rounds):
        first = METHODS[r % 2]
        with tempfile.TemporaryDirectory(prefix=f"xmixup-cost-{task}-") as tmp:
            s = side_by_side(task, first, Path(tmp), args)
        ratio = s["xmixup"] / s["translate-train"]
        rounds.append({"first": first, "s_per_step": s, "ratio": round(ratio, 3)})
        say(
            f"{task} round {r + 1}: xmixup {s['xmixup']:.2f} s/step, translate-train "
            f"{s['translate-train']:.2f} s/step → {ratio:.2f}x"
        )
    return {
        "ratio_vs_translate_train": round(statistics.median(x["ratio"] for x in rounds), 3),
        "rounds": rounds,
        "data": f"examples/data/{DATA[task]}/train.jsonl",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    setup = {k: getattr(args, k) for k in ("steps", "rounds", "batch_size", "max_length")}
    # Setup and host sit in each task's entry: a later run of one task (another budget, another
    # host) then leaves the other tasks' records as they were measured.
    where = {"setup": {**setup, "threads_per_job": 1}, "host": host_info()}
    results = {task: {**bench_task(task, args), **where} for task in tasks}
    merge_results(Path(args.out), {**results, "goal": GOAL})
    for task, res in results.items():
        say(
            f"{task}: xmixup / translate-train step time {res['ratio_vs_translate_train']:.2f}x "
            f"(goal ≤ {GOAL})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
