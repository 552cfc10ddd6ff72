"""The demo's terminal output: one coloured line per stage, and on a terminal one status line
below them (demo_lanes) that each stage line clears first."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

TTY = sys.stdout.isatty()


def colour(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if TTY else text


_PRINT = threading.Lock()  # two lanes print stage lines; the status line is redrawn between


def say(text: str = "") -> None:
    with _PRINT:
        sys.stdout.write(("\r\033[K" if TTY else "") + text + "\n")
        sys.stdout.flush()


def status(text: str) -> None:
    """The progress line: redrawn in place on a terminal, a plain line in a log."""
    with _PRINT:
        if TTY:
            sys.stdout.write("\r\033[K" + text)
        else:
            sys.stdout.write(text + "\n")
        sys.stdout.flush()


def fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def rel(path: Path) -> str:
    """``path`` as the user typing in this directory would name it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
