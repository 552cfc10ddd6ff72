"""The xmixup checkpoint directory: reading and writing it, strictly.

Layout (docs/ARCHITECTURE.md): config.json = encoder HF config + "xmixup" section,
model.safetensors with keys encoder.* / head.* / gate.* (+ trust.* once the trust head is
fitted), tokenizer files. Never pickles.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import CheckpointError, XMixupConfig
from xmixup.errors import UserError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
# Copied along when present; tokenizer.json is the one that is required.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "added_tokens.json",
)


def read_checkpoint_config(path: Path) -> tuple[XMixupConfig, Any]:
    """(X-Mixup config, freshly initialised encoder) of a checkpoint directory.

    The encoder is rebuilt from config.json, never downloaded; a missing file or an unusable
    config raises CheckpointError naming it.
    """
    from transformers import AutoConfig, AutoModel

    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
        if not (path / name).is_file():
            raise CheckpointError(
                f"checkpoint {path} is missing {name}",
                "point to a directory written by training (xmixup train)",
            )
    try:
        data = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "xmixup" not in data:
        raise CheckpointError(
            f"{path / CONFIG_FILE} has no 'xmixup' section",
            "this looks like a plain encoder, not an xmixup checkpoint",
        )
    enc_dict = dict(data)
    try:
        config = XMixupConfig.from_dict(enc_dict.pop("xmixup"))
    except UserError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: {exc.message}", exc.hint) from exc
    model_type = enc_dict.pop("model_type", None)
    if not model_type:
        raise CheckpointError(f"{path / CONFIG_FILE} has no encoder 'model_type'")
    for key in ("transformers_version", "architectures", "_name_or_path"):
        enc_dict.pop(key, None)
    try:
        enc_cfg = AutoConfig.for_model(model_type, **enc_dict)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: unusable encoder config: {exc}") from exc
    try:
        encoder = AutoModel.from_config(enc_cfg, add_pooling_layer=False)
    except TypeError:
        # Encoders without a pooler do not take the argument.
        encoder = AutoModel.from_config(enc_cfg)
    return config, encoder


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the checkpoint's model.safetensors into ``model``; every tensor must match."""
    from safetensors.torch import load_file

    file = path / WEIGHTS_FILE
    try:
        state = load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{file} cannot be read: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    hint = "the weights do not match config.json; re-export the checkpoint from training"
    if missing:
        raise CheckpointError(f"{file}: missing tensor(s) {', '.join(missing[:5])}", hint)
    if unexpected:
        raise CheckpointError(f"{file}: unexpected tensor(s) {', '.join(unexpected[:5])}", hint)
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{file}: tensor {key} has shape {tuple(state[key].shape)}, "
                f"config.json implies {tuple(tensor.shape)}",
                hint,
            )
    model.load_state_dict(state, strict=True)


def write_checkpoint(
    path: Path,
    encoder_config: dict[str, Any],
    config: XMixupConfig,
    state: dict[str, torch.Tensor],
    tokenizer_dir: Path | None,
) -> Path:
    """Write config.json, model.safetensors and the tokenizer files to ``path``."""
    from safetensors.torch import save_file

    if tokenizer_dir is None or not (tokenizer_dir / TOKENIZER_FILE).is_file():
        raise UserError(
            f"no {TOKENIZER_FILE} to save with the checkpoint (looked in {tokenizer_dir})",
            "pass tokenizer_dir= pointing to the backbone's tokenizer",
        )
    path.mkdir(parents=True, exist_ok=True)
    data = dict(encoder_config)
    data["xmixup"] = config.to_dict()
    # Both files are written aside, then renamed into place one right after the other:
    # rewriting a checkpoint in place (`xmixup trust`) never leaves a half-written file.
    staged = {name: path / f".{name}.tmp" for name in (WEIGHTS_FILE, CONFIG_FILE)}
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(staged[WEIGHTS_FILE]), metadata={"format": "pt"})
    staged[CONFIG_FILE].write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    for name, tmp in staged.items():
        os.replace(tmp, path / name)
    if tokenizer_dir.resolve() != path.resolve():
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, path / name)
    return path
