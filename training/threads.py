"""``ThreadsFromFile``: a running training's torch thread count, changed from outside."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class ThreadsFromFile(TrainerCallback):
    """Torch's thread count from a file, re-read (when it changed) before every step.

    A training cannot be told "more cores are free now" through its arguments; a signal could,
    but one that arrives before the handler is installed kills the process. A file has no such
    window: the scheduler writes it whenever it likes, the step loop picks it up."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen: int | None = None

    def on_step_begin(self, args, state, control, **kw):
        self.poll()

    def on_train_end(self, args, state, control, **kw):
        self.poll()  # what runs after the loop (the trust head's fit) gets freed cores too

    def poll(self) -> None:
        """Apply the file's count if it changed since the last look."""
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime == self._seen:
                return
            wanted = int(self.path.read_text().strip())
        except (OSError, ValueError):  # not written yet, or caught mid-write: next step
            return
        self._seen = mtime
        if wanted >= 1 and wanted != torch.get_num_threads():
            logger.info("threads: %d -> %d (%s)", torch.get_num_threads(), wanted, self.path)
            torch.set_num_threads(wanted)
