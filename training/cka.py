"""Linear CKA between source and target representations per layer (paper eq. 1 / Table 7).

For N parallel items, X and Y are the [N, H] matrices of mean-pooled (real tokens) states of
the target and of the source at one layer. With column-centred X, Y:

    CKA(X, Y) = ||Yᵀ X||_F² / (||Xᵀ X||_F · ||Yᵀ Y||_F)

(Kornblith et al. 2019). 1 = the two languages' representations agree up to rotation and
isotropic scaling; the paper reports X-Mixup raising it over translate-train.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data.schema import collect_labels
from xmixup.core.special_tokens import pad_id_of
from xmixup.errors import UserError

log = logging.getLogger(__name__)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two [N, D] representation matrices (rows = the same N items)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need [N, D] matrices with equal N, got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("CKA needs at least 2 items")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x, "fro") ** 2
    norm = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(cross / norm) if norm > 0 else float("nan")


def _load_model(path: Path, task: str | None, records: Sequence[dict[str, Any]]) -> tuple[Any, str]:
    """An xmixup checkpoint, or a plain backbone wrapped as an unmixed model ("before")."""
    from training.config import XMixupConfig
    from training.modeling import XMixupModel

    data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if "xmixup" in data:
        return XMixupModel.from_pretrained(path), "checkpoint"
    if task is None:
        raise UserError(f"{path} is a plain encoder", "pass --task to say what --data holds")
    labels = collect_labels(records) or ["a", "b"]
    config = XMixupConfig(task=task, labels=labels, method="translate-train")
    model = XMixupModel.from_backbone(path, config)
    model.eval()
    return model, "backbone"


def _pooled_states(model: Any, batch: dict[str, Any], stream: str, mixed: bool) -> list[np.ndarray]:
    """Mean-pooled states per layer (embeddings + every layer) of one stream -> L+1 x [B, H]."""
    import torch

    with torch.no_grad():
        if mixed:
            out = model(
                batch["target_input_ids"],
                batch["target_attention_mask"],
                batch["source_input_ids"],
                batch["source_attention_mask"],
                output_hidden_states=True,
            )
            states = out.target_hidden_states if stream == "target" else out.source_hidden_states
        else:
            # Each stream alone through the plain encoder (no mixing).
            out = model(
                batch[f"{stream}_input_ids"],
                batch[f"{stream}_attention_mask"],
                output_hidden_states=True,
                mixup=False,
            )
            states = out.target_hidden_states or out.source_hidden_states
    mask = batch[f"{stream}_attention_mask"].unsqueeze(-1).float()
    return [((h * mask).sum(1) / mask.sum(1).clamp(min=1.0)).numpy() for h in states]


def cka_report(
    model_path: str | Path,
    data_path: str | Path,
    *,
    task: str | None = None,
    max_items: int = 1000,
    batch_size: int = 32,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Per-layer CKA (layer 0 = embeddings) for the model on the data's parallel items."""
    from transformers import AutoTokenizer

    from training.collate import Collator
    from training.data.schema import read_jsonl
    from training.features import Featurizer, record_dict

    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} has no config.json", "pass a checkpoint or backbone directory")
    if task is None:
        try:
            task = json.loads((path / "config.json").read_text())["xmixup"]["task"]
        except (KeyError, json.JSONDecodeError):
            task = None
    if task is None:
        raise UserError(f"{path} is a plain encoder", "pass --task to say what --data holds")
    recs, _ = read_jsonl(data_path, task, skip_bad=skip_bad)
    all_records = [record_dict(r) for r in recs]
    records = all_records[:max_items]
    # Labels from the whole file: the first max_items may not show every label.
    model, kind = _load_model(path, task, all_records)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    c = model.config
    feats = Featurizer(
        task,
        tokenizer,
        labels=c.labels or collect_labels(all_records),
        max_length=int(c.max_length),
        doc_stride=c.doc_stride,
        max_query_length=c.max_query_length,
        use_bt=False,
        word_token=c.word_token,
    )(records)
    # QA: one feature per item (its first window), so rows stay parallel items.
    first: dict[int, dict[str, Any]] = {}
    for f in feats:
        first.setdefault(f["example_index"], f)
    feats = list(first.values())
    collate = Collator(task, pad_id_of(tokenizer))
    views = {"plain": False}
    if c.method == "xmixup":
        views["mixed"] = True
    pooled: dict[str, dict[str, list[list[np.ndarray]]]] = {
        v: {"target": [], "source": []} for v in views
    }
    for i in range(0, len(feats), batch_size):
        batch = collate(feats[i : i + batch_size])
        for view, mixed in views.items():
            for stream in ("target", "source"):
                pooled[view][stream].append(_pooled_states(model, batch, stream, mixed))
    result: dict[str, Any] = {
        "model": str(path),
        "kind": kind,
        "method": c.method,
        "items": len(feats),
    }
    result["mixup_layer"] = c.mixup_layer if c.method == "xmixup" else None
    for view in views:
        layers = len(pooled[view]["target"][0])
        per_layer = []
        for layer in range(layers):
            x = np.concatenate([b[layer] for b in pooled[view]["target"]])
            y = np.concatenate([b[layer] for b in pooled[view]["source"]])
            per_layer.append(linear_cka(x, y))
        result[view] = {"per_layer": per_layer, "mean": float(np.mean(per_layer[1:]))}
    return result


def format_cka(result: dict[str, Any]) -> str:
    views = [v for v in ("plain", "mixed") if v in result]
    lines = [
        f"CKA source vs target, {result['items']} items ({result['kind']}, {result['method']})"
    ]
    lines.append(f"{'layer':<8}" + "".join(f"{v:>10}" for v in views))
    n = len(result[views[0]]["per_layer"])
    for layer in range(n):
        name = "emb" if layer == 0 else str(layer)
        lines.append(
            f"{name:<8}" + "".join(f"{result[v]['per_layer'][layer]:>10.4f}" for v in views)
        )
    lines.append(f"{'mean':<8}" + "".join(f"{result[v]['mean']:>10.4f}" for v in views))
    return "\n".join(lines)
