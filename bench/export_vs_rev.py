"""Is a speed ratio the code's or the host's? An earlier commit's export bench beside today's.

    .venv/bin/python bench/export_vs_rev.py                 # against db44bf5, 2 rounds
    .venv/bin/python bench/export_vs_rev.py --base REV --rounds 3

The issue that asked to keep "ORT 1.91x torch, int8 1.84x fp32" quoted figures recorded at
db44bf5 on another host. A ratio measured today on a different CPU cannot say whether the code
kept it; running that commit's own `bench/export.py --quick` and today's, alternately on the
same host and the same virtual environment, can. The base is checked out as a temporary git
worktree and imported first (PYTHONPATH), so each side measures its own export and runner.

Writes results/export-vs-base.json: per side and round the two ratios, every int8 variant's
ratio and the items/s behind them; the medians; the base's figures as recorded on its own host;
the CPU model of this one. Not a test: close other work first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info  # noqa: E402

# The commit whose results/export.json recorded ORT 1.914x torch and int8 1.837x fp32.
DEFAULT_BASE = "db44bf5"
RATIOS = ("ort_vs_torch", "int8_vs_fp32")


def say(message: str) -> None:
    print(f"[bench/export_vs_rev {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=2, help="base/today pairs, alternating")
    parser.add_argument("--out", default=str(REPO / "results" / "export-vs-base.json"))
    return parser.parse_args(argv)


def run_side(checkout: Path, out: Path) -> dict[str, Any]:
    """One `bench/export.py --quick` of a checkout, with that checkout's packages first."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, str(checkout / "bench" / "export.py"), "--quick", "--out", str(out)]
    subprocess.run(cmd, cwd=checkout, env=env, check=True)
    return json.loads(out.read_text())


def side_row(result: dict[str, Any]) -> dict[str, Any]:
    """What one side's run says: the two ratios, every int8 variant, the throughputs."""
    variants = result.get("int8_vs_fp32_by_variant") or {"default": result["int8_vs_fp32"]}
    return {
        **{k: result[k] for k in RATIOS},
        "int8_variant": result.get("int8_variant", "default"),
        "int8_vs_fp32_by_variant": variants,
        "int8_best_variant": max(variants.values()),
        "throughput_items_per_s": result.get("throughput_items_per_s"),
    }


def summarise(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians per side, and today's over the base's (1.0: the code kept the ratio here)."""
    out: dict[str, Any] = {}
    for side in ("base", "today"):
        out[side] = {
            k: round(statistics.median(r[side][k] for r in rounds), 3)
            for k in (*RATIOS, "int8_best_variant")
        }
    out["today_over_base"] = {k: round(out["today"][k] / out["base"][k], 3) for k in out["today"]}
    return out


def recorded(base: str) -> dict[str, Any]:
    """The base's ratios as its own results/export.json recorded them, on its host."""
    shown = subprocess.run(
        ["git", "show", f"{base}:results/export.json"], cwd=REPO, capture_output=True, text=True
    )
    if shown.returncode != 0:
        return {}
    data = json.loads(shown.stdout)
    return {**{k: data.get(k) for k in RATIOS}, "setup": data.get("setup")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    found = subprocess.run(
        ["git", "rev-parse", "--short", "--verify", f"{args.base}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:  # e.g. a shallow clone without the base
        sys.exit(
            f"bench/export_vs_rev: no commit {args.base!r} in this clone (git fetch --unshallow)"
        )
    rev = found.stdout.strip()
    rounds: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="xmixup-base-") as tmp:
        base_dir = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base_dir), rev],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        try:
            for i in range(args.rounds):
                row = {}
                for side, checkout in (("base", base_dir), ("today", REPO)):
                    say(f"round {i + 1}/{args.rounds}: {side} ({checkout.name})")
                    row[side] = side_row(run_side(checkout, Path(tmp) / f"{side}-{i}.json"))
                    say(
                        f"  ort/torch {row[side]['ort_vs_torch']:.3f}, "
                        f"int8/fp32 {row[side]['int8_vs_fp32']:.3f}"
                    )
                rounds.append(row)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base_dir)], cwd=REPO, check=False
            )
    result = {
        "base": rev,
        "base_recorded_on_its_host": recorded(rev),
        "host": host_info(),
        "rounds": rounds,
        **summarise(rounds),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    s = result
    say(f"{'':10} {'ort/torch':>10} {'int8/fp32':>10} {'best int8':>10}")
    for side in ("base", "today", "today_over_base"):
        say(f"{side:10} " + " ".join(f"{s[side][k]:>10.3f}" for k in s[side]))
    say(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
