"""One run of the demo: its settings, its output directory (stamps, logs, scratch space), the
numbered stage lines, the in-process `xmixup` commands and the server child it may start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_console import Tee, colour, fmt_s, say
from demo_files import atomic_write
from demo_plan import DemoError, TaskPlan


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
    stage_no: int = 0
    n_stages: int = 0
    child: subprocess.Popen[bytes] | None = None

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
    def begin(self, what: str) -> float:
        self.stage_no += 1
        say(colour("1", f"[{self.stage_no}/{self.n_stages}] {what}…"))
        return time.monotonic()

    def done(self, what: str, started: float, note: str = "") -> float:
        took = time.monotonic() - started
        tail = f" — {note}" if note else ""
        say(colour("32", f"[{self.stage_no}/{self.n_stages}] {what}… done in {fmt_s(took)}") + tail)
        return took

    def reused(self, what: str, note: str = "") -> None:
        tail = f" — {note}" if note else ""
        say(
            colour("36", f"[{self.stage_no}/{self.n_stages}] {what}… reused (inputs unchanged)")
            + tail
        )

    # -- xmixup commands ----------------------------------------------------------------------
    def xmixup(self, args: list[str], log_name: str) -> None:
        """Run `xmixup ARGS` in this process (torch is imported once for the whole demo), its
        output (progress bars) shown on the terminal and copied into <out>/logs/NAME.log."""
        from xmixup.cli import main as xmixup_main

        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{log_name}.log"
        with log_path.open("w", encoding="utf-8") as log:
            log.write("$ xmixup " + " ".join(args) + "\n")
            real_out, real_err = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = Tee(real_out, log), Tee(real_err, log)
            try:
                code = xmixup_main(["--log-level", "WARNING", *args])
            finally:
                sys.stdout, sys.stderr = real_out, real_err
        if code == 130:  # the CLI turns Ctrl-C into exit status 130
            raise KeyboardInterrupt
        if code != 0:
            raise DemoError(f"`xmixup {args[0]}` failed (exit {code}); see above and {log_path}")

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
