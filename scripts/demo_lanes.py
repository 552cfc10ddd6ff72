"""`make demo`'s lanes: each task's train → export → evaluate chain, two chains at a time.

On a few cores one job cannot use them all: a training with 2 threads ran only ~1.6x faster than
with 1 on the project's 2-core host (demo budgets; classify 0.91 vs 1.44 s/step, QA 1.5 vs 2.5
s/step with the other lane running), and an export is mostly one core. So the demo runs two
lanes side by side, each of its `xmixup` children with half the cores: the costliest task
(steps × batch × length, QA) gets a lane of its own, the others share the second
(longest-processing-time first), in plan order within a lane. One core: one lane. A fresh
clone's `DEMO_SERVE=0 make demo` went from 16.2 min (one chain after the other, each command with
both cores) to 11.8 min (with --group-by-length for classify and tag; install 1.2 min), and to
10.8 / 10.7 min (two runs; install 1.3) once the ending lane's cores went to the running QA
training (Cores, `xmixup train --threads-file`) and frozen layers lost their dropout. On a
host a quarter slower (bare onnxruntime 49 vs 66 items/s) it took 14.1 min, and 10.3 (install
1.3) once train and export kept freed memory for reuse (xmixup/memory.py: exports 37-51 s
instead of 75-100 s, QA training 7.9 instead of 10.3 min). The frozen layers' output cache
(training/frozen_cache.py) then took a fresh clone from 9.6 to 8.3 min, back to back on one host
(QA training 7.2 → 6.2 min, classify 2.8 → 2.4; the same scores). QA's move to the mix at layer 6
(two more layers trained) made it 9.1 min (QA training 6.8 min, F1 29.9 → 36.5).

The terminal shows each stage's line as it starts and ends (numbered by the plan, not by the
order they run) and one status line with each lane's progress, read from the children's logs.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_console import TTY, fmt_s, status
from demo_plan import TaskPlan
from demo_session import Demo
from demo_stages import stage_evaluate, stage_export, stage_train

STATUS_EVERY_S = 1.0 if TTY else 30.0  # a log gets a progress line every half minute
_STEP = re.compile(rb"(\d+)/(\d+) \[")  # tqdm's "45/100 [" in a child's log


@dataclass(frozen=True)
class TaskResult:
    bundle: Path
    evaluation: dict[str, Any]
    train_s: float
    export_s: float


@dataclass
class Cores:
    """Threads for the next command of a lane: the cores shared by the lanes still running
    (or DEMO_THREADS), so that the last lane's commands get every core. A running training
    is widened too: it re-reads its threads file (``xmixup train --threads-file``) before
    every step, and each file is rewritten when a lane ends."""

    total: int
    fixed: int | None
    running: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: set[Path] = field(default_factory=set)

    def share(self) -> int:
        with self.lock:
            return self._share()

    def _share(self) -> int:
        return self.fixed or max(1, self.total // max(1, self.running))

    def track(self, path: Path) -> None:
        """Write the current share to ``path`` and keep it up to date until ``untrack``."""
        with self.lock:
            self.files.add(path)
            _write_count(path, self._share())

    def untrack(self, path: Path) -> None:
        with self.lock:
            self.files.discard(path)

    def finished(self) -> None:
        with self.lock:
            self.running -= 1
            for path in self.files:
                _write_count(path, self._share())


def _write_count(path: Path, n: int) -> None:
    """Replace the file whole: the reader never sees it half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{n}\n")
    os.replace(tmp, path)


@dataclass
class Lane:
    plans: list[TaskPlan]
    cores: Cores
    doing: str = ""  # what the status line shows, e.g. "exporting qa"
    log: Path | None = None  # the running training's log, for its step count
    results: dict[str, TaskResult] = field(default_factory=dict)
    error: BaseException | None = None


def plan_cost(demo: Demo, plan: TaskPlan) -> int:
    return demo.steps_for(plan) * plan.batch_size * plan.max_length


