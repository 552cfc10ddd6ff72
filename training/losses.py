"""X-Mixup training losses (docs/METHOD.md "Losses").

    loss = mean_i [ a_i · L_task(source_i) + b_i · L_task(target-mixed_i) ]
           + MSE(mean-pooled last-layer source states, target states)
           + KL(p_src ‖ p_tgt)                       (classification only)
           [+ w_u · L_task(target-unmixed) + w_d · KL(p_tgt ‖ p_unmixed)]   (--unmixed-*)

with (a_i, b_i) = (α, 1−α) when item i's source is the original and (0, 1) when it is a
stand-in (back-translation or noisy surrogate): its source-side labels do not describe it, so,
as in the reference code, only the target loss counts. Task losses are computed per item
(classification: CE; tagging: mean CE over the item's labelled words; QA: mean of the start
and end CE) so that the weights can differ between items of one batch; items then count
equally (a tagging item's words share its weight, unlike a flat token mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100
# A soft-label row counts as a labelled word when its mass is at least this (rows of
# the other sub-tokens are all zero); the reference uses the same 0.5 threshold.
SOFT_LABEL_MIN_MASS = 0.5


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` [B,L,H] over the positions where ``mask`` [B,L] is 1 -> [B,H]."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    # clamp: an all-padding row (never produced by the featuriser) would divide by zero.
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def consistency_mse(
    source_hidden: Tensor, source_mask: Tensor, target_hidden: Tensor, target_mask: Tensor
) -> Tensor:
    """MSE between mean-pooled last-layer states of both streams (padding excluded).

    Mean over hidden units and items. The reference pools the first token (classification) or
    a shifted mask divided by the padded length; the paper's footnote asks for mean pooling.
    """
    src = masked_mean(source_hidden, source_mask)
    tgt = masked_mean(target_hidden, target_mask)
    return F.mse_loss(src, tgt)


def kl_source_target(source_logits: Tensor, target_logits: Tensor) -> Tensor:
    """KL(p_src ‖ p_tgt) = Σ_c p_src (log p_src − log p_tgt), mean over items.

    Gradients flow into both streams, as in the reference (Keras KLDivergence on both).
    """
    log_p = F.log_softmax(source_logits.float(), dim=-1)
    log_q = F.log_softmax(target_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()


def classify_item_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-item cross-entropy [B]."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def tag_item_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-item mean CE over labelled positions (label != -100) -> [B]; 0 for none."""
    b, length, c = logits.shape
    ce = F.cross_entropy(
        logits.float().reshape(b * length, c),
        labels.reshape(b * length),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).reshape(b, length)
    counted = (labels != IGNORE_INDEX).to(ce.dtype)
    return (ce * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1.0)


