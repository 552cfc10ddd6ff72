"""Reproducible X-Mixup experiment driver: data -> training -> evaluation -> summary.

Runs the product's own CLI (``xmixup data``, ``xmixup train``, ``xmixup evaluate``,
``xmixup analyze cka``) in-process, one run (task, method, seed) per worker process with one
torch thread each, and aggregates the results into ``results/summary.json``,
``docs/RESULTS.md`` (generated tables between markers; text outside them is kept) and
``docs/results.png``. See experiments/README.md.

    .venv/bin/python experiments/run.py --tasks classify --seeds 1,2 --steps 300 --jobs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: the package and the product beside it

from experiments.aggregate import HEADLINE_P, aggregate, read_budget, read_json, write_budget  # noqa: E402
from experiments.jobs import Job, execute  # noqa: E402
from experiments.plan import build_data, is_teacher, plan_jobs  # noqa: E402
from experiments.report import render_tables, write_chart, write_report  # noqa: E402
from experiments.tasks import TASKS  # noqa: E402
from xmixup.core.vocab import METHODS  # noqa: E402


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train and evaluate X-Mixup and its baselines per task; write the summary.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--tasks", default="classify", help="comma list of classify,tag,qa")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of methods")
    p.add_argument("--seeds", default="1,2", help="seeds of xmixup and translate-train")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=None, help="default: 64/128/256 per task")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs, 1 torch thread each")
    p.add_argument(
        "--data",
        required=True,
        help="data root holding the public sets (layout and sources: training/data/README.md)",
    )
    p.add_argument("--backbone", default=None, help="encoder directory (default: e5-small)")
    p.add_argument("--out", default=str(REPO / "artifacts" / "experiments"), help="work dir")
    p.add_argument("--summary", default=None, help="default: results/summary.json")
    p.add_argument("--report", default=None, help="default: docs/RESULTS.md")
    p.add_argument("--chart", default=None, help="default: docs/results.png")
    p.add_argument("--noise-levels", default="0,0.15,0.3", help="source-noise sweep")
    p.add_argument("--cka-items", type=int, default=300)
    p.add_argument("--limit", type=int, default=None, help="training items per language")
    p.add_argument("--eval-limit", type=int, default=None, help="eval items per language")
    p.add_argument(
        "--no-freeze-embeddings",
        dest="freeze_embeddings",
        action="store_false",
        help="train the word embeddings too",
    )
    p.add_argument(
        "--train-args",
        default="",
        help="extra `xmixup train` flags for every method's runs (a budget recipe, so the "
        'baselines get it too), e.g. "--freeze-layers 7 --lr 5e-4"',
    )
    p.add_argument(
        "--xmixup-args",
        default="",
        help='extra `xmixup train` flags for the xmixup runs only, e.g. "--mixup-layer 4 '
        '--source-noise 0.3 --sampling-k 100" (use a separate --out/--summary/--report)',
    )
    p.add_argument(
        "--tag-labels",
        choices=("pseudo", "projected", "gold"),
        default="pseudo",
        help="target-side tags for tagging: the English-only teacher's soft labels (the users' "
        "regime), the English gold tags projected through a word alignment (the users' regime "
        "too: training/projection.py) or the data's gold target tags (an oracle translate-train)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        help="tagging teacher checkpoint for --tag-labels pseudo (default: this run's zero-shot)",
    )
    p.add_argument(
        "--dev-limit",
        type=int,
        default=None,
        help="selection items per language (default: the task's, experiments/tasks.py)",
    )
    p.add_argument("--resume", action="store_true", help="skip finished trainings/evaluations")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the summary")
    p.add_argument("--quick", action="store_true", help="tiny budget smoke run")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.noise_levels = _floats(args.noise_levels)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for t in args.tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}")
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}")
    if args.quick:
        _quick(args)
    _outputs(args)
    return args


def _quick(args: argparse.Namespace) -> None:
    args.steps = min(args.steps, 4)
    args.batch_size = min(args.batch_size, 4)
    args.max_length = args.max_length or 32
    args.limit = args.limit or 8
    args.eval_limit = args.eval_limit or 6
    args.dev_limit = min(args.dev_limit or 6, 6)
    args.cka_items = min(args.cka_items, 24)
    args.seeds = args.seeds[:1]


def _outputs(args: argparse.Namespace) -> None:
    out = Path(args.out)
    args.summary = Path(
        args.summary or (out / "summary.json" if args.quick else REPO / "results" / "summary.json")
    )
    args.report = Path(
        args.report or (out / "RESULTS.md" if args.quick else REPO / "docs" / "RESULTS.md")
    )
    args.chart = Path(
        args.chart or (out / "results.png" if args.quick else REPO / "docs" / "results.png")
    )


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def public_command(command: str) -> str:
    """The command as the results show it: the data root is DATA (every machine has its own)
    and other absolute paths are shown by name, so no machine's directories are published."""
    parts = shlex.split(command)
    out = []
    for i, part in enumerate(parts):
        if i and parts[i - 1] == "--data":
            out.append("DATA")
        elif part.startswith("/"):
            out.append(Path(part).name)
        else:
            out.append(part)
    return shlex.join(out)


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPU cores visible, {platform.system()}, Python {platform.python_version()}"


