"""Model rows and their padding into the graph's inputs (the runner is ``xmixup.core.runner``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Outputs with a target-length axis: a row's slice is trimmed to its own (unpadded) length.
SEQUENCE_OUTPUTS = frozenset({"logits", "start_logits", "end_logits"})


@dataclass(frozen=True)
class Row:
    """One model row: token ids of the target and (graphs with a source stream) the source."""

    target_ids: np.ndarray  # int64 [Lt]
    source_ids: np.ndarray | None  # int64 [Ls]

    @property
    def cost(self) -> int:
        """Tokens this row contributes when padded alone (the batcher's sort key)."""
        return len(self.target_ids) + (len(self.source_ids) if self.source_ids is not None else 0)


def pad_rows(rows: Sequence[Row], pad_id: int) -> tuple[dict[str, np.ndarray], int, int]:
    """Right-pad rows into the four graph inputs; returns feeds, real tokens, padded tokens."""
    n = len(rows)
    lt = max(len(r.target_ids) for r in rows)
    t_ids = np.full((n, lt), pad_id, dtype=np.int64)
    t_mask = np.zeros((n, lt), dtype=np.int64)
    real = 0
    for i, r in enumerate(rows):
        t_ids[i, : len(r.target_ids)] = r.target_ids
        t_mask[i, : len(r.target_ids)] = 1
        real += len(r.target_ids)
    feeds = {"target_input_ids": t_ids, "target_attention_mask": t_mask}
    padded = n * lt
    if rows[0].source_ids is not None:
        ls = max(len(r.source_ids) for r in rows if r.source_ids is not None)
        s_ids = np.full((n, ls), pad_id, dtype=np.int64)
        s_mask = np.zeros((n, ls), dtype=np.int64)
        for i, r in enumerate(rows):
            assert r.source_ids is not None
            s_ids[i, : len(r.source_ids)] = r.source_ids
            s_mask[i, : len(r.source_ids)] = 1
            real += len(r.source_ids)
        feeds["source_input_ids"] = s_ids
        feeds["source_attention_mask"] = s_mask
        padded += n * ls
    return feeds, real, padded
