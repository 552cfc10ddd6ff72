"""Fitting the translation-trust head (training/trust_head.py) on a trained X-Mixup model.

Positives are training items with their own (clean) source; negatives are the same items with
the source degraded by the project's noise model (training/data/noise.py) at each of
``noise_levels`` (default P = 0.3, what the evaluation's robustness sweep uses). Features are
the source stream's pooled state at the mixup layer, computed with the model's own stream code
and the training featuriser, without gradients; a negative whose noisy source tokenises
exactly like its clean one is dropped (nothing to detect). The logistic regression is
L2-regularised, fitted with LBFGS in float64 on standardised features (deterministic), and
the standardisation is folded into the head's weights. The task outputs never change: the
head only reads the source stream.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import torch

from training.collate import Collator
from training.data.noise import SourceNoise
from training.features import Featurizer, record_dict
from training.trust_head import TrustHead, pooled_stats
from training.trust_metrics import auroc
from xmixup.core.special_tokens import pad_id_of
from xmixup.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_ITEMS = 2000
# Measured on the raw multilingual-e5-small, SIB-200 example data (examples/data/sib200: fit on
# the 261 distinct train sources, AUROC of clean vs P = 0.3 on the 134 distinct eval sources):
# state at layer 8 (classification's mixup layer) 0.951 / 0.964 / 0.968 / 0.971 with L2 1e-3 /
# 0.1 / 0.3 / 1.0; adding P = 0.15 negatives lowered it (0.947 / 0.961 at 1e-3 / 0.1); layer 4
# (tagging's) 0.941 at 0.3. Larger fits need less L2, hence 0.3 rather than 1.0.
DEFAULT_NOISE_LEVELS = (0.3,)
# L2 strength on the mean log-loss over standardised features.
DEFAULT_L2 = 0.3


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float = DEFAULT_L2
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [D], bias [1]) of P(y = 1 | x) = sigmoid(x · weight + bias), on raw features.

    Minimises mean BCE + l2/2 · |w|² over standardised features z = (x − μ) / σ, then folds
    the standardisation in: weight = w / σ, bias = b − Σ w μ / σ.
    """
    x64, y64 = x.double(), y.double()
    mu = x64.mean(dim=0)
    sd = x64.std(dim=0, unbiased=False).clamp(min=1e-6)
    z = (x64 - mu) / sd
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=1000,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y64)
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    w_raw = (w / sd).detach()
    b_raw = (b - (w * mu / sd).sum()).detach()
    return w_raw.float(), b_raw.float()


def source_features(
    model: Any, tokenizer: Any, recs: list[dict[str, Any]], noise: SourceNoise | None
) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Pooled source states [N, 2H] (one row per record: QA's first window) and the source
    ids they were computed from."""
    c = model.config
    featurizer = Featurizer(
        task=c.task,
        tokenizer=tokenizer,
        labels=c.labels,
        max_length=int(c.max_length),
        doc_stride=c.doc_stride,
        max_query_length=c.max_query_length,
        noise=noise,
        noise_replaces_source=noise is not None,
        use_bt=False,
        word_token=c.word_token,
    )
    feats, seen = [], set()
    for f in featurizer(recs):
        if f["example_index"] not in seen:  # QA: the first window, as the service reports
            seen.add(f["example_index"])
            feats.append(f)
    collate = Collator(c.task, pad_id_of(tokenizer))
    device = next(model.parameters()).device
    # Batches of similar length pad less (the collator pads to the batch's longest source);
    # the rows go back to the records' order afterwards.
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["source_input_ids"]))
    rows = []
    with torch.no_grad():
        for i in range(0, len(order), 32):
            batch = collate([feats[j] for j in order[i : i + 32]])
            ids = batch["source_input_ids"].to(device)
            mask = batch["source_attention_mask"].to(device).bool()
            rows.append(pooled_stats(model.source_mix(ids, mask).float(), mask).cpu())
    sorted_rows = torch.cat(rows)
    out = torch.empty_like(sorted_rows)
    out[torch.tensor(order)] = sorted_rows
    return out, [tuple(f["source_input_ids"]) for f in feats]


def fit_trust_head(
    model: Any,
    tokenizer: Any,
    records: Sequence[Any],
    task: str,
    *,
    n_items: int = DEFAULT_ITEMS,
    seed: int = 0,
    noise_levels: Sequence[float] = DEFAULT_NOISE_LEVELS,
    l2: float = DEFAULT_L2,
) -> dict[str, Any]:
    """Fit ``model``'s trust head on up to ``n_items`` of ``records`` (drawn with ``seed``) and
    set ``model.config.trust_head``. Returns a summary (rows, training AUROC)."""
    if model.config.method != "xmixup" or task != model.config.task:
        raise UserError(
            f"a trust head needs an X-Mixup model of task {task!r} "
            f"(got method {model.config.method!r}, task {model.config.task!r})",
            "fit it on a checkpoint trained with --method xmixup",
        )
    recs = [record_dict(r) for r in records]
    if len(recs) < 2:
        raise UserError(f"fitting the trust head needs at least 2 records, got {len(recs)}")
    picked = sorted(random.Random(seed).sample(range(len(recs)), min(n_items, len(recs))))
    sample = [recs[i] for i in picked]
    was_training = model.training
    model.eval()
    try:
        pos, clean_ids = source_features(model, tokenizer, sample, None)
        negs = []
        for p in noise_levels:
            noise = SourceNoise.for_records(recs, task, p, seed=seed)
            x, ids = source_features(model, tokenizer, sample, noise)
            changed = torch.tensor([a != b for a, b in zip(ids, clean_ids, strict=True)])
            negs.append(x[changed])
    finally:
        model.train(was_training)
    neg = torch.cat(negs)
    if len(neg) == 0:
        raise UserError("the noise model changed no source: nothing to tell apart")
    x = torch.cat([pos, neg])
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    weight, bias = fit_logistic(x, y, l2)
    head = TrustHead(pos.shape[1] // 2)
    head.weight.copy_(weight)
    head.bias.copy_(bias)
    model.trust = head.to(next(model.parameters()).device)
    model.config.trust_head = True
    with torch.no_grad():
        scores = torch.sigmoid(x @ weight + bias)
    summary = {
        "items": len(sample),
        "positives": len(pos),
        "negatives": len(neg),
        "noise_levels": list(noise_levels),
        "seed": seed,
        "train_auroc": auroc(scores[: len(pos)].tolist(), scores[len(pos) :].tolist()),
    }
    log.info("trust head fitted: %s", summary)
    return summary
