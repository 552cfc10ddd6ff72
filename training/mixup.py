"""The X-Mixup mix: one encoder layer run from its HF submodules, the cross-attention mix and the λ gate.

Everything here works on the submodules every BERT-family layer has
(`attention.self.{query,key,value,dropout}`, `attention.output.{dense,dropout,LayerNorm}`,
`intermediate`, `output.{dense,dropout,LayerNorm}`), so it does not depend on how a given
transformers version wires its attention, and it exports to ONNX as plain matmuls.

Masks are boolean (True = real token) and are applied with `torch.where(..., finfo.min)`:
finite fills keep softmax, entropies and their gradients finite even for padded rows, in
PyTorch and in onnxruntime alike (-inf would give NaN on fully masked rows).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from xmixup.errors import UserError

# An HF BertLayer-shaped module. Typed as Any: the submodules are reached by name (duck typing
# across BERT / RoBERTa / XLM-R classes and transformers versions).
HFLayer = Any

# Normalized gate init: sigmoid(w·x + b) = 0.8 at x = 1, i.e. λ ≈ 0.8·λ0 where it has room (and
# gradient) to move either way. x ≈ 0.8-1.0 was measured on the multilingual-e5-small backbone
# (SIB dev, de/zh/ar vs English, layers 1/4/8); a random untrained encoder attends uniformly
# (x ≈ 2) and starts lower, λ ≈ 0.35·λ0.
_LOGIT_0_8 = math.log(0.8 / 0.2)
_NORMALIZED_W = -2.0
_NORMALIZED_B = _LOGIT_0_8 - _NORMALIZED_W * 1.0


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, L, H*d] -> [B, H, L, d]."""
    b, length, hidden = x.shape
    return x.view(b, length, num_heads, hidden // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, d] -> [B, L, H*d]."""
    b, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * d)


