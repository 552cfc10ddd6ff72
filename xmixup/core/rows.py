"""Model rows: padding into the graph's inputs, the batch policy and per-row outputs.

One definition shared by the service's dynamic batcher (``service/batcher.py``) and the
Python API (``xmixup.predictor``): rows are sorted by length and cut into batches bounded by
rows and padded tokens, right-padded with the bundle's pad id, and each row's outputs are
sliced back to its own length. Every row is masked, so a row's result does not depend on its
batch-mates (padding invariance), whoever batched it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def cut_batches(rows: Sequence[Row], max_rows: int, max_tokens: int) -> list[list[int]]:
    """Indices of ``rows`` grouped into batches: sorted by length (similar lengths share a
    batch, so padding stays low), each batch at most ``max_rows`` rows and ``max_tokens``
    padded tokens (a single longer row still gets a batch of its own)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i].cost)
    batches: list[list[int]] = []
    batch: list[int] = []
    max_t = max_s = 0
    for i in order:
        row = rows[i]
        t = len(row.target_ids)
        s = len(row.source_ids) if row.source_ids is not None else 0
        # Padded size if the row joins: every row is padded to the longest of each stream.
        padded = (len(batch) + 1) * (max(max_t, t) + max(max_s, s))
        if batch and (len(batch) >= max_rows or padded > max_tokens):
            batches.append(batch)
            batch, max_t, max_s = [], 0, 0
        batch.append(i)
        max_t, max_s = max(max_t, t), max(max_s, s)
    if batch:
        batches.append(batch)
    return batches


def row_outputs(
    outputs: Mapping[str, np.ndarray], index: int, target_length: int
) -> dict[str, np.ndarray]:
    """Row ``index`` of a batch's outputs, sequence outputs cut to its ``target_length``."""
    return {
        name: (value[index, :target_length] if name in SEQUENCE_OUTPUTS else value[index])
        for name, value in outputs.items()
    }
