"""Features -> padded torch batches for the paired-input model (training and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.features import IGNORE_INDEX

_SEQ_LABEL_KEYS = ("target_labels", "source_labels")  # per token for tagging
_SCALAR_KEYS = (
    "target_labels",
    "source_labels",
    "target_start_positions",
    "target_end_positions",
    "source_start_positions",
    "source_end_positions",
)


@dataclass
class Collator:
    """Dynamic padding to the longest sequence of the batch, per stream.

    Produces ``{target,source,alt_source}_{input_ids,attention_mask}``, ``alt_is_real`` (items
    without a stand-in repeat their real source), ``source_is_original``,
    ``source_has_labels`` and the task's labels (token labels padded with -100, soft labels
    with zero rows). Metadata (offsets, word indices, example index) stays out of the batch.
    """

    task: str
    pad_id: int = 1

    def _pad(self, seqs: list[list[int]], value: int) -> Any:
        import torch

        width = max(len(s) for s in seqs)
        out = torch.full((len(seqs), width), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        return out

    def __call__(self, feats: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = {}
        alt = [f.get("alt_source_input_ids") for f in feats]
        streams = {
            "target": [f["target_input_ids"] for f in feats],
            "source": [f["source_input_ids"] for f in feats],
            "alt_source": [
                a if a is not None else f["source_input_ids"]
                for a, f in zip(alt, feats, strict=True)
            ],
        }
        for name, seqs in streams.items():
            batch[f"{name}_input_ids"] = self._pad(seqs, self.pad_id)
            batch[f"{name}_attention_mask"] = self._pad([[1] * len(s) for s in seqs], 0)
        original = [bool(f.get("source_is_original", True)) for f in feats]
        batch["source_is_original"] = torch.tensor(original)
        # A repeated real source is still the original; a stand-in is not.
        batch["alt_is_real"] = torch.tensor(
            [a is None and o for a, o in zip(alt, original, strict=True)]
        )
        batch["source_has_labels"] = torch.tensor(
            [bool(f.get("source_has_labels", True)) for f in feats]
        )
        if self.task == "tag":
            for key in _SEQ_LABEL_KEYS:
                batch[key] = self._pad([f[key] for f in feats], IGNORE_INDEX)
            if "target_soft_labels" in feats[0]:
                width = batch["target_labels"].shape[1]
                c = feats[0]["target_soft_labels"].shape[1]
                soft = torch.zeros((len(feats), width, c), dtype=torch.float32)
                for i, f in enumerate(feats):
                    arr = torch.as_tensor(f["target_soft_labels"])
                    soft[i, : arr.shape[0]] = arr
                batch["target_soft_labels"] = soft
        else:
            for key in _SCALAR_KEYS:
                if key in feats[0]:
                    batch[key] = torch.tensor([int(f[key]) for f in feats], dtype=torch.long)
        return batch