def split_lanes(demo: Demo, plans: tuple[TaskPlan, ...], n_lanes: int) -> list[list[TaskPlan]]:
    """Tasks over ``n_lanes``: costliest first, each to the least loaded lane; plan order
    within a lane, and the lane that holds the first task first."""
    groups: list[list[TaskPlan]] = [[] for _ in range(n_lanes)]
    loads = [0] * n_lanes
    for plan in sorted(plans, key=lambda p: -plan_cost(demo, p)):
        i = loads.index(min(loads))
        groups[i].append(plan)
        loads[i] += plan_cost(demo, plan)
    ordered = [sorted(g, key=plans.index) for g in groups if g]
    return sorted(ordered, key=lambda g: plans.index(g[0]))


def run_lanes(
    demo: Demo,
    plans: tuple[TaskPlan, ...],
    backbone: Path,
    backbone_id: str,
    digests: dict[str, str],
) -> dict[str, TaskResult]:
    """Every task's chain, in lanes; returns each task's bundle and evaluation. A failed
    lane stops the other one (its child is interrupted) and its error is raised here."""
    n_cores = os.cpu_count() or 1
    groups = split_lanes(demo, plans, 2 if n_cores >= 2 else 1)
    cores = Cores(n_cores, demo.threads, running=len(groups))
    lanes = [Lane(g, cores) for g in groups]
    threads = [
        threading.Thread(
            target=_run_lane,
            args=(demo, lane, backbone, backbone_id, digests),
            name=f"lane-{'+'.join(p.task for p in lane.plans)}",
            daemon=True,  # an interrupt that cannot stop a child must not block the exit
        )
        for lane in lanes
    ]
    for thread in threads:
        thread.start()
    started, shown = time.monotonic(), 0.0
    try:
        while any(thread.is_alive() for thread in threads):
            if any(lane.error is not None for lane in lanes):
                break
            time.sleep(0.2)
            now = time.monotonic()
            if now - shown >= STATUS_EVERY_S:
                shown = now
                line = _status_line(lanes, now - started)
                if line:
                    status(line)
    except KeyboardInterrupt:
        _stop(demo, threads)
        raise
    failed = [lane.error for lane in lanes if lane.error is not None]
    if failed:
        _stop(demo, threads)
        real = [e for e in failed if not isinstance(e, KeyboardInterrupt)]
        raise real[0] if real else failed[0]
    if TTY:
        status("")  # clear the status line
    return {task: res for lane in lanes for task, res in lane.results.items()}


def _run_lane(
    demo: Demo, lane: Lane, backbone: Path, backbone_id: str, digests: dict[str, str]
) -> None:
    try:
        for plan in lane.plans:
            lane.doing, lane.log = f"training {plan.task}", demo.logs / f"train-{plan.task}.log"
            threads_file = demo.logs / f"threads-{plan.task}"
            demo.logs.mkdir(parents=True, exist_ok=True)
            lane.cores.track(threads_file)
            try:
                ckpt, train_key, train_s = stage_train(
                    demo, plan, backbone, backbone_id, digests, lane.cores.share(), threads_file
                )
            finally:
                lane.cores.untrack(threads_file)
            lane.doing, lane.log = f"exporting {plan.task}", None
            bundle, export_key, export_s = stage_export(demo, plan, ckpt, train_key)
            lane.doing = f"evaluating {plan.task}"
            res = stage_evaluate(demo, plan, bundle, export_key, digests, lane.cores.share())
            lane.results[plan.task] = TaskResult(bundle, res, train_s, export_s)
        lane.doing = ""
    except BaseException as exc:  # handed to the main thread, which raises it
        lane.error = exc
    finally:
        lane.cores.finished()


def _status_line(lanes: list[Lane], elapsed: float) -> str:
    parts = []
    for lane in lanes:
        if not lane.doing:
            continue
        step = _last_step(lane.log) if lane.log is not None else None
        parts.append(f"{lane.doing} {step[0]}/{step[1]} steps" if step else lane.doing)
    return f"  … {' · '.join(parts)}  ({fmt_s(elapsed)})" if parts else ""


def _last_step(log: Path) -> tuple[int, int] | None:
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 4096))
            tail = f.read()
    except OSError:
        return None
    found = _STEP.findall(tail)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def _stop(demo: Demo, threads: list[threading.Thread]) -> None:
    demo.stop_commands()
    for thread in threads:
        thread.join(timeout=30)
