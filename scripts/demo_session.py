"""One run of the demo: its settings, its output directory (stamps, logs, scratch space), the
numbered stage lines, the `xmixup` commands it runs as children (two lanes at a time, see
demo_lanes) and the server child it may start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_console import colour, fmt_s, say
from demo_files import atomic_write
from demo_plan import ROOT, DemoError, TaskPlan


@dataclass
class Demo:
    out: Path
    steps: int | None  # DEMO_STEPS: the same number of steps for every task
    serve: bool
    backbone_arg: str | None
    host: str
    port: int
    threads: int | None
    freeze: bool = True  # DEMO_FREEZE: train only the layers from the mixup layer up
    n_stages: int = 0
    # Stage numbers are fixed by the plan, not by the order stages start: two lanes run at once.
    numbers: dict[str, int] = field(default_factory=dict)
    child: subprocess.Popen[bytes] | None = None  # the server
    stopping: bool = False  # an interrupt or a failed lane: start nothing more
    _commands: set[subprocess.Popen[bytes]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def steps_for(self, plan: TaskPlan) -> int:
        return self.steps if self.steps is not None else plan.steps

    # -- paths ------------------------------------------------------------------------------
    @property
    def tmp(self) -> Path:
        return self.out / ".tmp"

    @property
    def stamps(self) -> Path:
        return self.out / ".stamps"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def stamp_ok(self, name: str, key: str, *outputs: Path) -> dict[str, Any] | None:
        path = self.stamps / f"{name}.json"
        if not path.is_file() or not all(o.exists() for o in outputs):
            return None
        try:
            stamp: dict[str, Any] = json.loads(path.read_text())
        except ValueError:
            return None
        return stamp if stamp.get("key") == key else None

    def write_stamp(self, name: str, key: str, **info: Any) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        atomic_write(self.stamps / f"{name}.json", json.dumps({"key": key, **info}, indent=2))

    # -- stage lines ------------------------------------------------------------------------
    def begin(self, what: str, key: str) -> Stage:
        stage = Stage(self.numbers[key], what, time.monotonic())
        say(colour("1", f"{stage.tag(self.n_stages)} {what}…"))
        return stage

    def done(self, stage: Stage, note: str = "") -> float:
        took = time.monotonic() - stage.started
        tail = f" — {note}" if note else ""
        line = f"{stage.tag(self.n_stages)} {stage.what}… done in {fmt_s(took)}"
        say(colour("32", line) + tail)
        return took

    def reused(self, stage: Stage, note: str = "") -> None:
        tail = f" — {note}" if note else ""
        line = f"{stage.tag(self.n_stages)} {stage.what}… reused (inputs unchanged)"
        say(colour("36", line) + tail)

    # -- xmixup commands ----------------------------------------------------------------------
    def xmixup(self, args: list[str], log_name: str) -> None:
        """Run `xmixup ARGS` as a child process, its output (progress bars included) into
        <out>/logs/NAME.log; the terminal shows stage lines and demo_lanes' status line."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{log_name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        cmd = [sys.executable, "-m", "xmixup", "--log-level", "WARNING", *args]
        with log_path.open("wb") as log:
            log.write(("$ xmixup " + " ".join(args) + "\n").encode())
            log.flush()
            with self._lock:
                if self.stopping:
                    raise KeyboardInterrupt
                proc = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
                self._commands.add(proc)
            try:
                code = proc.wait()
            finally:
                with self._lock:
                    self._commands.discard(proc)
        if code == 130 or self.stopping:  # the CLI turns Ctrl-C into exit status 130
            raise KeyboardInterrupt
        if code != 0:
            raise DemoError(
                f"`xmixup {args[0]}` failed (exit {code}); the end of {log_path}:\n"
                + log_tail(log_path)
            )

    def stop_commands(self) -> None:
        """Interrupt every running `xmixup` child (it cleans up as on Ctrl-C), then wait."""
        with self._lock:
            self.stopping = True
            running = list(self._commands)
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def fresh_tmp(self, name: str) -> Path:
        path = self.tmp / name
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        # The terminal's Ctrl-C reached the server too; give it a moment, then SIGTERM (which
        # it also answers with a graceful drain).
        try:
            child.wait(timeout=3)
        except subprocess.TimeoutExpired:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def log_tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` lines of a child's log as a terminal would show them: each progress
    bar's last redraw only (tqdm redraws after a carriage return), without the trainer's
    per-step metric dicts."""
    with path.open(encoding="utf-8", errors="replace", newline="") as f:  # keep the \r
        text = f.read()
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    kept = [line for line in shown if line and not line.lstrip().startswith("{'")]
    return "\n".join("  " + line for line in kept[-lines:])


@dataclass(frozen=True)
class Stage:
    number: int
    what: str
    started: float

    def tag(self, n_stages: int) -> str:
        return f"[{self.number}/{n_stages}]"
