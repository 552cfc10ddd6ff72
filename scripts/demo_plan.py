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
    group_by_length: bool  # batches of similar lengths (--group-by-length)


# Short sequences, frozen word embeddings (most of the encoder's weights, and of each step's
# optimiser cost) and the layers below the mixup layer fixed (demo_stages.frozen_layers: no
# backward pass through them, a step costs ~0.65x) keep a few dozen steps per task useful on 2
# cores. With fewer weights to move, a higher learning rate pays: SIB-200 demo eval, 100 steps,
# seed 0 — all layers at 1e-4 80.5 %, layers 1-7 frozen at 1e-4 71.5 %, frozen at 3e-4 83.0 %;
# PUD tagging (layers 1-3 frozen): 77.5 at 1e-4, 80.5 at 3e-4 (all layers at 1e-4: 79.0), and
# 79.7 with batch 8 for half the compute (classification lost 10 points with batch 8: kept at 16).
# Extractive QA (a span head from scratch) needs about twice the steps of the others and the
# highest rate: F1 24.9 all layers at 2e-4, frozen at 5e-4 26.8 after 120 steps and 32.3 after
# 180. Its training contexts are gold passages (the sentences around the answer,
# examples/data/xquad/SOURCE.md), so 128 tokens hold question and passage.
# Frozen layers run in eval mode (no dropout; training/freeze.py), ~10 % off a QA step (2.33 vs
# 2.59 s), 7 % classify, 4 % tag, with no change beyond the seed spread (demo eval, last step,
# seeds 1 / 2 PyTorch, seed 0 the int8 bundle; no dropout vs dropout below the mix): classify
# 86.0 / 83.5 / 81.5 vs 83.0 / 79.5 / 82.5, tag 80.2 / 79.6 / 79.2 vs 80.2 / 79.7 / 79.5, QA F1
# 31.2 / 28.6 / 31.4 vs 29.3 / 32.0 / 32.1.
# Batches of similar lengths pad less: classification 0.91 vs 1.37 s/step (eval 84.0 vs 83.0),
# tagging 0.57 vs 0.79 s/step (79.6 vs 79.7), seed 0; QA only 1.49 vs 1.59 (most items are
# 90-128 tokens) and F1 31.7 vs 34.5 (PyTorch eval), so QA keeps random batches.
PLANS = (
    TaskPlan(
        "classify", "sib200", "topic classification (SIB-200, 7 topics)", 64, 16, 100, "3e-4", True
    ),
    TaskPlan(
        "tag", "pud", "part-of-speech tagging (UD PUD, 17 UPOS tags)", 64, 8, 80, "3e-4", True
    ),
    TaskPlan("qa", "xquad", "extractive QA (XQuAD)", 128, 8, 180, "5e-4", False),
)
COMMON_TRAIN = ("--method", "xmixup", "--freeze-embeddings", "--seed", "0")


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside (the default demo/), so that
    summary.json names no machine's directories; absolute for a DEMO_OUT elsewhere.
    ``ROOT / repo_path(p)`` is ``p`` either way."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
