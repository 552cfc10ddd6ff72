"""What the translation-trust signal is worth, from `xmixup evaluate` outputs (torch-free).

* `auroc(pos, neg)`: how well trust tells a faithful source (pos: evaluated without
  ``--source-noise``) from a degraded one (neg: the same items with ``--source-noise 0.3``);
  0.5 is chance, 1.0 a perfect ranking.
* `trusted_split(trust, score)`: the task metric on the most-trusted share of the items vs
  the rest (``trust_per_item`` and ``score_per_item`` of one evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a random positive scores above a random negative), ties counting one half.

    The Mann-Whitney rank statistic: ranks over both samples (ties get their average rank),
    U = sum of the positives' ranks - n_pos (n_pos + 1) / 2, AUROC = U / (n_pos n_neg).
    """
    p = np.asarray(pos, dtype=np.float64)
    n = np.asarray(neg, dtype=np.float64)
    if p.size == 0 or n.size == 0:
        raise ValueError("auroc needs at least one positive and one negative")
    values = np.concatenate([p, n])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1, dtype=np.float64)
    # Average the ranks within each group of tied values.
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if uniq.size < values.size:
        sums = np.zeros(uniq.size)
        np.add.at(sums, inverse, ranks)
        ranks = (sums / counts)[inverse]
    u = ranks[: p.size].sum() - p.size * (p.size + 1) / 2.0
    return float(u / (p.size * n.size))


def trusted_split(
    trust: Sequence[float], score: Sequence[float], share: float = 0.8
) -> dict[str, float | int]:
    """Mean score of the ``share`` most-trusted items vs the others.

    The items are ranked by trust, highest first (ties keep item order); the trusted part has
    round(share · n) items. Returns {trusted, rest, n_trusted, n_rest}; a part without items
    has mean NaN.
    """
    t = np.asarray(trust, dtype=np.float64)
    s = np.asarray(score, dtype=np.float64)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError(f"trust and score must be equal-length lists, got {t.shape} {s.shape}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    order = np.argsort(-t, kind="mergesort")
    k = round(share * t.size)
    top, rest = s[order[:k]], s[order[k:]]
    return {
        "trusted": float(top.mean()) if top.size else float("nan"),
        "rest": float(rest.mean()) if rest.size else float("nan"),
        "n_trusted": int(top.size),
        "n_rest": int(rest.size),
    }
