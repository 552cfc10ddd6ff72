"""One unit of experiment work per worker process: a training run and its evaluations."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


def run_cli(argv: list[str], log_path: Path) -> None:
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
            run_cli(
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
        if job.resume and any((model_dir / "checkpoints").glob("checkpoint-*")):
            # an interrupted run (killed, disk full) continues from its last checkpoint
            argv.append("--resume")
        run_cli(argv, log_path)
        done.append("train")
        if not job.keep_checkpoints:
            shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    for name, extra in job.evals.items():
        target = out / f"eval-{name}.json"
        if job.resume and target.is_file():
            continue
        argv = ["evaluate", "--model", str(model_dir), "--data", job.eval, "--out", str(target)]
        run_cli([*argv, "--num-threads", "1", *extra], log_path)
        done.append(name)
    if job.cka:
        target = out / "cka.json"
        if not (job.resume and target.is_file()):
            argv = ["analyze", "cka", "--model", str(model_dir), "--data", job.cka_data]
            run_cli([*argv, "--max-items", str(job.cka_items), "--out", str(target)], log_path)
            done.append("cka")
    return {"job": job.name, "seconds": time.perf_counter() - t0, "done": done}


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
