"""The translation-trust head: P(the source is a faithful translation) from the source stream.

Features are the mean and the standard deviation, over the source's real tokens, of the source
stream's state at the mixup layer (after its attention sublayer: the state the target
cross-attends to, computed in every X-Mixup graph). A logistic regression on them is fitted
post hoc (training/trust.py) with the standardisation folded into ``weight`` and ``bias``, so
the graph computes sigmoid(features · weight + bias) and nothing else. The head is detached:
it reads the source stream and never feeds the task outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from training.heads import masked_mean

# Keeps the std's square root finite (and its ONNX graph NaN-free) for one-token sources.
_VAR_EPS = 1e-6


def pooled_stats(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[mean, std] over the real tokens: hidden [B, L, H], mask [B, L] (bool) -> [B, 2H]."""
    mean = masked_mean(hidden, mask)
    var = masked_mean((hidden - mean[:, None, :]) ** 2, mask)
    return torch.cat([mean, torch.sqrt(var + _VAR_EPS)], dim=-1)


class TrustHead(nn.Module):
    """sigmoid(pooled_stats · weight + bias); weight [2H] and bias [1] are buffers (saved in
    the checkpoint, never trained by the task optimiser)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(2 * hidden_size))
        self.register_buffer("bias", torch.zeros(1))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Trust per item [B] in (0, 1)."""
        feats = pooled_stats(hidden.float(), mask)
        # An elementwise product and a sum, not a MatMul: the int8 quantiser leaves it in fp32.
        return torch.sigmoid((feats * self.weight).sum(dim=-1) + self.bias)
