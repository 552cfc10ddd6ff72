"""The step schedule of a training run and the Hugging Face ``TrainingArguments`` it gives."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainingArguments

from training.options import TrainOptions
from xmixup.errors import UserError


@dataclass
class Schedule:
    """Steps of the run and the final-weights rule ("best" on dev, or "last")."""

    total_steps: int
    eval_steps: int
    save_steps: int
    select: str


def world_size() -> int:
    """Processes in the run (torchrun sets WORLD_SIZE; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_schedule(opts: TrainOptions, n_features: int, has_eval: bool) -> Schedule:
    """Total, evaluation and save steps, and the selection rule (best needs a dev file)."""
    steps_per_epoch = max(1, math.ceil(n_features / (opts.batch_size * world_size())))
    total_steps = opts.max_steps or max(1, math.ceil(steps_per_epoch * opts.epochs))
    select = opts.select or ("best" if has_eval and not opts.average_checkpoints else "last")
    eval_steps = opts.eval_steps or max(1, total_steps // 5)
    save_steps = opts.save_steps or eval_steps
    if select == "best" and save_steps % eval_steps:
        raise UserError(
            f"--select best needs --save-steps ({save_steps}) to be a multiple of --eval-steps ({eval_steps})"
        )
    return Schedule(total_steps, eval_steps, save_steps, select)


def training_arguments(
    opts: TrainOptions, schedule: Schedule, ckpt_root: Path, has_eval: bool
) -> TrainingArguments:
    world = world_size()
    total_steps, best = schedule.total_steps, schedule.select == "best"
    return TrainingArguments(
        output_dir=str(ckpt_root),
        per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.lr,
        weight_decay=opts.weight_decay,
        warmup_steps=round(opts.warmup_ratio * total_steps),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        num_train_epochs=opts.epochs,
        max_steps=total_steps,
        logging_steps=opts.logging_steps or max(1, min(50, total_steps // 20)),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=schedule.eval_steps if has_eval else None,
        save_strategy="steps",
        save_steps=schedule.save_steps,
        save_total_limit=max(2, opts.average_checkpoints or 0) + (1 if best else 0),
        save_only_model=False,
        load_best_model_at_end=best,
        metric_for_best_model="eval_score" if best else None,
        greater_is_better=True,
        seed=opts.seed,
        data_seed=opts.seed,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and world > 1 else None,
        # Baselines never touch the gate (and translate-test the target head path): DDP must
        # be told that some parameters get no gradient.
        ddp_find_unused_parameters=opts.method != "xmixup",
        dataloader_num_workers=0,
        disable_tqdm=opts.disable_tqdm,
        label_names=[],
    )
