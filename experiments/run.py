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
import logging
import os
import platform
import random
import shlex
import shutil
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xmixup.core.vocab import METHODS

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's data comes from and which languages are held out."""

    fmt: str  # xmixup data --format
    sub: str  # folder under the data root
    unseen: tuple[str, ...]  # ISO codes never in training (evaluated)
    seen_eval: tuple[str, ...]  # trained languages that are also evaluated
    train_split: str
    eval_split: str
    max_length: int
    methods: tuple[str, ...]
    unseen_names: str  # for the report


TASKS: dict[str, TaskSpec] = {
    "classify": TaskSpec(
        fmt="sib200",
        sub="classification/sib200",
        unseen=("ur", "sw", "is"),
        seen_eval=("de", "zh", "ar"),
        train_split="train",
        eval_split="test",
        max_length=64,
        methods=METHODS,
        unseen_names="urd_Arab, swh_Latn, isl_Latn",
    ),
    "tag": TaskSpec(
        fmt="conllu",
        sub="tagging/ud_pud",
        unseen=("is", "ko", "fi"),
        seen_eval=("de", "zh", "ar"),
        train_split="train",
        eval_split="eval",
        max_length=128,
        methods=("xmixup", "translate-train", "zero-shot"),
        unseen_names="Icelandic, Korean, Finnish PUD",
    ),
    "qa": TaskSpec(
        fmt="squad",
        sub="qa/xquad",
        unseen=("el", "ro", "vi"),
        seen_eval=("de", "zh", "ar"),
        train_split="train",
        eval_split="eval",
        max_length=256,
        methods=("xmixup", "translate-train", "zero-shot"),
        unseen_names="XQuAD el, ro, vi",
    ),
}


def available_langs(task: str, root: Path) -> list[str]:
    """ISO codes of the languages the task's folder holds (English included)."""
    from training.data.convert import FLORES_TO_ISO

    folder = root / TASKS[task].sub
    if not folder.is_dir():
        raise SystemExit(f"data folder {folder} does not exist (see --data)")
    if task == "classify":
        return sorted(FLORES_TO_ISO.get(d.name, d.name) for d in folder.iterdir() if d.is_dir())
    if task == "tag":
        return sorted({p.name.split("_pud")[0] for p in folder.glob("*/*_pud-ud-test.conllu")})
    return sorted(p.name.split(".")[1] for p in folder.glob("xquad.*.json"))


# ----------------------------------------------------------------------------- plan


@dataclass
class Job:
    """One unit of work for a worker: a training run plus its evaluations, or a CKA baseline."""

    kind: str  # "run" | "cka-before"
    task: str
    method: str
    seed: int
    out: str
    train: str = ""
    eval: str = ""
    cka_data: str = ""
    train_args: list[str] = field(default_factory=list)
    evals: dict[str, list[str]] = field(default_factory=dict)  # name -> extra evaluate args
    cka: bool = False
    backbone: str | None = None
    resume: bool = False
    keep_checkpoints: bool = False
    cka_items: int = 300

    @property
    def name(self) -> str:
        if self.kind == "cka-before":
            return f"{self.task}/cka-before"
        return f"{self.task}/{self.method}/seed{self.seed}"


def _cli(argv: list[str], log_path: Path) -> None:
    """Run ``xmixup ARGV`` in this process, appending its output to ``log_path``."""
    from xmixup.cli import main

    with open(log_path, "a", encoding="utf-8", buffering=1) as fh:
        fh.write(f"\n$ xmixup {shlex.join(argv)}\n")
        fh.flush()
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
                rc = main(argv)
        finally:
            root.removeHandler(handler)
    if rc != 0:
        raise RuntimeError(f"xmixup {argv[0]} failed (exit {rc}); see {log_path}")


