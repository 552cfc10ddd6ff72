"""The frozen-layer cache's saving: training time with and without it, side by side.

    .venv/bin/python bench/frozen_cache.py                    # QA, the demo's settings
    .venv/bin/python bench/frozen_cache.py --task tag --steps 80 --max-length 64

Two `xmixup train` runs of the same model (X-Mixup, the layers below the mixup layer fixed,
as the demo and the tag/QA defaults train) start together, one thread each, on the same data:
one with `--frozen-cache-mb 0`, one with the default cache, so host load slows both alike;
the rounds alternate which starts first. Reported: each run's training seconds, their ratio
(cached / uncached, lower is better), the cache's hit rate (the share of stream-items read
from it: it grows with the epochs a run makes) and whether both runs ended with the same
loss — the cache is exact, so they should (training/frozen_cache.py). Written to
`results/frozen_cache.json` next to the host's CPU.
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
from bench.train_cost import train_command  # noqa: E402

MODES = {"uncached": ["--frozen-cache-mb", "0"], "cached": []}


def say(message: str) -> None:
    print(f"[bench/frozen_cache {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="qa", choices=("qa", "tag"), help="tasks that fix layers")
    p.add_argument("--steps", type=int, default=180, help="the demo's QA budget")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", default="5e-4")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--backbone", default=None, help="HF encoder directory (default: built-in)")
    p.add_argument("--out", default=str(REPO / "results" / "frozen_cache.json"))
    return p.parse_args(argv)


def command(mode: str, out: Path, args: argparse.Namespace) -> list[str]:
    """bench/train_cost.py's X-Mixup training command, at the demo's rate, cache on or off."""
    return [*train_command(args.task, "xmixup", out, args), "--lr", args.lr, *MODES[mode]]


def one_round(first: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    order = [first, *(m for m in MODES if m != first)]
    procs = {}
    for mode in order:
        with (work / f"{mode}.log").open("w") as log:
            procs[mode] = subprocess.Popen(
                command(mode, work / mode, args), stdout=log, stderr=subprocess.STDOUT
            )
    runs: dict[str, Any] = {}
    for mode, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{mode} run failed: see {work / f'{mode}.log'}")
        train = json.loads((work / mode / "metrics.json").read_text())["train"]
        hits = [
            t["frozen_cache_hit_rate"]
            for t in train["loss_trajectory"]
            if "frozen_cache_hit_rate" in t
        ]
        runs[mode] = {
            "train_seconds": train["train_seconds"],
            "final_loss": train["final_loss"],
            "hit_rate": hits[-1] if hits else None,
            "epochs": train["epochs"],
        }
    ratio = runs["cached"]["train_seconds"] / runs["uncached"]["train_seconds"]
    loss_diff = abs(runs["cached"]["final_loss"] - runs["uncached"]["final_loss"])
    return {"first": first, **runs, "ratio": round(ratio, 3), "final_loss_diff": loss_diff}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="xmixup-frozen-cache-") as tmp:
            res = one_round(list(MODES)[r % 2], Path(tmp), args)
        rounds.append(res)
        say(
            f"round {r + 1}: cached {res['cached']['train_seconds']:.0f} s vs uncached "
            f"{res['uncached']['train_seconds']:.0f} s → {res['ratio']:.2f}x, hit rate "
            f"{res['cached']['hit_rate']}, final loss differs by {res['final_loss_diff']:.2g}"
        )
    setup = {k: getattr(args, k) for k in ("task", "steps", "batch_size", "max_length", "lr")}
    record = {
        "ratio_cached_vs_uncached": round(statistics.median(x["ratio"] for x in rounds), 3),
        "rounds": rounds,
        "setup": {**setup, "threads_per_job": 1, "freeze": "layers below the mixup layer"},
        "host": host_info(),
    }
    merge_results(Path(args.out), {args.task: record})
    say(
        f"{args.task}: training time with the cache / without {record['ratio_cached_vs_uncached']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
