"""What `make demo` builds: one X-Mixup model per task from the shipped samples, and where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"


class DemoError(Exception):
    """A stage failed; the message says what to do."""


@dataclass(frozen=True)
class TaskPlan:
    task: str
    data: str  # folder under examples/data
    title: str
    max_length: int
    batch_size: int
    steps: int  # default budget; DEMO_STEPS overrides it for every task
    lr: str


# Short sequences, frozen word embeddings (most of the encoder's weights, and of each step's
# optimiser cost) and a higher learning rate keep a few dozen steps per task useful on 2 cores.
# Classification and tagging need about 100 steps here (60 left SIB-200 at 66 %, 100 reach
# 82 %); extractive QA (a span head from scratch) needs about twice that and a higher learning
# rate to answer usefully, so the 15-minute budget goes mostly to it. Its training contexts are
# gold passages (the sentences around the answer, examples/data/xquad/SOURCE.md), so 128 tokens
# hold question and passage.
PLANS = (
    TaskPlan("classify", "sib200", "topic classification (SIB-200, 7 topics)", 64, 16, 100, "1e-4"),
    TaskPlan("tag", "pud", "part-of-speech tagging (UD PUD, 17 UPOS tags)", 64, 16, 80, "1e-4"),
    TaskPlan("qa", "xquad", "extractive QA (XQuAD)", 128, 8, 180, "2e-4"),
)
COMMON_TRAIN = ("--method", "xmixup", "--freeze-embeddings", "--seed", "0")


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside (the default demo/), so that
    summary.json names no machine's directories; absolute for a DEMO_OUT elsewhere.
    ``ROOT / repo_path(p)`` is ``p`` either way."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
