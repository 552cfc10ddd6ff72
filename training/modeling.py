"""XMixupModel: one shared HF encoder, two streams (target, source), a task head and the λ gate.

The encoder layers are run here from their HF submodules (see training/mixup.py) rather than
through the HF forward, so the mix can be inserted inside a layer, the code does not depend on
a transformers version's attention plumbing, and the ONNX export is plain tensor ops.
Embeddings use the HF module itself (BERT position ids from 0; XLM-R/RoBERTa position ids
from padding — the HF module gets each right); token_type_ids are all zeros.

Checkpoints are read and written by training/checkpoint.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from training.backbone import load_backbone_model, supported_encoder_layers
from training.checkpoint import CONFIG_FILE, load_weights, read_checkpoint_config, write_checkpoint
from training.config import XMixupConfig
from training.freeze import FrozenLowerLayers
from training.heads import build_head, combine_streams
from training.mixup import (
    EntropyGate,
    encoder_layer,
    ffn_sublayer,
    mix_layer,
    self_attention_sublayer,
    source_or_target,
)
from training.trust_head import TrustHead
from xmixup.core.vocab import SOURCE_PROBS_OUTPUT, TRUST_OUTPUT
from xmixup.errors import UserError

__all__ = ["XMixupModel", "XMixupOutput"]


@dataclass
class XMixupOutput:
    """Training view of one forward pass.

    target_logits: classify [B, C]; tag [B, Lt, C]; qa [B, Lt, 2] (start = [..., 0], end =
    [..., 1]). None for translate-test (source stream only).
    source_logits: same shapes on the source stream; None when the source was not run.
    mixup_ratio: λ per example [B]; zeros when nothing was mixed.
    *_hidden_states: embeddings output + every layer's output (L+1 tensors), when asked.
    """

    target_logits: torch.Tensor | None
    source_logits: torch.Tensor | None
    mixup_ratio: torch.Tensor
    target_last_hidden: torch.Tensor | None
    source_last_hidden: torch.Tensor | None
    target_hidden_states: tuple[torch.Tensor, ...] | None = None
    source_hidden_states: tuple[torch.Tensor, ...] | None = None
    unmixed_logits: torch.Tensor | None = None  # the target with the mixing off (training)


class _Mixed(NamedTuple):
    """Both streams through the mix (see `_mixed_streams`)."""

    target: torch.Tensor
    source: torch.Tensor | None  # the source's last state; None when it stopped at the mix
    ratio: torch.Tensor  # λ [B]
    target_states: tuple[torch.Tensor, ...] | None
    source_states: tuple[torch.Tensor, ...] | None
    source_mix: torch.Tensor  # the source after the mixup layer's attention sublayer
    unmixed: torch.Tensor | None = None  # the target's last state with the mixing off


class XMixupModel(FrozenLowerLayers, nn.Module):
    """X-Mixup over a BERT / RoBERTa / XLM-R encoder (Yang et al., ICLR 2022).

    Build with `from_backbone(path, config)` (HF encoder directory) or `from_pretrained(dir)`
    (an xmixup checkpoint). `self.mixup` (default True) switches the mix off for method
    "xmixup" ("w/o mixup": the plain encoder per stream); baselines never mix.
    """

    def __init__(
        self, encoder: nn.Module, config: XMixupConfig, tokenizer_dir: str | Path | None = None
    ) -> None:
        super().__init__()
        enc_cfg: Any = encoder.config
        layers = supported_encoder_layers(encoder)
        # Any: an HF PreTrainedModel whose submodules are reached by name (see training/mixup.py).
        self.encoder: Any = encoder
        self.config = config.resolve(len(layers))
        if not self.config.backbone:
            self.config.backbone = str(getattr(enc_cfg, "_name_or_path", "") or "")
        self.num_heads = int(enc_cfg.num_attention_heads)
        hidden = int(enc_cfg.hidden_size)
        dropout = getattr(enc_cfg, "classifier_dropout", None)
        if dropout is None:
            dropout = enc_cfg.hidden_dropout_prob
        self.head = build_head(
            self.config.task, hidden, self.config.num_labels, float(dropout), self.config.pooling
        )
        self.gate = EntropyGate(self.config.lambda0, self.config.gate)
        # Fitted post hoc (training/trust.py); only X-Mixup graphs run the source to the mix.
        self.trust = TrustHead(hidden) if self.config.trust_head else None
        self.mixup = True
        # Training-time only (never saved): the lowest layers run without autograd
        # (training/freeze.py).
        self.frozen_layers = 0
        self.tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_backbone(cls, path: str | Path, config: XMixupConfig) -> XMixupModel:
        """A fresh model (new head and gate) on the HF encoder stored at `path`."""
        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise UserError(
                f"backbone directory {path} has no {CONFIG_FILE}",
                "pass a Hugging Face encoder directory (config.json + weights + tokenizer)",
            )
        encoder = load_backbone_model(path)
        if not config.backbone:
            config.backbone = str(path)
        return cls(encoder, config, tokenizer_dir=path)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> XMixupModel:
        """Load a checkpoint written by `save_pretrained`, strictly (eval mode).

        Missing files or missing / unexpected / mis-shaped tensors raise CheckpointError naming
        the file and the key (training/checkpoint.py).
        """
        path = Path(path)
        config, encoder = read_checkpoint_config(path)
        model = cls(encoder, config, tokenizer_dir=path)
        load_weights(model, path)
        model.eval()
        return model

    def save_pretrained(self, path: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
        """Write config.json, model.safetensors and the tokenizer files to `path`."""
        tok_src = Path(tokenizer_dir) if tokenizer_dir is not None else self.tokenizer_dir
        return write_checkpoint(
            Path(path), self.encoder.config.to_dict(), self.config, self.state_dict(), tok_src
        )

    # ------------------------------------------------------------------ encoder pieces
    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.encoder.layer  # type: ignore[no-any-return]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def mixup_index(self) -> int:
        """0-based index of the mixup layer."""
        assert self.config.mixup_layer is not None
        return self.config.mixup_layer - 1

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Token types are all zero, as the reference code does (docs/ARCHITECTURE.md).
        with self._frozen(0):
            return self.encoder.embeddings(  # type: ignore[no-any-return]
                input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids)
            )

    def _run(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        end: int,
        states: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        for i in range(start, end):
            with self._frozen(i):
                hidden = encoder_layer(self.layers[i], hidden, mask, self.num_heads)
            if states is not None:
                states.append(hidden)
        return hidden

    def _plain_stream(
        self, input_ids: torch.Tensor, mask: torch.Tensor, keep_states: bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The unmodified encoder on one stream."""
        states: list[torch.Tensor] | None = [] if keep_states else None
        hidden = self._lower(input_ids, mask, states)
        hidden = self._run(hidden, mask, self.frozen_layers, self.num_layers, states)
        return hidden, (tuple(states) if states is not None else None)

    def source_mix(
        self, s_ids: torch.Tensor, s_mask: torch.Tensor, states: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The source stream up to the mixup layer's attention sublayer (what the target
        cross-attends to, and what the trust head reads)."""
        li = self.mixup_index
        s = self._lower(s_ids, s_mask, states)
        s = self._run(s, s_mask, self.frozen_layers, li, states)
        return self_attention_sublayer(self.layers[li], s, s_mask, self.num_heads)

    def _mixed_streams(
        self,
        t_ids: torch.Tensor,
        t_mask: torch.Tensor,
        s_ids: torch.Tensor,
        s_mask: torch.Tensor,
        source_full: bool,
        keep_states: bool,
        self_mix: torch.Tensor | None = None,
        unmixed: bool = False,
    ) -> _Mixed:
        """Both streams with the mix at the mixup layer.

        With source_full=False the source stops after the mixup layer's attention sublayer
        (all the target needs from it): tag/QA inference skips the source's upper layers.
        ``unmixed``: also run the target from the mixup layer up without the mix (the layers
        below are shared), the service's no-translation answer for `unmixed` bundles.
        """
        li = self.mixup_index
        t_states: list[torch.Tensor] | None = [] if keep_states else None
        s_states: list[torch.Tensor] | None = [] if keep_states and source_full else None
        t = self._lower(t_ids, t_mask, t_states)
        t = self._run(t, t_mask, self.frozen_layers, li, t_states)
        plain = self._run(t, t_mask, li, self.num_layers, None) if unmixed else None
        s_attn = self.source_mix(s_ids, s_mask, s_states)
        layer = self.layers[li]
        t, lam = mix_layer(layer, self.gate, t, t_mask, s_attn, s_mask, self.num_heads, self_mix)
        if t_states is not None:
            t_states.append(t)
        t = self._run(t, t_mask, li + 1, self.num_layers, t_states)
        s_last = None
        if source_full:
            s = ffn_sublayer(layer, s_attn)
            if s_states is not None:
                s_states.append(s)
            s_last = self._run(s, s_mask, li + 1, self.num_layers, s_states)
        return _Mixed(
            t,
            s_last,
            lam,
            tuple(t_states) if t_states is not None else None,
            tuple(s_states) if s_states is not None else None,
            s_attn,
            plain,
        )

    def _mixing(self, mixup: bool | None) -> bool:
        return self.config.method == "xmixup" and (self.mixup if mixup is None else mixup)

    @staticmethod
    def _zeros_ratio(mask: torch.Tensor) -> torch.Tensor:
        # Shape taken from the input so an ONNX trace keeps the batch dimension dynamic.
        return torch.zeros_like(mask[:, 0], dtype=torch.float32)

    # ------------------------------------------------------------------ forward / predict
    def forward(
        self,
        target_input_ids: torch.Tensor,
        target_attention_mask: torch.Tensor,
        source_input_ids: torch.Tensor | None = None,
        source_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        mixup: bool | None = None,
        self_mix: torch.Tensor | None = None,
        unmixed: bool = False,
    ) -> XMixupOutput:
        """Training view. The source defaults to the target when not given.

        method "xmixup": both streams, the target mixed at the mixup layer (mixup off: both
        plain; the source only when given). "translate-train"/"zero-shot": target stream only.
        "translate-test": source stream only (the target inputs stand in when no source).
        ``self_mix`` [B] bool: rows whose target mixes with itself (``mix_layer``).
        ``unmixed``: X-Mixup with mixing also returns the target stream with the mixing off.
        """
        t_mask = target_attention_mask.bool()
        source_given = source_input_ids is not None
        source_input_ids, s_mask = source_or_target(
            target_input_ids, target_attention_mask, source_input_ids, source_attention_mask
        )
        zeros = self._zeros_ratio(t_mask)
        method = self.config.method

        if method == "translate-test":
            s_last, s_states = self._plain_stream(source_input_ids, s_mask, output_hidden_states)
            return XMixupOutput(
                target_logits=None,
                source_logits=self.head(s_last, s_mask),
                mixup_ratio=zeros,
                target_last_hidden=None,
                source_last_hidden=s_last,
                source_hidden_states=s_states,
            )
        if self._mixing(mixup):
            streams = (target_input_ids, t_mask, source_input_ids, s_mask)
            mixed = self._mixed_streams(*streams, True, output_hidden_states, self_mix, unmixed)
            assert mixed.source is not None
            return XMixupOutput(
                target_logits=self.head(mixed.target, t_mask),
                source_logits=self.head(mixed.source, s_mask),
                mixup_ratio=mixed.ratio,
                target_last_hidden=mixed.target,
                source_last_hidden=mixed.source,
                target_hidden_states=mixed.target_states,
                source_hidden_states=mixed.source_states,
                unmixed_logits=None if mixed.unmixed is None else self.head(mixed.unmixed, t_mask),
            )
        t_last, t_states = self._plain_stream(target_input_ids, t_mask, output_hidden_states)
        out = XMixupOutput(
            target_logits=self.head(t_last, t_mask),
            source_logits=None,
            mixup_ratio=zeros,
            target_last_hidden=t_last,
            source_last_hidden=None,
            target_hidden_states=t_states,
        )
        if method == "xmixup" and source_given:
            s_last, s_states = self._plain_stream(source_input_ids, s_mask, output_hidden_states)
            out.source_logits = self.head(s_last, s_mask)
            out.source_last_hidden = s_last
            out.source_hidden_states = s_states
        return out

    def predict(
        self,
        target_input_ids: torch.Tensor,
        target_attention_mask: torch.Tensor,
        source_input_ids: torch.Tensor | None = None,
        source_attention_mask: torch.Tensor | None = None,
        combine: str = "probs",
        mixup: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Serving view: the ONNX outputs by name.

        classify: {"probabilities" [B, C], "mixup_ratio" [B]}; X-Mixup averages the softmax of
        the source and of the mixed target stream (paper); combine="logits" averages logits
        before the softmax (reference code). translate-test uses the source only.
        tag: {"logits" [B, Lt, C], "mixup_ratio"}; qa: {"start_logits", "end_logits" [B, Lt],
        "mixup_ratio"} — target stream only; the source runs only up to the mixup layer.
        Baselines ignore the source (translate-test: the target) and return λ = 0.
        X-Mixup classification adds "source_probabilities" [B, C], the source stream alone
        (mixing on); X-Mixup models with a fitted trust head add "translation_trust" [B].
        """
        if combine not in ("probs", "logits"):
            raise UserError(f"unknown combine {combine!r}", "use 'probs' (paper) or 'logits'")
        task, method = self.config.task, self.config.method
        t_mask = target_attention_mask.bool()
        zeros = self._zeros_ratio(t_mask)
        source_input_ids, s_mask = source_or_target(
            target_input_ids, target_attention_mask, source_input_ids, source_attention_mask
        )

        if method == "translate-test":  # classify only (config validation)
            src_last, _ = self._plain_stream(source_input_ids, s_mask, False)
            probs = torch.softmax(self.head(src_last, s_mask), dim=-1)
            return {"probabilities": probs, "mixup_ratio": self._zeros_ratio(s_mask)}

        s_last: torch.Tensor | None
        trust: torch.Tensor | None = None
        if self._mixing(mixup):
            mixed = self._mixed_streams(
                target_input_ids, t_mask, source_input_ids, s_mask, task == "classify", False
            )
            t_last, s_last, lam = mixed.target, mixed.source, mixed.ratio
            if self.trust is not None:
                trust = self.trust(mixed.source_mix, s_mask)
        else:
            t_last, _ = self._plain_stream(target_input_ids, t_mask, False)
            s_last, lam = None, zeros
        t_logits = self.head(t_last, t_mask)

        out: dict[str, torch.Tensor]
        if task == "classify":
            s_logits = self.head(s_last, s_mask) if s_last is not None else None
            out = {"probabilities": combine_streams(t_logits, s_logits, combine)}
            if s_logits is not None:
                out[SOURCE_PROBS_OUTPUT] = torch.softmax(s_logits.float(), dim=-1)
        elif task == "tag":
            out = {"logits": t_logits}
        else:
            out = {"start_logits": t_logits[..., 0], "end_logits": t_logits[..., 1]}
        out["mixup_ratio"] = lam
        if trust is not None:
            out[TRUST_OUTPUT] = trust
        return out

    def gate_parameters(self) -> list[nn.Parameter]:
        """λ's (w, b): the trainer gives them their own learning rate."""
        return list(self.gate.parameters())

    def extra_repr(self) -> str:
        c = self.config
        return f"task={c.task}, method={c.method}, mixup_layer={c.mixup_layer}, gate={c.gate}"
