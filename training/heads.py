"""Task heads, shared by the source and the target stream (one set of weights)."""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, L, D] over real positions (mask [B, L], bool or 0/1) -> [B, D]."""
    m = mask.to(hidden.dtype)[:, :, None]
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class ClassificationHead(nn.Module):
    """pooled -> dropout -> dense+tanh -> dropout -> linear (RoBERTa-style head).

    pooling "mean" (default: the e5 backbone is a mean-pooling model) averages real tokens;
    "cls" takes the first token, as the reference code does.
    """

    def __init__(self, hidden: int, num_labels: int, dropout: float, pooling: str = "mean") -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = masked_mean(hidden, mask) if self.pooling == "mean" else hidden[:, 0]
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))  # [B, C]


class TaggingHead(nn.Module):
    """dropout -> linear per token -> [B, L, C]."""

    def __init__(self, hidden: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


class QAHead(nn.Module):
    """linear(2) per token -> [B, L, 2] (start = [..., 0], end = [..., 1]); no dropout, as the reference."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.qa_outputs = nn.Linear(hidden, 2)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.qa_outputs(hidden)


def build_head(task: str, hidden: int, num_labels: int, dropout: float, pooling: str) -> nn.Module:
    if task == "classify":
        return ClassificationHead(hidden, num_labels, dropout, pooling)
    if task == "tag":
        return TaggingHead(hidden, num_labels, dropout)
    if task == "qa":
        return QAHead(hidden)
    raise ValueError(f"unknown task {task!r}")


def combine_streams(
    t_logits: torch.Tensor, s_logits: torch.Tensor | None, combine: str
) -> torch.Tensor:
    """Class probabilities: the target's alone, or both streams' (mean of softmaxes, or the
    softmax of the mean logits)."""
    if s_logits is None:
        return torch.softmax(t_logits, dim=-1)
    if combine == "logits":
        return torch.softmax((s_logits + t_logits) / 2.0, dim=-1)
    return (torch.softmax(s_logits, dim=-1) + torch.softmax(t_logits, dim=-1)) / 2.0
