#!/usr/bin/env python3
"""`make demo`: from a fresh clone to a served X-Mixup demo (backbone → train → export → serve).

Stages, each printed as one line with its duration; the three tasks' train → export → evaluate
chains run two at a time (demo_lanes), with one status line of their progress:

  backbone   materialise the default multilingual-e5-small encoder (or use DEMO_BACKBONE)
  data       validate the shipped demo sets: examples/data/{sib200,pud,xquad}/{train,eval}.jsonl
  train      one X-Mixup model per task: classify (SIB-200), tag (UD PUD, UPOS), qa (XQuAD)
  export     ONNX bundle per task (parity-checked against PyTorch) into <out>/bundles/<task>/
  evaluate   each bundle on its eval file with onnxruntime → <out>/summary.json
  serve      `xmixup serve --models <out>/bundles` on 127.0.0.1:8000, then curl examples

Re-running reuses every stage whose inputs (files, settings, upstream stage) are unchanged: a
stamp per stage in <out>/.stamps/ holds the hash of its inputs. Every artifact is written
under <out>/.tmp/ and renamed into place when complete, so Ctrl-C never leaves a half-written
checkpoint, bundle or summary.

This file reads the settings and handles interrupts; the rest lives beside it: demo_plan (the
tasks and their budgets), demo_session (one run's state, stamps, stage lines and `xmixup`
children), demo_stages (backbone → evaluate), demo_lanes (two task chains at a time),
demo_summary (summary.json), demo_serve (the service and its curl examples), demo_console
(stage and status lines), demo_files (input hashes, atomic writes).

Environment (all optional):
  DEMO_STEPS     training steps for every task (default per task: classify 100, tag 80, qa 180)
  DEMO_SERVE     0 = build everything and print the summary, do not start the server
  DEMO_BACKBONE  HF encoder directory to use instead of the default backbone (tests use a tiny one)
  DEMO_OUT       output directory (default demo/)
  DEMO_HOST, DEMO_PORT   where to serve (default 127.0.0.1:8000)
  DEMO_THREADS   torch/onnxruntime threads per command (default: half the cores, one lane each)
  DEMO_FREEZE    0 = fine-tune every encoder layer (default 1: keep those below the mixup
                 layer fixed, ~0.7x the step time)
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from demo_console import colour, rel, say
from demo_files import dir_digest
from demo_lanes import run_lanes
from demo_plan import PLANS, ROOT, DemoError
from demo_serve import stage_serve
from demo_session import Demo
from demo_stages import stage_backbone, stage_data
from demo_summary import print_summary, summary_entry, write_summary

sys.path.insert(0, str(ROOT))  # the project's packages, also when run without `pip install -e`


def env_int(name: str, default: int | None, minimum: int = 0) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DemoError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise DemoError(f"{name} must be at least {minimum}, got {value}")
    return value


def build_demo() -> Demo:
    out = Path(os.environ.get("DEMO_OUT") or ROOT / "demo").resolve()
    serve_raw = os.environ.get("DEMO_SERVE", "1").strip().lower()
    if serve_raw not in ("0", "1", "false", "true", "no", "yes", ""):
        raise DemoError(f"DEMO_SERVE={serve_raw!r}: use 1 (serve) or 0 (build only)")
    steps = env_int("DEMO_STEPS", None, minimum=1)
    port = env_int("DEMO_PORT", 8000, minimum=1)
    freeze = env_int("DEMO_FREEZE", 1)
    assert port is not None
    return Demo(
        out=out,
        steps=steps,
        serve=serve_raw not in ("0", "false", "no"),
        backbone_arg=os.environ.get("DEMO_BACKBONE") or None,
        host=os.environ.get("DEMO_HOST") or "127.0.0.1",
        port=port,
        threads=env_int("DEMO_THREADS", None, minimum=1),
        freeze=bool(freeze),
    )


def run(demo: Demo) -> int:
    t0 = time.monotonic()
    # One handler on the real stderr for every in-process command (the CLI's basicConfig then
    # keeps it): warnings only, the stage lines and progress bars tell the story.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keys = ["backbone", "data"]
    keys += [f"{stage}-{p.task}" for p in PLANS for stage in ("train", "export", "eval")]
    keys += ["serve"] if demo.serve else []
    demo.numbers = {key: i for i, key in enumerate(keys, start=1)}
    demo.n_stages = len(keys)
    say(
        colour(
            "1",
            f"xmixup demo → {rel(demo.out)}  (training steps: "
            + ", ".join(f"{p.task} {demo.steps_for(p)}" for p in PLANS)
            + "; DEMO_STEPS=N to change)",
        )
    )
    backbone = stage_backbone(demo)
    backbone_id = dir_digest(backbone)
    digests = stage_data(demo)
    built = run_lanes(demo, PLANS, backbone, backbone_id, digests)
    summary: dict[str, Any] = {}
    for plan in PLANS:
        r = built[plan.task]
        summary[plan.task] = summary_entry(
            demo, plan, r.bundle, r.evaluation, r.train_s, r.export_s
        )
    path = write_summary(demo, summary)
    shutil.rmtree(demo.tmp, ignore_errors=True)
    print_summary(path, summary, time.monotonic() - t0)
    if not demo.serve:
        say(
            f"DEMO_SERVE=0: not serving. Serve with: xmixup serve --models {rel(demo.out / 'bundles')}"
        )
        return 0
    return stage_serve(demo, demo.out / "bundles")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _force_exit(signum: int, frame: Any) -> NoReturn:
    # A second Ctrl-C while the first one is being cleaned up: the user wants out now.
    os._exit(130)


def _exit_now(code: int) -> NoReturn:
    """Leave without interpreter shutdown after an interrupt. Ctrl-C can land inside a native
    library's import or a worker thread (torch, tokenizers, datasets); joining such threads at
    shutdown can block. Everything worth keeping is already renamed into place."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> int:
    # SIGTERM (e.g. from a CI runner) stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    from xmixup.errors import UserError

    demo: Demo | None = None
    try:
        demo = build_demo()
        return run(demo)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, _force_exit)
        signal.signal(signal.SIGTERM, _force_exit)
        serving = demo is not None and demo.child is not None
        if demo is not None:
            demo.stop_child()
            shutil.rmtree(demo.tmp, ignore_errors=True)
        say()
        if serving:
            say("Stopped the service. `make demo` serves the built models again in seconds.")
            _exit_now(0)
        say(
            colour(
                "33",
                "Interrupted. Nothing half-written was kept; run `make demo` again to pick up "
                "where it stopped (finished stages are reused).",
            )
        )
        _exit_now(130)
    except (DemoError, UserError) as exc:
        if demo is not None:
            demo.stop_child()
        say(colour("31", f"demo: error: {exc}"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