def attention(
    layer: HFLayer,
    queries: torch.Tensor,
    keys_values: torch.Tensor,
    key_mask: torch.Tensor,
    num_heads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head attention with `layer`'s own Q/K/V weights.

    Returns (context [B, Lq, hidden] before the output projection, raw scores [B, H, Lq, Lk]
    = q·kᵀ/√d before masking). Padded keys are excluded; padded query rows are not masked
    (standard BERT), callers exclude them from pooling and entropies.
    """
    attn = layer.attention.self
    q = _split_heads(attn.query(queries), num_heads)
    k = _split_heads(attn.key(keys_values), num_heads)
    v = _split_heads(attn.value(keys_values), num_heads)
    # Head size from the module (a Python int), not from q.shape: a traced shape would be
    # turned into a constant with a TracerWarning.
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(attn.query.out_features // num_heads)
    # Additive mask bias (HF BERT's pattern: MatMul -> Div -> Add -> Softmax) rather than
    # torch.where: onnxruntime only fuses this shape into its Attention kernel (fp32 and int8).
    # finfo.min is finite, so padded keys get exactly zero weight and no NaN can appear.
    bias = (1.0 - key_mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
    probs = attn.dropout(torch.softmax(scores + bias, dim=-1))
    return _merge_heads(torch.matmul(probs, v)), scores


def self_attention_sublayer(
    layer: HFLayer, hidden: torch.Tensor, mask: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """LN(h + dropout(Wo·SelfAttn(h))): the layer's attention sublayer (post-LN BERT)."""
    context, _ = attention(layer, hidden, hidden, mask, num_heads)
    out = layer.attention.output
    return out.LayerNorm(out.dropout(out.dense(context)) + hidden)


def ffn_sublayer(layer: HFLayer, hidden: torch.Tensor) -> torch.Tensor:
    """LN(h + dropout(W2·act(W1·h))): the layer's feed-forward sublayer."""
    inter = layer.intermediate(hidden)
    out = layer.output
    return out.LayerNorm(out.dropout(out.dense(inter)) + hidden)


def encoder_layer(
    layer: HFLayer, hidden: torch.Tensor, mask: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """A plain encoder layer: attention sublayer then FFN sublayer."""
    return ffn_sublayer(layer, self_attention_sublayer(layer, hidden, mask, num_heads))


def masked_row_entropy(
    scores: torch.Tensor,
    key_mask: torch.Tensor,
    query_mask: torch.Tensor,
    normalize: bool,
) -> torch.Tensor:
    """Mean row entropy of softmax(scores) over real keys, averaged over heads and real query rows.

    scores [B, H, Lq, Lk]; key_mask [B, Lk]; query_mask [B, Lq] (bool). Returns [B].
    With `normalize`, each row entropy is divided by log(n_real_keys), so it lies in [0, 1].

    NaN pitfall: xlogy(p, p) has a 0/0 gradient at masked keys. We take log_softmax over
    finitely filled scores and zero masked terms with torch.where, so masked keys carry exactly
    zero gradient.
    """
    keep = key_mask[:, None, None, :]
    filled = torch.where(keep, scores, torch.finfo(scores.dtype).min)
    log_p = torch.log_softmax(filled, dim=-1)
    plogp = torch.where(keep, log_p.exp() * log_p, torch.zeros_like(log_p))
    row_entropy = -plogp.sum(dim=-1)  # [B, H, Lq]
    if normalize:
        n_keys = key_mask.to(scores.dtype).sum(dim=-1)  # [B]
        # One real key has entropy exactly 0; clamp keeps the division finite for it.
        denom = torch.log(n_keys).clamp(min=math.log(2.0))
        row_entropy = row_entropy / denom[:, None, None]
    per_query = row_entropy.mean(dim=1)  # [B, Lq]: mean over heads
    q = query_mask.to(scores.dtype)
    return (per_query * q).sum(dim=-1) / q.sum(dim=-1).clamp(min=1.0)


class EntropyGate(nn.Module):
    """λ = λ0 · sigmoid(w · x + b), x = H(A) + H(Aᵀ) of the target×source cross-attention.

    H(A): rows = real target positions, softmax over real source keys. H(Aᵀ): the same score
    tensor transposed, rows = real source positions, softmax over real target positions.
    Both are means over heads and real rows, on the mixup layer's projected Q/K scores (as the
    reference code does).

    gate="normalized" (default): entropies divided by log(n_real keys) so x ∈ [0, 2] whatever
    the lengths; w = -2 (flatter attention = worse alignment = trust the source less, the
    paper's motivation) and b = logit(0.8) + 2, so x = 1 (what a pretrained encoder gives)
    starts at λ ≈ 0.8·λ0, sharper alignment raises it toward λ0 and uniform attention (x = 2)
    lowers it to ≈ 0.35·λ0. The sigmoid is not saturated there, so w and b get gradient in
    both directions.
    gate="paper": raw entropy sum (nats), w = 1, b = 0 — the reference code's parametrisation
    (where W, b were never actually trained, so λ ≈ λ0 almost always).
    """

    def __init__(self, lambda0: float = 0.5, mode: str = "normalized") -> None:
        super().__init__()
        self.lambda0 = float(lambda0)
        self.mode = mode
        if mode == "normalized":
            w, b = _NORMALIZED_W, _NORMALIZED_B
        elif mode == "paper":
            w, b = 1.0, 0.0
        else:
            raise ValueError(f"unknown gate mode {mode!r}")
        self.weight = nn.Parameter(torch.tensor([w]))
        self.bias = nn.Parameter(torch.tensor([b]))

    def features(
        self, scores: torch.Tensor, target_mask: torch.Tensor, source_mask: torch.Tensor
    ) -> torch.Tensor:
        """x = H(A) + H(Aᵀ), shape [B]."""
        normalize = self.mode == "normalized"
        h_a = masked_row_entropy(scores, source_mask, target_mask, normalize)
        h_at = masked_row_entropy(scores.transpose(-1, -2), target_mask, source_mask, normalize)
        return h_a + h_at

    def forward(
        self, scores: torch.Tensor, target_mask: torch.Tensor, source_mask: torch.Tensor
    ) -> torch.Tensor:
        """λ per example, shape [B], in (0, λ0]."""
        x = self.features(scores, target_mask, source_mask)
        return self.lambda0 * torch.sigmoid(self.weight * x + self.bias)


def mix_layer(
    layer: HFLayer,
    gate: EntropyGate,
    target: torch.Tensor,
    target_mask: torch.Tensor,
    source_attn: torch.Tensor,
    source_mask: torch.Tensor,
    num_heads: int,
    self_mix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixup layer for the target stream.

    target: the target's input to this layer; source_attn: the SOURCE's post-attention-
    sublayer state at this layer (before its FFN). The target's attention sublayer output h_T
    cross-attends to source_attn with the same layer's Q/K/V/O weights, then
    h~ = LN_attn(λ·dropout(Wo·ctx) + (1−λ)·h_T) goes through the layer's FFN (the reference
    code's structure). Returns (target layer output [B, Lt, hidden], λ [B]).

    ``self_mix`` [B] bool (training only, ``--self-mix-rate``): those rows cross-attend to
    their own h_T instead of the source. That is exactly what the service computes for a
    request without a translation (the target fed as the source has the same states up to
    here), while the source stream still reads the real translation for its own losses.
    """
    h_t = self_attention_sublayer(layer, target, target_mask, num_heads)
    context, scores = attention(layer, h_t, source_attn, source_mask, num_heads)
    lam = gate(scores, target_mask, source_mask)
    if self_mix is not None and bool(self_mix.any()):
        rows = self_mix.nonzero(as_tuple=True)[0]
        h_own, own_mask = h_t[rows], target_mask[rows]
        own_context, own_scores = attention(layer, h_own, h_own, own_mask, num_heads)
        context = context.index_copy(0, rows, own_context)
        lam = lam.index_copy(0, rows, gate(own_scores, own_mask, own_mask))
    out = layer.attention.output
    lam3 = lam[:, None, None].to(h_t.dtype)
    mixed = out.LayerNorm(lam3 * out.dropout(out.dense(context)) + (1.0 - lam3) * h_t)
    return ffn_sublayer(layer, mixed), lam


def source_or_target(
    target_input_ids: torch.Tensor,
    target_attention_mask: torch.Tensor,
    source_input_ids: torch.Tensor | None,
    source_attention_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(source ids, boolean source mask): the target stands in when no source is given."""
    if source_input_ids is None:
        return target_input_ids, target_attention_mask.bool()
    if source_attention_mask is None:
        raise UserError("source_input_ids given without source_attention_mask")
    return source_input_ids, source_attention_mask.bool()
