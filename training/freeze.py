"""Which encoder weights a training run keeps fixed: the word embeddings, the lower layers.

Both are training-budget levers (`xmixup train --freeze-embeddings`, `--freeze-layers N`): the
word-embedding matrix is most of a multilingual encoder (96M of 118M for e5-small), and below
the mixup layer both X-Mixup streams are the plain encoder, so fixing the lowest layers skips
their backward pass and activation memory while the mix and everything above it still train.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

from training.frozen_cache import FrozenFeatureCache
from xmixup.errors import UserError

if TYPE_CHECKING:
    from training.modeling import XMixupModel


class FrozenLowerLayers:
    """What fixed lower layers change in XMixupModel's forward pass (mixed in before
    nn.Module): they run under ``torch.no_grad()`` and in eval mode."""

    frozen_layers: int  # set by ``freeze``; training-time only, never saved
    encoder: Any  # the HF encoder: .embeddings, .encoder.layer
    frozen_cache: FrozenFeatureCache | None = None  # set by ``freeze`` (training/frozen_cache.py)
    training: bool
    _embed: Any
    _run: Any

    def train(self, mode: bool = True):  # type: ignore[no-untyped-def]
        """Frozen layers (and the embedding block under them) stay in eval mode: a fixed
        feature extractor, no dropout. Dropout was ~15 % of a demo QA step on CPU and, with no
        weights to regularise below the mix, only noised the features: QA 2.33 vs 2.59 s/step,
        demo scores unchanged within the seed spread (scripts/demo_plan.py)."""
        super().train(mode)  # type: ignore[misc]
        if mode and self.frozen_layers:
            self.encoder.embeddings.eval()
            for layer in self.encoder.encoder.layer[: self.frozen_layers]:
                layer.eval()
        return self

    def _frozen(self, layer_index: int) -> contextlib.AbstractContextManager[None]:
        return torch.no_grad() if layer_index < self.frozen_layers else contextlib.nullcontext()

    def _lower(
        self, ids: torch.Tensor, mask: torch.Tensor, states: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Embeddings and the frozen layers for one stream (the state after layer
        ``frozen_layers``). Training steps read repeat items from the cache; evaluation,
        export tracing and hidden-state requests always compute."""

        def compute(i: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            hidden = self._embed(i)
            if states is not None:
                states.append(hidden)
            return self._run(hidden, m, 0, self.frozen_layers, states)  # type: ignore[no-any-return]

        if self.frozen_cache is None or states is not None or not self.training:
            return compute(ids, mask)
        return self.frozen_cache.fetch(ids, mask, compute)


def max_frozen_layers(model: XMixupModel) -> int:
    """The most layers `--freeze-layers` may fix: those below the mixup layer (X-Mixup: its gate
    and cross-attention read the layer's weights), else all but the top layer."""
    if model.config.method == "xmixup":
        return model.mixup_index
    return model.num_layers - 1


def freeze(model: XMixupModel, embeddings: bool, layers: int, cache_mb: float = 0.0) -> None:
    """Fix the word embeddings and/or the embedding block plus the lowest `layers` layers.

    Frozen layers run under `torch.no_grad()` and in eval mode (FrozenLowerLayers): no autograd
    graph, no dropout; with ``cache_mb`` > 0 their output per item is kept for repeat visits
    (training/frozen_cache.py). Raises UserError naming the flag when `layers` is out of range.
    """
    limit = max_frozen_layers(model)
    if not 0 <= layers <= limit:
        raise UserError(
            f"--freeze-layers {layers} is out of range for this model",
            f"use 0..{limit}: the layers below the mixup layer {model.config.mixup_layer}"
            if model.config.method == "xmixup"
            else f"use 0..{limit}",
        )
    if embeddings:
        # Freezing the shared vocabulary also keeps it aligned across languages.
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    model.frozen_layers = layers
    model.frozen_cache = FrozenFeatureCache(int(cache_mb * 2**20)) if layers and cache_mb else None
    if layers:
        model.encoder.embeddings.requires_grad_(False)
        for layer in model.layers[:layers]:
            layer.requires_grad_(False)
