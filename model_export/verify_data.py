"""`--verify-data`: real JSONL items as parity cases, featurised exactly as training does."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_export.parity import Feeds
from xmixup.core.special_tokens import pad_id_of

if TYPE_CHECKING:
    from training.modeling import XMixupModel

logger = logging.getLogger(__name__)


def real_cases(
    verify_data: Path,
    model: XMixupModel,
    checkpoint: Path,
    inputs: Sequence[str],
    *,
    limit: int = 256,
    batch_size: int = 8,
) -> list[tuple[str, Feeds]]:
    """Real JSONL items featurised exactly as training/evaluation do (training.features),
    padded per batch like the evaluator, at most `limit` items (export time stays bounded)."""
    from transformers import AutoTokenizer

    from training.collate import Collator
    from training.data.schema import read_jsonl
    from training.features import Featurizer

    config = model.config
    labels = list(config.labels) if config.task in ("classify", "tag") else None
    records, _ = read_jsonl(verify_data, config.task, labels=labels)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    featurizer = Featurizer(
        task=config.task,
        tokenizer=tokenizer,
        labels=list(config.labels),
        max_length=int(config.max_length or 128),
        doc_stride=config.doc_stride,
        max_query_length=config.max_query_length,
        use_bt=False,
        word_token=config.word_token,
    )
    feats = featurizer(records[:limit])
    collate = Collator(config.task, pad_id_of(tokenizer))
    cases: list[tuple[str, Feeds]] = []
    for start in range(0, len(feats), batch_size):
        batch = collate(feats[start : start + batch_size])
        feeds = {name: batch[name].numpy().astype(np.int64) for name in inputs}
        cases.append((f"{verify_data.name}[{start}:{start + batch_size}]", feeds))
    logger.info(
        "--verify-data: %d features from %s in %d batches", len(feats), verify_data, len(cases)
    )
    return cases
