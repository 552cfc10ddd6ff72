"""``xmixup train``: train an X-Mixup model or one of its baselines (HF Trainer; DDP-ready).

Only argparse at module level: torch and transformers are imported in the handler.
"""

from __future__ import annotations

import argparse

from xmixup.core.vocab import METHODS, TASKS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train X-Mixup or a baseline on JSONL data",
        description=(
            "Train one model and write a checkpoint directory (config.json, model.safetensors, "
            "tokenizer, training_args.json, metrics.json). Runs under torchrun for DDP "
            "(torchrun --nproc_per_node 2 -m xmixup train ...). Defaults follow the paper per "
            "task (alpha 0.4/0.8/0.2, sampling k 1000/1000/2000, mixup layer a third of the depth "
            "for tag, two thirds for qa and — departing from the paper's layer 1, see "
            "docs/RESULTS.md — for classify), scaled to a small backbone (lr 5e-5, batch 16)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--method", default="xmixup", choices=METHODS)
    p.add_argument(
        "--backbone",
        metavar="DIR",
        default=None,
        help="HF encoder directory (default: the built-in multilingual-e5-small)",
    )
    p.add_argument("--train", metavar="FILE", required=True, help="training JSONL")
    p.add_argument("--eval", metavar="FILE", default=None, help="dev JSONL (evaluation, selection)")
    p.add_argument("--out", metavar="DIR", required=True, help="output checkpoint directory")
    g = p.add_argument_group("schedule")
    g.add_argument(
        "--max-steps", type=int, default=None, help="optimisation steps (overrides --epochs)"
    )
    g.add_argument("--epochs", type=float, default=3.0)
    g.add_argument("--batch-size", type=int, default=16, help="per process")
    g.add_argument("--max-length", type=int, default=None, help="sub-tokens (default 128, QA 384)")
    g.add_argument("--lr", type=float, default=5e-5)
    g.add_argument(
        "--gate-lr",
        type=float,
        default=None,
        help="learning rate of the lambda gate (default 100 x --lr)",
    )
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--num-threads", type=int, default=None, help="torch CPU threads per process")
    m = p.add_argument_group("X-Mixup")
    m.add_argument("--mixup-layer", type=int, default=None, help="1-based (default per task)")
    m.add_argument(
        "--alpha", type=float, default=None, help="source task-loss weight (default per task)"
    )
    m.add_argument("--lambda0", type=float, default=0.5)
    m.add_argument(
        "--gate",
        choices=("normalized", "paper"),
        default="normalized",
        help="lambda parametrisation: entropies / log(length) (default) or the paper's raw sum",
    )
    m.add_argument("--freeze-embeddings", action="store_true", help="freeze the word embeddings")
    m.add_argument(
        "--source-noise",
        type=float,
        default=0.0,
        metavar="P",
        help="seeded noisy source as scheduled-sampling stand-in when items have no source_bt",
    )
    m.add_argument(
        "--sampling-k",
        type=float,
        default=None,
        help="inverse-sigmoid decay k (default 1000, QA 2000)",
    )
    m.add_argument(
        "--target-labels",
        choices=("gold", "pseudo"),
        default=None,
        help="tagging target loss: gold target_tags or soft pseudo-labels "
        "(default: gold when every item has target_tags)",
    )
    m.add_argument(
        "--teacher",
        metavar="CKPT",
        default=None,
        help="tagging checkpoint that pseudo-labels the target words",
    )
    s = p.add_argument_group("selection and checkpoints")
    s.add_argument(
        "--select",
        choices=("best", "last"),
        default=None,
        help="final weights (default: best when --eval is given)",
    )
    s.add_argument(
        "--select-on",
        choices=("target", "source"),
        default="target",
        help="score dev on the target or on its English side only (true zero-shot)",
    )
    s.add_argument(
        "--average-checkpoints",
        type=int,
        default=0,
        metavar="N",
        help="average the weights of the last N saved checkpoints",
    )
    s.add_argument("--eval-steps", type=int, default=None, help="default: total steps / 5")
    s.add_argument("--save-steps", type=int, default=None, help="default: --eval-steps")
    s.add_argument("--logging-steps", type=int, default=None)
    s.add_argument("--eval-batch-size", type=int, default=32)
    s.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    s.add_argument("--skip-bad", action="store_true", help="skip and count invalid JSONL lines")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from training.trainer import TrainOptions, train

    opts = TrainOptions(
        task=args.task,
        method=args.method,
        train=args.train,
        out=args.out,
        eval=args.eval,
        backbone=args.backbone,
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lr=args.lr,
        gate_lr=args.gate_lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        mixup_layer=args.mixup_layer,
        alpha=args.alpha,
        lambda0=args.lambda0,
        gate=args.gate,
        freeze_embeddings=args.freeze_embeddings,
        source_noise=args.source_noise,
        sampling_k=args.sampling_k,
        target_labels=args.target_labels,
        teacher=args.teacher,
        select=args.select,
        select_on=args.select_on,
        average_checkpoints=args.average_checkpoints,
        eval_steps=args.eval_steps,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
        resume=args.resume,
        skip_bad=args.skip_bad,
        num_threads=args.num_threads,
        eval_batch_size=args.eval_batch_size,
        disable_tqdm=args.no_progress,
    )
    train(opts)
    return 0