def run_job(job: Job) -> dict[str, Any]:
    """Execute one job (in a worker process); returns timing information."""
    import torch

    torch.set_num_threads(1)
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "run.log"
    t0 = time.perf_counter()
    done: list[str] = []
    if job.kind == "cka-before":
        from training.backbone import resolve_backbone

        target = out / "cka.json"
        if not (job.resume and target.is_file()):
            backbone = str(resolve_backbone(job.backbone))
            _cli(
                [
                    "analyze",
                    "cka",
                    "--model",
                    backbone,
                    "--data",
                    job.cka_data,
                    "--task",
                    job.task,
                    "--max-items",
                    str(job.cka_items),
                    "--out",
                    str(target),
                ],
                log_path,
            )
            done.append("cka")
        return {"job": job.name, "seconds": time.perf_counter() - t0, "done": done}
    model_dir = out / "model"
    if not (job.resume and (model_dir / "metrics.json").is_file()):
        argv = ["train", "--task", job.task, "--method", job.method, "--train", job.train]
        argv += ["--out", str(model_dir), "--seed", str(job.seed), *job.train_args]
        if job.backbone:
            argv += ["--backbone", job.backbone]
        _cli(argv, log_path)
        done.append("train")
        if not job.keep_checkpoints:
            shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    for name, extra in job.evals.items():
        target = out / f"eval-{name}.json"
        if job.resume and target.is_file():
            continue
        argv = ["evaluate", "--model", str(model_dir), "--data", job.eval, "--out", str(target)]
        _cli([*argv, "--num-threads", "1", *extra], log_path)
        done.append(name)
    if job.cka:
        target = out / "cka.json"
        if not (job.resume and target.is_file()):
            argv = ["analyze", "cka", "--model", str(model_dir), "--data", job.cka_data]
            _cli([*argv, "--max-items", str(job.cka_items), "--out", str(target)], log_path)
            done.append("cka")
    return {"job": job.name, "seconds": time.perf_counter() - t0, "done": done}