def tag_item_soft_ce(logits: Tensor, soft_labels: Tensor) -> Tensor:
    """Per-item mean soft-label CE −Σ_c q_c log softmax(z)_c over labelled words -> [B].

    ``soft_labels`` [B,L,C] holds a word's label distribution on the token it is read on, zeros
    elsewhere (pseudo-labels from ``target_tag_probs`` or a teacher checkpoint).
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    q = soft_labels.to(logp.dtype)
    ce = -(q * logp).sum(dim=-1)  # [B,L]
    counted = (q.sum(dim=-1) >= SOFT_LABEL_MIN_MASS).to(ce.dtype)
    return (ce * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1.0)


def qa_item_ce(
    start_logits: Tensor, end_logits: Tensor, start_positions: Tensor, end_positions: Tensor
) -> Tensor:
    """Per-item (CE(start) + CE(end)) / 2 -> [B]. Unanswerable windows point at CLS (0)."""
    start = F.cross_entropy(start_logits.float(), start_positions, reduction="none")
    end = F.cross_entropy(end_logits.float(), end_positions, reduction="none")
    return (start + end) / 2


def combine_task_losses(
    source_item: Tensor | None, target_item: Tensor, source_is_real: Tensor, alpha: float
) -> Tensor:
    """mean_i [a_i·src_i + b_i·tgt_i], (a,b) = (α, 1−α) for real sources, (0, 1) otherwise."""
    real = source_is_real.to(target_item.dtype)
    if source_item is None:
        return target_item.mean()
    w_src = alpha * real
    w_tgt = 1.0 - alpha * real  # 1−α where real, 1 where the source is a stand-in
    return (w_src * source_item + w_tgt * target_item).mean()


@dataclass
class LossParts:
    """The total loss and its (detached) parts, for logging."""

    total: Tensor
    task_source: float
    task_target: float
    mse: float
    kl: float
    unmixed: float = 0.0


def xmixup_loss(
    task: str,
    output: object,
    batch: dict[str, Tensor],
    source_is_real: Tensor,
    *,
    alpha: float,
    target_label_mode: str = "gold",
    use_mse: bool = True,
    use_kl: bool = True,
    consistency_weight: float = 1.0,
    unmixed_weight: float = 0.0,
    unmixed_distill: float = 0.0,
) -> LossParts:
    """The X-Mixup loss from an ``XMixupOutput`` and the batch actually fed to the model.

    ``batch`` holds the target inputs/labels and the chosen source's inputs/labels under the
    plain ``source_*`` names. ``source_is_real`` [B] bool: which items got their original
    source (source labels valid). ``target_label_mode``: tagging only, ``gold`` (hard target
    tags) or ``pseudo`` (soft per-word distributions in ``target_soft_labels``).
    ``consistency_weight`` scales the consistency terms (hidden-state MSE, classification KL);
    the paper and its code add them with weight 1. When the output carries
    ``unmixed_logits`` (the target stream with the mixing off, ``--unmixed-weight``), their
    target-label loss counts with ``unmixed_weight`` and, for classification, a KL from the
    mixed target stream's predictions with ``unmixed_distill``.
    """
    tl = output.target_logits  # type: ignore[attr-defined]
    sl = output.source_logits  # type: ignore[attr-defined]
    if task == "classify":
        src = classify_item_ce(sl, batch["source_labels"])
    elif task == "tag":
        src = tag_item_ce(sl, batch["source_labels"])
    elif task == "qa":
        src = qa_item_ce(
            sl[0], sl[1], batch["source_start_positions"], batch["source_end_positions"]
        )
    else:
        raise ValueError(f"unknown task {task!r}")
    tgt = target_item_loss(task, tl, batch, target_label_mode)
    total = combine_task_losses(src, tgt, source_is_real, alpha)
    unmixed_part = torch.zeros((), dtype=total.dtype, device=total.device)
    unmixed = getattr(output, "unmixed_logits", None)
    if unmixed is not None:
        unmixed_part = (
            unmixed_weight * target_item_loss(task, unmixed, batch, target_label_mode).mean()
        )
        if unmixed_distill and task == "classify":
            # The mixed stream teaches the fallback; detached so the teacher is not pulled down.
            unmixed_part = unmixed_part + unmixed_distill * kl_source_target(tl.detach(), unmixed)
        total = total + unmixed_part
    mse = kl = torch.zeros((), dtype=total.dtype, device=total.device)
    if use_mse:
        mse = consistency_mse(
            output.source_last_hidden,  # type: ignore[attr-defined]
            batch["source_attention_mask"],
            output.target_last_hidden,  # type: ignore[attr-defined]
            batch["target_attention_mask"],
        )
    if use_kl and task == "classify":
        kl = kl_source_target(sl, tl)
    total = total + consistency_weight * (mse + kl)
    real = source_is_real.bool()
    return LossParts(
        total=total,
        task_source=float(src.detach()[real].mean()) if bool(real.any()) else float("nan"),
        task_target=float(tgt.detach().mean()),
        mse=float(mse.detach()),
        kl=float(kl.detach()),
        unmixed=float(unmixed_part.detach()),
    )


def target_item_loss(
    task: str, logits: Tensor | tuple[Tensor, Tensor], batch: dict[str, Tensor], mode: str
) -> Tensor:
    """The per-item target-side task loss [B]; tagging reads soft labels when ``mode`` is
    ``pseudo``."""
    if task == "classify":
        return classify_item_ce(logits, batch["target_labels"])  # type: ignore[arg-type]
    if task == "tag":
        if mode == "pseudo":
            return tag_item_soft_ce(logits, batch["target_soft_labels"])  # type: ignore[arg-type]
        return tag_item_ce(logits, batch["target_labels"])  # type: ignore[arg-type]
    if task == "qa":
        s, e = logits
        return qa_item_ce(s, e, batch["target_start_positions"], batch["target_end_positions"])
    raise ValueError(f"unknown task {task!r}")


def target_only_loss(
    task: str, target_logits: Tensor | tuple[Tensor, Tensor], batch: dict[str, Tensor], **kw: str
) -> LossParts:
    """Baselines (translate-train, zero-shot, translate-test): task CE on the target stream."""
    tgt = target_item_loss(task, target_logits, batch, kw.get("target_label_mode", "gold"))
    total = tgt.mean()
    return LossParts(
        total=total, task_source=float("nan"), task_target=float(total.detach()), mse=0.0, kl=0.0
    )