def run_jobs(args: argparse.Namespace, command: str, t0: float) -> list[dict[str, Any]]:
    """Build every task's data, plan and execute the jobs; record the invocation."""
    out = Path(args.out)
    random.seed(0)
    jobs: list[Job] = []
    for task in args.tasks:
        t = time.perf_counter()
        data = build_data(
            task,
            Path(args.data),
            out / "data" / task,
            limit=args.limit,
            eval_limit=args.eval_limit,
            dev_limit=TASKS[task].selection_limit(args.dev_limit),
            log=out / "data.log",
            project_tags=args.tag_labels == "projected",
            backbone=args.backbone,
        )
        print(f"data {task}: trained on {data['train_langs']} ({time.perf_counter() - t:.0f}s)")
        jobs += plan_jobs(args, task, data)
        write_budget(args, task, command)
    (out / "plan.json").write_text(json.dumps([asdict(j) for j in jobs], indent=2) + "\n")
    # Teachers first: the pseudo-labelled runs read their checkpoints.
    first = [j for j in jobs if is_teacher(j, args)]
    results = execute(first, args.jobs) if first else []
    results += execute([j for j in jobs if j not in first], args.jobs)
    # Every invocation that did work is recorded, so a resumed or re-aggregated summary
    # still reports the compute the numbers cost.
    history_path = out / "history.json"
    history = read_json(history_path) or []
    history.append(
        {
            "command": command,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_minutes": (time.perf_counter() - t0) / 60,
            "jobs": results,
        }
    )
    history_path.write_text(json.dumps(history, indent=2) + "\n")
    return results


def summarize(args: argparse.Namespace, command: str, wall: float) -> dict[str, Any]:
    """The summary: this invocation's tasks, plus earlier tasks and extra keys kept as they were."""
    out = Path(args.out)
    summary = aggregate(args, args.tasks)
    history = read_json(out / "history.json") or []
    if args.aggregate_only and history:
        command = history[-1]["command"]  # the invocation that produced the numbers
    command = public_command(command)
    budgets = {t: read_budget(args, t, command) for t in summary}
    for b in budgets.values():
        if b and b.get("command"):
            b["command"] = public_command(b["command"])
    previous = read_json(args.summary) or {}
    for t in (t for t in TASKS if t in previous and t not in summary):
        summary[t] = previous[t]
        budgets[t] = previous.get("meta", {}).get("budgets", {}).get(t) or read_json(
            out / "runs" / t / "budget.json"
        )
    ordered = {t: summary[t] for t in TASKS if t in summary}
    # Keys other than tasks and meta (other regimes, trust-signal studies) are written by other
    # scripts into the same file and survive a re-aggregation.
    extra = {k: v for k, v in previous.items() if k not in TASKS and k != "meta"}
    meta = {
        "command": command,
        "hardware": hardware(),
        "wall_minutes": wall,
        "total_wall_minutes": sum(h["wall_minutes"] for h in history),
        "job_seconds": {
            r["job"]: r["seconds"] for h in history for r in h["jobs"] if r.get("done")
        },
        "jobs": args.jobs,
        "seeds": args.seeds,
        "backbone": args.backbone or "multilingual-e5-small (default)",
        "noise_levels": args.noise_levels,
        "headline_noise_p": HEADLINE_P,
        "budgets": budgets,
        "summary": _rel(args.summary),
        "unseen": {t: list(TASKS[t].unseen) for t in ordered},
        "trained_eval_langs": {t: list(TASKS[t].seen_eval) for t in ordered},
    }
    return {**ordered, **extra, "meta": meta}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    command = "python experiments/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = [] if args.aggregate_only else run_jobs(args, command, t0)
    wall = (time.perf_counter() - t0) / 60
    full = summarize(args, command, wall)
    tasks = {t: v for t, v in full.items() if t in TASKS}
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n")
    write_report(args.report, render_tables(tasks, full["meta"]))
    if tasks:
        write_chart(args.chart, tasks)
    print(f"wrote {args.summary}, {args.report}, {args.chart} ({wall:.1f} min)")
    failed = [r["job"] for r in results if r.get("failed")]
    if failed:
        print(f"failed: {', '.join(failed)} (see their run.log; rerun with --resume)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