def build_data(
    task: str,
    root: Path,
    out: Path,
    *,
    limit: int | None,
    eval_limit: int | None,
    dev_limit: int | None,
    log: Path,
) -> dict[str, str]:
    """``xmixup data`` for one task: train (trained langs incl. en), train-en, eval, dev."""
    spec = TASKS[task]
    folder = str(root / spec.sub)
    have = available_langs(task, root)
    missing = [lang for lang in (*spec.unseen, *spec.seen_eval, "en") if lang not in have]
    if missing:
        raise SystemExit(f"{task}: {folder} lacks language(s) {', '.join(missing)}")
    train_langs = [lang for lang in have if lang not in spec.unseen]
    eval_langs = [*spec.unseen, *spec.seen_eval]
    out.mkdir(parents=True, exist_ok=True)
    base = ["data", "--task", task, "--format", spec.fmt, "--input", folder, "--seed", "0"]
    files = {
        "train": (train_langs, spec.train_split, limit),
        "train-en": (["en"], spec.train_split, limit),
        "eval": (eval_langs, spec.eval_split, eval_limit),
        # Model selection (ablations, defaults) reads this, never the eval file: the unseen
        # languages' train-side items are in no training file (their language is held out) and
        # share no item with the eval split.
        "dev": (list(spec.unseen), spec.train_split, dev_limit),
    }
    paths = {}
    for name, (langs, split, lim) in files.items():
        path = out / f"{name}.jsonl"
        paths[name] = str(path)
        if path.is_file() and Path(f"{path}.stats.json").is_file():
            continue
        argv = [*base, "--langs", ",".join(langs), "--split", split, "--out", str(path)]
        if lim:
            argv += ["--limit", str(lim)]
        _cli(argv, log)
    # CKA on a language-balanced sample of the eval file (the file is grouped by language).
    cka = out / "cka.jsonl"
    paths["cka"] = str(cka)
    by_lang: dict[str, list[str]] = defaultdict(list)
    for line in Path(paths["eval"]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            by_lang[json.loads(line)["lang"]].append(line)
    rows = [line for group in zip(*by_lang.values(), strict=False) for line in group]
    cka.write_text("\n".join(rows) + "\n", encoding="utf-8")
    paths["train_langs"] = ",".join(train_langs)
    return paths


def plan_jobs(args: argparse.Namespace, task: str, data: dict[str, str]) -> list[Job]:
    spec = TASKS[task]
    max_len = args.max_length or spec.max_length
    common = ["--max-steps", str(args.steps), "--batch-size", str(args.batch_size)]
    common += ["--max-length", str(max_len), "--num-threads", "1", "--no-progress"]
    common += ["--select", "last", "--save-steps", str(args.steps)]
    if args.freeze_embeddings:
        common.append("--freeze-embeddings")
    noise = [p for p in args.noise_levels if p > 0]
    # Ablations of the method itself (layer, alpha, sampling): extra flags for xmixup runs only,
    # so the baselines stay the same runs (pair with a separate --out/--summary/--report).
    xmixup_extra = shlex.split(args.xmixup_args)
    jobs = []
    run_root = Path(args.out) / "runs" / task
    for method in spec.methods:
        if method not in args.methods:
            continue
        seeds = args.seeds if method in ("xmixup", "translate-train") else args.seeds[:1]
        for seed in seeds:
            evals: dict[str, list[str]] = {"main": [], "dev": ["--data", data["dev"]]}
            if method == "xmixup":
                evals["no-source"] = ["--no-source"]
            if method in ("xmixup", "translate-test"):
                for p in noise:
                    evals[f"noise-{p:g}"] = ["--source-noise", str(p)]
                    evals[f"dev-noise-{p:g}"] = ["--data", data["dev"], "--source-noise", str(p)]
            english_only = method in ("zero-shot", "translate-test")
            extra = xmixup_extra if method == "xmixup" else []
            if task == "tag" and args.tag_labels == "pseudo" and not english_only:
                # The users' regime: no target tags; the target side learns from the English-only
                # teacher's soft labels (the reference code's UDPOS/PANX set-up).
                extra = [*extra, "--target-labels", "pseudo", "--teacher", teacher_dir(args, task)]
            elif task == "tag" and not english_only:
                extra = [*extra, "--target-labels", "gold"]
            jobs.append(
                Job(
                    kind="run",
                    task=task,
                    method=method,
                    seed=seed,
                    out=str(run_root / f"{method}-seed{seed}"),
                    train=data["train-en" if english_only else "train"],
                    eval=data["eval"],
                    cka_data=data["cka"],
                    train_args=list(common) + extra,
                    evals=evals,
                    cka=method in ("xmixup", "translate-train"),
                    backbone=args.backbone,
                    resume=args.resume,
                    cka_items=args.cka_items,
                )
            )
    jobs.append(
        Job(
            kind="cka-before",
            task=task,
            method="backbone",
            seed=0,
            out=str(run_root / "cka-before"),
            cka_data=data["cka"],
            backbone=args.backbone,
            resume=args.resume,
            cka_items=args.cka_items,
        )
    )
    return jobs


def teacher_dir(args: argparse.Namespace, task: str) -> str:
    """The tagging teacher: --teacher, else this invocation's first zero-shot run."""
    if args.teacher:
        return str(Path(args.teacher).resolve())
    return str(
        Path(args.out).resolve() / "runs" / task / f"zero-shot-seed{args.seeds[0]}" / "model"
    )


def is_teacher(job: Job, args: argparse.Namespace) -> bool:
    """Jobs that others wait for: the zero-shot tagger whose labels the pseudo regime trains on."""
    return (
        job.task == "tag"
        and args.tag_labels == "pseudo"
        and not args.teacher
        and job.kind == "run"
        and job.method == "zero-shot"
    )


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def execute(jobs: list[Job], n_jobs: int) -> list[dict[str, Any]]:
    """Run the jobs, ``n_jobs`` at a time (each in its own process, 1 thread)."""
    t_start = time.perf_counter()
    results = []

    def report(res: dict[str, Any]) -> None:
        wall = time.perf_counter() - t_start
        what = ", ".join(res["done"]) or "nothing to do (resumed)"
        print(f"[{wall / 60:6.1f} min] done {res['job']} in {res['seconds']:.0f}s: {what}")
        sys.stdout.flush()
        results.append(res)

    # Longest first, so that two workers finish at about the same time.
    weight = {"xmixup": 0, "translate-train": 1, "translate-test": 2, "zero-shot": 3, "backbone": 4}
    jobs = sorted(jobs, key=lambda j: (weight.get(j.method, 5), j.task, j.seed))
    for j in jobs:
        print(f"queued {j.name} -> {j.out}")
    if n_jobs <= 1:
        _worker_init()
        for j in jobs:
            print(f"[{(time.perf_counter() - t_start) / 60:6.1f} min] start {j.name}")
            try:
                report(run_job(j))
            except Exception as exc:
                print(f"FAILED {j.name}: {exc}")
                results.append({"job": j.name, "failed": str(exc), "done": []})
        return results
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(run_job, j): j for j in jobs}
        for fut in as_completed(futures):
            try:
                report(fut.result())
            except Exception as exc:  # one failed run must not lose the others' records
                wall = (time.perf_counter() - t_start) / 60
                print(f"[{wall:6.1f} min] FAILED {futures[fut].name}: {exc}")
                results.append({"job": futures[fut].name, "failed": str(exc), "done": []})
    return results


