"""The ``checkpoint-<step>`` directories a training run saves, and averaging their weights."""

from __future__ import annotations

from pathlib import Path

import torch

from xmixup.errors import UserError


def checkpoint_dirs(root: Path) -> list[Path]:
    """HF ``checkpoint-<step>`` directories under root, oldest first."""
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def average_checkpoints(model: torch.nn.Module, dirs: list[Path]) -> None:
    """Load the element-wise mean of the checkpoints' weights into ``model`` ("Free Lunch")."""
    from safetensors.torch import load_file

    total: dict[str, torch.Tensor] = {}
    for d in dirs:
        state = load_file(str(d / "model.safetensors"))
        for k, v in state.items():
            total[k] = total[k] + v.double() if k in total else v.double()
    own = model.state_dict()
    avg = {k: (v / len(dirs)).to(own[k].dtype) for k, v in total.items()}
    model.load_state_dict(avg, strict=True)


def refuse_unasked_resume(root: Path, resume: bool) -> None:
    """An earlier run's checkpoints under root are continued only with --resume."""
    if checkpoint_dirs(root) and not resume:
        raise UserError(
            f"{root} already holds checkpoints of an earlier run",
            "pass --resume to continue it, or choose a new --out",
        )
