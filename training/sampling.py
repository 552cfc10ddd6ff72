"""Scheduled sampling of the source stream (paper §3.3, docs/METHOD.md "Scheduled sampling").

At training step t the real source (the original English) is used with probability
``p_real(t) = k / (k + exp(t / k))`` (inverse-sigmoid decay); otherwise a "translate-test-like"
source stands in: the item's machine back-translation (``source_bt*``) when it has one, else
the seeded noisy source (``--source-noise P``), the documented surrogate for data without
back-translations. With neither, the real source is always used and the run log says so.

The coin is flipped once per optimisation step (per batch) as the paper describes, not once
per epoch as the reference code effectively does. The draw is a pure function of
``(seed, step)``: a resumed run and every DDP rank see the same coin for the same step.

A third variant is not in the paper: "no source" (``--no-source-rate Q``). Each item of a
batch, independently with probability Q, gets its own target as the source, which is exactly
what the service feeds when a request carries no translation. Without it the model never sees
that input in training, and the no-source fallback scored below translate-train on
classification (docs/RESULTS.md); with it, the fallback is a trained path. Its draw is a pure
function of ``(seed, step)`` too.

A fourth keeps the translation for the source stream: "self-mix" (``--self-mix-rate Q``).
Each item, independently with probability Q, has its target stream mix with its own states
(``training/mixup.py``: the service's no-translation computation) while the source stream
still reads the real English and learns from its labels, so the consistency losses distil the
English view into exactly the path a no-translation request takes. ``--self-mix-from STEP``
holds it back until that optimisation step, so the mixed stream first learns from
translations alone and the no-translation path is taught on top of it; ``--self-mix-until
STEP`` stops it there, so the run ends on translations alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from training.options import TrainOptions

# Paper Table 10 / reference scripts: k = 1000 for classification and tagging, 2000 for QA.
DEFAULT_K: dict[str, int] = {"classify": 1000, "tag": 1000, "qa": 2000}

SourceKind = Literal["real", "bt", "noise"]


def p_real(step: int, k: float) -> float:
    """Probability of feeding the real source at ``step`` (inverse-sigmoid decay)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    x = step / k
    # exp overflows a float past ~709; the probability is 0 to double precision long before.
    if x > 700:
        return 0.0
    return k / (k + math.exp(x))


@dataclass(frozen=True)
class SamplingPlan:
    """What the trainer may substitute for the real source, decided once per run.

    ``fallback`` is the stand-in used when the coin says "not real": ``bt`` (items without a
    back-translation fall back to the noisy source if enabled, else to the real source),
    ``noise`` (no back-translations in the data, noisy source enabled) or ``real`` (nothing to
    substitute: scheduled sampling is off and every step uses the real source).
    """

    k: float
    seed: int
    fallback: SourceKind
    no_source_rate: float = 0.0
    self_mix_rate: float = 0.0
    self_mix_copies: bool = False
    self_mix_from: int = 0
    self_mix_until: int = 0  # 0: to the end of the run

    def use_real(self, step: int) -> bool:
        """The per-step coin: True -> real source for the whole batch at this step."""
        if self.fallback == "real":
            return True
        # One generator per (seed, step): independent of call order, DDP rank and resumes.
        u = np.random.default_rng([self.seed, step, 0x5EED]).random()
        return bool(u <= p_real(step, self.k))

    def no_source_items(self, step: int, n: int) -> np.ndarray:
        """[n] bool: the items of the batch at ``step`` that get their target as the source."""
        if self.no_source_rate <= 0:
            return np.zeros(n, dtype=bool)
        u = np.random.default_rng([self.seed, step, 0x0505]).random(n)
        return u < self.no_source_rate

    def self_mix_items(self, step: int, n: int) -> np.ndarray:
        """[n] bool: the items of the batch at ``step`` whose target stream mixes with itself."""
        after = 0 < self.self_mix_until <= step
        if self.self_mix_rate <= 0 or step < self.self_mix_from or after:
            return np.zeros(n, dtype=bool)
        u = np.random.default_rng([self.seed, step, 0x5E1F]).random(n)
        return u < self.self_mix_rate

    def p_real_at(self, step: int) -> float:
        """p_real for this plan (1 when there is nothing to substitute)."""
        return 1.0 if self.fallback == "real" else p_real(step, self.k)

    def describe(self) -> str:
        no_source = (
            f"; each item gets its target as the source with probability {self.no_source_rate:g}"
            if self.no_source_rate > 0
            else ""
        )
        self_mix = (
            f"; each item's target stream mixes with itself with probability "
            f"{self.self_mix_rate:g}"
            + (" (in an added copy)" if self.self_mix_copies else "")
            + (f" from step {self.self_mix_from}" if self.self_mix_from > 0 else "")
            + (f" until step {self.self_mix_until}" if self.self_mix_until > 0 else "")
            if self.self_mix_rate > 0
            else ""
        )
        return self._describe_fallback() + no_source + self_mix

    def _describe_fallback(self) -> str:
        if self.fallback == "real":
            return (
                "scheduled sampling off: no source_bt in the data and --source-noise 0, "
                "the real source is used at every step"
            )
        what = {
            "bt": "the item's back-translation (source_bt*), or the noisy source / real source "
            "for items without one",
            "noise": "the seeded noisy source (--source-noise surrogate; the data has no source_bt)",
        }[self.fallback]
        return (
            f"scheduled sampling: p_real(step) = k/(k+exp(step/k)), k={self.k:g}; otherwise {what}"
        )


def make_plan(
    task: str,
    *,
    has_bt: bool,
    noise_p: float,
    seed: int,
    k: float | None = None,
    no_source_rate: float = 0.0,
    self_mix_rate: float = 0.0,
    self_mix_copies: bool = False,
    self_mix_from: int = 0,
    self_mix_until: int = 0,
) -> SamplingPlan:
    """The run's sampling plan from what the data offers and the ``--source-noise`` level."""
    k = float(k if k is not None else DEFAULT_K[task])
    if has_bt:
        fallback: SourceKind = "bt"
    elif noise_p > 0:
        fallback = "noise"
    else:
        fallback = "real"
    return SamplingPlan(
        k=k,
        seed=seed,
        fallback=fallback,
        no_source_rate=no_source_rate,
        self_mix_rate=self_mix_rate,
        self_mix_copies=self_mix_copies,
        self_mix_from=self_mix_from,
        self_mix_until=self_mix_until,
    )


def plan_for(opts: TrainOptions, *, has_bt: bool) -> SamplingPlan:
    """A training run's plan; methods other than xmixup have no source to substitute."""
    plan = make_plan(
        opts.task,
        has_bt=has_bt,
        noise_p=opts.source_noise,
        seed=opts.seed,
        k=opts.sampling_k,
        no_source_rate=opts.no_source_rate,
        self_mix_rate=opts.self_mix_rate,
        self_mix_copies=opts.self_mix_copies,
        self_mix_from=opts.self_mix_from,
        self_mix_until=opts.self_mix_until,
    )
    if opts.method != "xmixup":
        return SamplingPlan(k=plan.k, seed=opts.seed, fallback="real")
    return plan