# ----------------------------------------------------------------------------- aggregation


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _mean_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Average {"avg", "per_lang"} blocks over seeds; keep the per-seed averages."""
    langs = list(blocks[0]["per_lang"])
    avgs = [float(b["avg"]) for b in blocks]
    return {
        "avg": statistics.fmean(avgs),
        "per_lang": {
            lang: statistics.fmean(float(b["per_lang"][lang]) for b in blocks) for lang in langs
        },
        "seed_avgs": avgs,
        "seed_std": statistics.pstdev(avgs) if len(avgs) > 1 else 0.0,
    }


def _subset_avg(per_lang: dict[str, float], langs: list[str]) -> float | None:
    vals = [per_lang[lang] for lang in langs if lang in per_lang]
    return statistics.fmean(vals) if vals else None


def task_budget(args: argparse.Namespace, task: str, command: str) -> dict[str, Any]:
    """What one task's numbers cost to produce: the knobs of the invocation that trained it."""
    return {
        "command": command,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length or TASKS[task].max_length,
        "freeze_embeddings": args.freeze_embeddings,
        "seeds": args.seeds,
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "noise_levels": args.noise_levels,
        "xmixup_args": args.xmixup_args,
        "tag_labels": args.tag_labels if task == "tag" else None,
        "teacher": args.teacher if task == "tag" else None,
        "dev_limit": args.dev_limit,
        "jobs": args.jobs,
    }


def write_budget(args: argparse.Namespace, task: str, command: str) -> None:
    # Tasks are often trained by separate invocations with different budgets (QA costs several
    # times a classification step), so each task keeps its own record next to its runs.
    path = Path(args.out) / "runs" / task / "budget.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(task_budget(args, task, command), indent=2) + "\n")


def read_budget(args: argparse.Namespace, task: str, command: str) -> dict[str, Any]:
    return _read(Path(args.out) / "runs" / task / "budget.json") or task_budget(args, task, command)


