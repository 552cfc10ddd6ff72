"""``xmixup train``: train an X-Mixup model or one of its baselines (HF Trainer; DDP-ready).

The flags come from the fields of ``training.options.TrainOptions``. Only argparse-level
modules at import time: torch and transformers are imported in the handler.
"""

from __future__ import annotations

import argparse

from training.commands import DefaultsHelpFormatter
from training.options import add_arguments, from_namespace


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train X-Mixup or a baseline on JSONL data",
        description=(
            "Train one model and write a checkpoint directory (config.json, model.safetensors, "
            "tokenizer, training_args.json, metrics.json). Runs under torchrun for DDP "
            "(torchrun --nproc_per_node 2 -m xmixup train ...). Defaults follow the paper per "
            "task (alpha 0.4/0.8/0.2, sampling k 1000/1000/2000, mixup layer a third of the depth "
            "for tag), with two measured departures (docs/RESULTS.md): the mix at two thirds of "
            "the depth for classify and at half for qa; scaled to a small backbone (lr 5e-5, batch 16; "
            "QA and tagging: the layers below the mix fixed, lr 5e-4)."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from training.trainer import train

    train(from_namespace(args))
    return 0
