"""The fixed lower layers' output per training item, kept so that a repeat visit skips them.

With `--freeze-layers N` the embedding block and the lowest N layers run without autograd and
in eval mode (training/freeze.py): their output is a pure function of an item's token ids. A
run of more than one epoch recomputes it for every visit; the demo's QA model sees each of its
500 items about three times (180 steps × 8), and those layers are a third of a step's work.

Exact, not approximate: a row is stored at the width of the batch that computed it, padded
positions included. In a post-LN BERT layer a position's output depends only on its own input
and on the real (unmasked) keys, so a pad position's value is the same in any batch as wide
or wider; a later batch reads the row's first L positions and recomputes the row when it is
wider than the stored one. Training with the cache equals training without it up to float
rounding (tests/training/test_frozen_cache.py compares losses and gradients).

No library does this: HF `datasets` caches tokenised features, not a module's activations, and
the Trainer re-runs the whole model every step. The memory is bounded (``budget_bytes``):
once full, new rows are computed every time, as without the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Compute = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FrozenFeatureCache:
    """Rows of the frozen layers' output, keyed by an item's real token ids."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self.used_bytes = 0
        self.rows: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def fetch(self, ids: torch.Tensor, mask: torch.Tensor, compute: Compute) -> torch.Tensor:
        """``compute(ids, mask)`` [B, L, H] for this batch, from stored rows where possible.

        ``mask`` must be right-padded (as the collator pads); any other layout is computed
        directly.
        """
        width = ids.shape[1]
        lengths = mask.sum(dim=1)
        positions = torch.arange(width, device=mask.device)
        if not bool((mask.bool() == (positions[None, :] < lengths[:, None])).all()):
            return compute(ids, mask)
        ids_cpu, lengths_cpu = ids.cpu(), lengths.cpu().tolist()
        keys = [ids_cpu[r, : lengths_cpu[r]].numpy().tobytes() for r in range(ids.shape[0])]
        rows: list[torch.Tensor | None] = []
        for key in keys:
            row = self.rows.get(key)
            rows.append(row if row is not None and row.shape[0] >= width else None)
        missing = [r for r, row in enumerate(rows) if row is None]
        self.hits += len(rows) - len(missing)
        self.misses += len(missing)
        if len(missing) == len(rows):
            out = compute(ids, mask)
            for r in missing:
                self._store(keys[r], out[r])
            return out
        if missing:
            fresh = compute(ids[missing], mask[missing])
            for j, r in enumerate(missing):
                rows[r] = fresh[j]
                self._store(keys[r], fresh[j])
        return torch.stack([row[:width] for row in rows if row is not None])

    def _store(self, key: bytes, row: torch.Tensor) -> None:
        old = self.rows.get(key)
        size = row.numel() * row.element_size()
        freed = old.numel() * old.element_size() if old is not None else 0
        if self.used_bytes - freed + size > self.budget_bytes:
            return
        self.rows[key] = row.detach().clone()
        self.used_bytes += size - freed

    def stats(self) -> dict[str, float]:
        """Hit rate and memory, for the run log."""
        seen = self.hits + self.misses
        return {
            "rows": len(self.rows),
            "mb": round(self.used_bytes / 2**20, 1),
            "hit_rate": round(self.hits / seen, 4) if seen else 0.0,
        }
