"""The demo's terminal output: one coloured line per stage, and the tee that copies an
in-process command's output into its log."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

_TTY = sys.stdout.isatty()


def colour(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _TTY else text


def say(text: str = "") -> None:
    print(text, flush=True)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Tee(io.TextIOBase):
    """A text stream that copies everything to a log and the terminal, minus the per-step
    metric dicts the HF trainer prints (they stay in the log); progress bars pass through."""

    def __init__(self, terminal: Any, log: Any) -> None:
        self.terminal, self.log, self._dropped = terminal, log, False

    def write(self, text: str) -> int:
        self.log.write(text)
        drop = text.lstrip().startswith("{'") or (self._dropped and text == "\n")
        self._dropped = drop
        if not drop:
            self.terminal.write(text)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def isatty(self) -> bool:
        return bool(self.terminal.isatty())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.terminal, "encoding", "utf-8"))


def rel(path: Path) -> str:
    """``path`` as the user typing in this directory would name it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