def aggregate(args: argparse.Namespace, tasks: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for task in tasks:
        spec = TASKS[task]
        root = Path(args.out) / "runs" / task
        before = _read(root / "cka-before" / "cka.json")
        entries: dict[str, Any] = {}
        for method in spec.methods:
            run_dirs = sorted(root.glob(f"{method}-seed*"))
            mains = [(d, _read(d / "eval-main.json")) for d in run_dirs]
            mains = [(d, m) for d, m in mains if m]
            if not mains:
                continue
            e: dict[str, Any] = _mean_block([m for _, m in mains])
            e["metric"] = mains[0][1]["metric"]
            e["unseen"] = [lang for lang in spec.unseen if lang in e["per_lang"]]
            e["seen"] = [lang for lang in spec.seen_eval if lang in e["per_lang"]]
            e["unseen_avg"] = _subset_avg(e["per_lang"], e["unseen"])
            e["seen_avg"] = _subset_avg(e["per_lang"], e["seen"])
            e["seeds"] = [int(d.name.rsplit("seed", 1)[1]) for d, _ in mains]
            e["items_per_lang"] = mains[0][1].get("n", {})
            lam = [m["lambda"] for _, m in mains]
            e["lambda"] = {k: statistics.fmean(x[k] for x in lam) for k in lam[0]}
            e["lambda_per_seed"] = lam
            if "em" in mains[0][1]:
                e["em"] = _mean_block([m["em"] for _, m in mains])
            streams = [m.get("streams") for _, m in mains]
            if all(streams):
                for name in ("target", "source"):
                    e[f"{name}_stream"] = _mean_block([s[name] for s in streams])
            devs = [_read(d / "eval-dev.json") for d, _ in mains]
            if all(devs):
                e["dev"] = _mean_block(devs)
                for p in args.noise_levels:
                    dn = [_read(d / f"eval-dev-noise-{p:g}.json") for d, _ in mains]
                    if p > 0 and all(dn):
                        e["dev"][f"noise_{p:g}"] = _mean_block(dn)
            nos = [_read(d / "eval-no-source.json") for d, _ in mains]
            if all(nos):
                e["no_source"] = _mean_block(nos)
                e["no_source"]["lambda"] = statistics.fmean(n["lambda"]["mean"] for n in nos)
            sweep = {}
            for p in args.noise_levels:
                evs = [m if p == 0 else _read(d / f"eval-noise-{p:g}.json") for d, m in mains]
                if all(evs):
                    sweep[f"{p:g}"] = {
                        "avg": statistics.fmean(float(x["avg"]) for x in evs),
                        "lambda_mean": statistics.fmean(x["lambda"]["mean"] for x in evs),
                        "lambda_std": statistics.fmean(x["lambda"]["std"] for x in evs),
                    }
                    if all(x.get("streams") for x in evs):
                        sweep[f"{p:g}"]["target_stream_avg"] = statistics.fmean(
                            x["streams"]["target"]["avg"] for x in evs
                        )
            if len(sweep) > 1:
                e["sweep"] = sweep
            ckas = [_read(d / "cka.json") for d, _ in mains]
            if all(ckas) and before:
                e["cka"] = {
                    "before": before["plain"]["per_layer"],
                    "before_mean": before["plain"]["mean"],
                    "after": _mean_layers([c["plain"]["per_layer"] for c in ckas]),
                    "after_mean": statistics.fmean(c["plain"]["mean"] for c in ckas),
                }
                if all("mixed" in c for c in ckas):
                    e["cka"]["after_mixed"] = _mean_layers([c["mixed"]["per_layer"] for c in ckas])
                    e["cka"]["after_mixed_mean"] = statistics.fmean(
                        c["mixed"]["mean"] for c in ckas
                    )
            trains = [_read(d / "model" / "metrics.json") for d, _ in mains]
            times = [t["train"]["step_time"].get("median_s") for t in trains if t]
            if times and all(times):
                e["step_time_s"] = statistics.fmean(times)
                e["train_seconds"] = statistics.fmean(t["train"]["train_seconds"] for t in trains)
                e["steps"] = trains[0]["train"]["steps"]
            entries[method] = e
        if "xmixup" in entries and "translate-train" in entries:
            xm, tt = entries["xmixup"], entries["translate-train"]
            if xm.get("step_time_s") and tt.get("step_time_s"):
                xm["cost"] = {
                    "step_time_s": xm["step_time_s"],
                    "translate_train_step_time_s": tt["step_time_s"],
                    "ratio_vs_translate_train": xm["step_time_s"] / tt["step_time_s"],
                    "goal": 2.2,
                }
        if entries:
            summary[task] = entries
    return summary


def _mean_layers(rows: list[list[float]]) -> list[float]:
    return [statistics.fmean(v) for v in zip(*rows, strict=True)]


# ----------------------------------------------------------------------------- report


def _f(x: Any, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def budget_line(b: dict[str, Any]) -> str:
    if not b:
        return "Budget: not recorded."
    seeds = b.get("seeds") or []
    line = (
        f"Budget per run: {b['steps']} steps x batch {b['batch_size']}, max length "
        f"{b['max_length']}, frozen word embeddings: {b['freeze_embeddings']}; seeds "
        f"{seeds} (xmixup, translate-train), {seeds[:1]} (translate-test, zero-shot)"
    )
    if b.get("eval_limit"):
        line += f"; at most {b['eval_limit']} eval items per language"
    if b.get("limit"):
        line += f"; at most {b['limit']} training items per language"
    if b.get("xmixup_args"):
        line += f"; xmixup runs with `{b['xmixup_args']}`"
    return line + f". Command: `{b.get('command', '?')}`."


def render_tables(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    out = [
        f"Generated by `experiments/run.py` from `{meta.get('summary', 'results/summary.json')}`; "
        "do not edit by hand.",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Hardware: {meta['hardware']}. Wall time: {meta['total_wall_minutes']:.1f} min over "
        "all invocations that trained or evaluated (parallel 1-thread jobs; each task's "
        "command below says how many).",
        "",
    ]
    for task, entries in summary.items():
        spec = TASKS[task]
        any_e = next(iter(entries.values()))
        langs = list(any_e["per_lang"])
        metric = any_e["metric"]
        out += [
            f"### {task} ({spec.fmt}; {metric}; unseen = {', '.join(spec.unseen)}, "
            f"trained = {', '.join(spec.seen_eval)})",
            "",
            budget_line(meta.get("budgets", {}).get(task) or {}),
            "",
            "| method (inference) | seeds | "
            + " | ".join(f"{lang}{'*' if lang in spec.unseen else ''}" for lang in langs)
            + " | unseen avg | trained avg | avg | seed avgs |",
            "|---|---|" + "---|" * (len(langs) + 4),
        ]
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for method, e in entries.items():
            label = method
            if method == "xmixup" and task == "classify":
                label = "xmixup (mean of both streams)"
            rows.append((label, ",".join(map(str, e["seeds"])), e))
            if "target_stream" in e:
                rows.append(("xmixup: mixed target stream alone", "", e["target_stream"]))
                rows.append(("xmixup: English stream alone", "", e["source_stream"]))
            if "no_source" in e:
                rows.append(
                    ("xmixup --no-source (both streams, source := target)", "", e["no_source"])
                )
        for label, seeds, e in rows:
            pl = e["per_lang"]
            out.append(
                f"| {label} | {seeds} | "
                + " | ".join(_f(pl.get(lang)) for lang in langs)
                + f" | {_f(_subset_avg(pl, list(spec.unseen)))}"
                + f" | {_f(_subset_avg(pl, list(spec.seen_eval)))} | **{_f(e['avg'])}** | "
                + " / ".join(_f(a) for a in e["seed_avgs"])
                + " |"
            )
        out += ["", "\\* = language held out of training (unseen).", ""]
        out += ["λ (mixup ratio) on the eval set, mean over seeds:", ""]
        out += ["| method | mean | std | min | max |", "|---|---|---|---|---|"]
        for method, e in entries.items():
            lam = e["lambda"]
            out.append(
                f"| {method} | {lam['mean']:.4f} | {lam['std']:.4f} | {lam['min']:.4f} "
                f"| {lam['max']:.4f} |"
            )
        if any("no_source" in e for e in entries.values()):
            out.append(
                f"| xmixup --no-source | {entries['xmixup']['no_source']['lambda']:.4f} | | | |"
            )
        out.append("")
        sweeps = {m: e["sweep"] for m, e in entries.items() if "sweep" in e}
        if sweeps:
            out += [
                "Robustness sweep (source degraded by the seeded noise model at probability P):",
                "",
                "| method | P | avg | mean λ | λ std | mixed target stream alone |",
                "|---|---|---|---|---|---|",
            ]
            for method, sw in sweeps.items():
                for p, v in sw.items():
                    out.append(
                        f"| {method} | {p} | {_f(v['avg'])} | {v['lambda_mean']:.4f} "
                        f"| {v['lambda_std']:.4f} | {_f(v.get('target_stream_avg'))} |"
                    )
            out.append("")
        ckas = {m: e["cka"] for m, e in entries.items() if "cka" in e}
        if ckas:
            n = len(next(iter(ckas.values()))["before"])
            out += [
                "Linear CKA source vs target (mean-pooled states; layer 0 = embeddings):",
                "",
                "| model | " + " | ".join(str(i) for i in range(n)) + " | mean 1..L |",
                "|---|" + "---|" * (n + 1),
            ]
            first = next(iter(ckas.values()))
            out.append(
                "| initial backbone (before) | "
                + " | ".join(f"{v:.3f}" for v in first["before"])
                + f" | {first['before_mean']:.3f} |"
            )
            for method, c in ckas.items():
                out.append(
                    f"| {method} after, unmixed | "
                    + " | ".join(f"{v:.3f}" for v in c["after"])
                    + f" | {c['after_mean']:.3f} |"
                )
                if "after_mixed" in c:
                    out.append(
                        f"| {method} after, mixed | "
                        + " | ".join(f"{v:.3f}" for v in c["after_mixed"])
                        + f" | {c['after_mixed_mean']:.3f} |"
                    )
            out.append("")
        cost_rows = [(m, e) for m, e in entries.items() if e.get("step_time_s")]
        if cost_rows:
            out += ["Training cost (median step time, 1 thread per job):", ""]
            out += ["| method | s/step | train s | steps |", "|---|---|---|---|"]
            for m, e in cost_rows:
                out.append(
                    f"| {m} | {e['step_time_s']:.3f} | {e['train_seconds']:.0f} | {e['steps']} |"
                )
            if "cost" in entries.get("xmixup", {}):
                r = entries["xmixup"]["cost"]["ratio_vs_translate_train"]
                out.append("")
                out.append(f"xmixup / translate-train step time: **{r:.2f}x** (goal ≤ 2.2x).")
            out.append("")
    return "\n".join(out)


def write_report(path: Path, tables: str) -> None:
    """Replace the generated block of ``path`` (create the file around it if needed)."""
    block = f"{BEGIN}\n{tables}\n{END}"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail, encoding="utf-8")
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Results\n\n{block}\n", encoding="utf-8")


def write_chart(path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(7 * max(1, len(tasks)), 4.5))
    axes = [axes] if len(tasks) <= 1 else list(axes)
    for ax, task in zip(axes, tasks, strict=False):
        entries = summary[task]
        bars: list[tuple[str, dict[str, Any]]] = []
        for method, e in entries.items():
            bars.append((method, e))
            if "target_stream" in e:
                bars.append(("xmixup\ntarget stream", e["target_stream"]))
        unseen = list(TASKS[task].unseen)
        seen = list(TASKS[task].seen_eval)
        x = range(len(bars))
        w = 0.38
        u = [_subset_avg(e["per_lang"], unseen) or 0.0 for _, e in bars]
        s = [_subset_avg(e["per_lang"], seen) or 0.0 for _, e in bars]
        ax.bar([i - w / 2 for i in x], u, w, label="unseen langs")
        ax.bar([i + w / 2 for i in x], s, w, label="trained langs")
        for i, (uu, ss) in enumerate(zip(u, s, strict=True)):
            ax.text(i - w / 2, uu, f"{uu:.1f}", ha="center", va="bottom", fontsize=7)
            ax.text(i + w / 2, ss, f"{ss:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(x))
        ax.set_xticklabels([b[0].replace("-", "-\n", 1) for b in bars], fontsize=8)
        lo = min(u + s)
        ax.set_ylim(max(0.0, lo - 10), min(100.0, max(u + s) + 4))
        ax.set_ylabel(next(iter(entries.values()))["metric"])
        ax.set_title(f"{task}: mean over seeds")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
        "--data", default=str(REPO.parent / "shared" / "data"), help="data root (../shared/data)"
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
        "--xmixup-args",
        default="",
        help='extra `xmixup train` flags for the xmixup runs only, e.g. "--mixup-layer 4 '
        '--source-noise 0.3 --sampling-k 100" (use a separate --out/--summary/--report)',
    )
    p.add_argument(
        "--tag-labels",
        choices=("pseudo", "gold"),
        default="pseudo",
        help="target-side tags for tagging: the English-only teacher's soft labels (the users' "
        "regime) or the data's gold target tags (an oracle translate-train)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        help="tagging teacher checkpoint for --tag-labels pseudo (default: this run's zero-shot)",
    )
    p.add_argument(
        "--dev-limit", type=int, default=150, help="dev items per (unseen) language, for selection"
    )
    p.add_argument("--resume", action="store_true", help="skip finished trainings/evaluations")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the summary")
    p.add_argument("--quick", action="store_true", help="tiny budget smoke run")
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
        args.steps = min(args.steps, 4)
        args.batch_size = min(args.batch_size, 4)
        args.max_length = args.max_length or 32
        args.limit = args.limit or 8
        args.eval_limit = args.eval_limit or 6
        args.dev_limit = min(args.dev_limit, 6)
        args.cka_items = min(args.cka_items, 24)
        args.seeds = args.seeds[:1]
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
    return args


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPU cores visible, {platform.system()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.aggregate_only:
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
                dev_limit=args.dev_limit,
                log=out / "data.log",
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
        history = _read(history_path) or []
        history.append(
            {
                "command": command,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "wall_minutes": (time.perf_counter() - t0) / 60,
                "jobs": results,
            }
        )
        history_path.write_text(json.dumps(history, indent=2) + "\n")
    summary = aggregate(args, args.tasks)
    wall = (time.perf_counter() - t0) / 60
    history = _read(out / "history.json") or []
    if args.aggregate_only and history:
        command = history[-1]["command"]  # the invocation that produced the numbers
    budgets = {t: read_budget(args, t, command) for t in summary}
    # Tasks trained by earlier invocations (another budget) stay in the summary as they were.
    previous = _read(args.summary) or {}
    kept = [t for t in TASKS if t in previous and t not in summary]
    for t in kept:
        summary[t] = previous[t]
        budgets[t] = previous.get("meta", {}).get("budgets", {}).get(t) or _read(
            out / "runs" / t / "budget.json"
        )
    summary = {t: summary[t] for t in TASKS if t in summary}
    meta = {
        "command": command,
        "hardware": hardware(),
        "wall_minutes": wall,
        "total_wall_minutes": sum(h["wall_minutes"] for h in history),
        "job_seconds": {
            r["job"]: r["seconds"] for h in history for r in h["jobs"] if r.get("done")
        },
        "jobs": args.jobs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "freeze_embeddings": args.freeze_embeddings,
        "seeds": args.seeds,
        "backbone": args.backbone or "multilingual-e5-small (default)",
        "noise_levels": args.noise_levels,
        "budgets": budgets,
        "summary": _rel(args.summary),
        "unseen": {t: list(TASKS[t].unseen) for t in summary},
        "trained_eval_langs": {t: list(TASKS[t].seen_eval) for t in summary},
    }
    full = {**summary, "meta": meta}
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n")
    write_report(args.report, render_tables(summary, meta))
    if summary:
        write_chart(args.chart, summary)
    print(f"wrote {args.summary}, {args.report}, {args.chart} ({wall:.1f} min)")
    failed = [r["job"] for h in history[-1:] for r in h["jobs"] if r.get("failed")]
    if failed and not args.aggregate_only:
        print(f"failed: {', '.join(failed)} (see their run.log; rerun with --resume)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
