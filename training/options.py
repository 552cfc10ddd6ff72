"""``TrainOptions``: every option of ``xmixup train``, written once.

Each field carries its command-line metadata (help, choices, metavar, argument group and the
flag when it is not ``--field-name``); ``add_arguments`` builds the argparse arguments from
the fields, and ``from_namespace`` reads them back. Torch-free: the CLI parser imports it.

Why not ``transformers.HfArgumentParser``: importing transformers would make every
``xmixup`` invocation slow (the CLI imports no heavy package before a handler runs), and it
spells flags with underscores, turns booleans into ``--flag [BOOL]`` and has no argument
groups, so the existing command line and its ``--help`` would change.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from xmixup.core.vocab import METHODS, TASKS, WORD_TOKEN_RULES
from xmixup.errors import UserError

# Argument groups of ``xmixup train --help``, in order (a field without a group is one of the
# parser's own options).
SCHEDULE, XMIXUP, SELECTION = GROUPS = ("schedule", "X-Mixup", "selection and checkpoints")


def _opt(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    group: str | None = None,
    flag: str | None = None,
) -> Any:
    """A dataclass field with its CLI metadata (no default = a required flag)."""
    meta = {"help": help, "choices": choices, "metavar": metavar, "group": group, "flag": flag}
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class TrainOptions:
    """Everything ``xmixup train`` takes; field order is the order of ``--help``."""

    task: str = _opt(choices=TASKS)
    method: str = _opt("xmixup", choices=METHODS)
    backbone: str | None = _opt(
        None,
        metavar="DIR",
        help="HF encoder directory (default: the built-in multilingual-e5-small)",
    )
    train: str = _opt(metavar="FILE", help="training JSONL")
    eval: str | None = _opt(None, metavar="FILE", help="dev JSONL (evaluation, selection)")
    out: str = _opt(metavar="DIR", help="output checkpoint directory")

    max_steps: int | None = _opt(
        None, group=SCHEDULE, help="optimisation steps (overrides --epochs)"
    )
    epochs: float = _opt(3.0, group=SCHEDULE)
    batch_size: int = _opt(16, group=SCHEDULE, help="per process")
    max_length: int | None = _opt(None, group=SCHEDULE, help="sub-tokens (default 128, QA 384)")
    lr: float | None = _opt(
        None,
        group=SCHEDULE,
        help="default 5e-5; QA and tagging with their lower layers fixed (their default) 5e-4",
    )
    gate_lr: float | None = _opt(
        None, group=SCHEDULE, help="learning rate of the lambda gate (default 100 x --lr)"
    )
    weight_decay: float = _opt(0.01, group=SCHEDULE)
    warmup_ratio: float = _opt(0.1, group=SCHEDULE)
    seed: int = _opt(1, group=SCHEDULE)
    num_threads: int | None = _opt(None, group=SCHEDULE, help="torch CPU threads per process")
    threads_file: str | None = _opt(
        None,
        group=SCHEDULE,
        help="a file holding a thread count, re-read before every step: a scheduler that "
        "shares the cores between jobs (make demo) widens a running training when others end",
    )
    group_by_length: bool = _opt(
        False,
        group=SCHEDULE,
        help="batch items of similar length together (transformers' LengthGroupedSampler: "
        "random groups of a few batches, sorted): less padding, faster steps",
    )

    mixup_layer: int | None = _opt(None, group=XMIXUP, help="1-based (default per task)")
    alpha: float | None = _opt(
        None, group=XMIXUP, help="source task-loss weight (default per task)"
    )
    # The paper's 0.5: on tagging (2 seeds) 1.0 raised λ from 0.23 to 0.32 and scored 78.4 vs
    # 78.5 (dev 78.2 vs 78.4); on QA 0.25 scored 46.5 vs 48.4 (dev 50.0 vs 51.0).
    lambda0: float = _opt(0.5, group=XMIXUP)
    # The paper's 1.0: weight 0 (2 seeds) scored 41.9 vs 43.2 on QA with dev level (47.0 / 47.0)
    # and 78.3 vs 78.5 on tagging with dev 78.1 vs 78.4, so dev gives no reason to depart from it
    # (docs/RESULTS.md "Extractive QA", "Tagging").
    consistency_weight: float = _opt(
        1.0,
        group=XMIXUP,
        metavar="W",
        help="weight of the consistency losses (hidden-state MSE; classification KL); 0: off",
    )
    gate: str = _opt(
        "normalized",
        group=XMIXUP,
        choices=("normalized", "paper"),
        help="lambda parametrisation: entropies / log(length) (default) or the paper's raw sum",
    )
    pooling: str = _opt(
        "mean",
        group=XMIXUP,
        choices=("mean", "cls"),
        help="classification head input: the mean of the real tokens (e5 is a mean-pooling "
        "model) or the first token (reference code)",
    )
    freeze_embeddings: bool = _opt(False, group=XMIXUP, help="freeze the word embeddings")
    freeze_layers: int | None = _opt(
        None,
        group=XMIXUP,
        metavar="N",
        help="keep the embedding block and the lowest N encoder layers fixed and run them "
        "without autograd (X-Mixup: N below the mixup layer); default: QA and tagging the "
        "layers below the mixup layer, classification 0",
    )
    frozen_cache_mb: float = _opt(
        2048.0,
        group=SCHEDULE,
        metavar="MB",
        help="keep the fixed lower layers' output per training item, up to MB megabytes on the "
        "training device, so that a repeat visit skips them (exact: the same model as without "
        "it); 0 = off",
    )
    source_noise: float = _opt(
        0.0,
        group=XMIXUP,
        metavar="P",
        help="seeded noisy source as scheduled-sampling stand-in when items have no source_bt",
    )
    no_trust_head: bool = _opt(
        False,
        group=XMIXUP,
        help="do not fit the translation-trust head (xmixup trust) at the end of an X-Mixup run",
    )
    no_source_rate: float = _opt(
        0.0,
        group=XMIXUP,
        metavar="Q",
        help="train the no-translation fallback: each item gets its own target as the source "
        "with probability Q, as the service does for a request without one",
    )
    self_mix_rate: float = _opt(
        0.0,
        group=XMIXUP,
        metavar="Q",
        help="train the no-translation fallback while keeping the translation's supervision: "
        "each item's target stream mixes with itself with probability Q (the service's "
        "no-translation path) and the source stream still reads the translation",
    )
    unmixed_weight: float = _opt(
        0.0,
        group=XMIXUP,
        metavar="W",
        help="train the no-translation fallback beside the mix: every item also runs its target "
        "stream from the mixup layer up with the mixing off (what `unmixed` bundles serve "
        "without a translation), its target-label loss weighted W; 0 = off",
    )
    unmixed_distill: float = _opt(
        0.0,
        group=XMIXUP,
        metavar="W",
        help="classification, with the unmixed path: also pull its predictions toward the "
        "mixed target stream's (KL, weight W); 0 = off",
    )
    self_mix_copies: bool = _opt(
        False,
        group=XMIXUP,
        help="with --self-mix-rate: train each drawn item twice, mixed with its translation "
        "and, in an added copy, with itself (the batch grows by the rate) instead of switching it",
    )
    self_mix_from: int = _opt(
        0,
        group=XMIXUP,
        metavar="STEP",
        help="with --self-mix-rate: start self-mixing at this optimisation step (0 = from the "
        "first), so that the mixed stream learns from translations first",
    )
    self_mix_until: int = _opt(
        0,
        group=XMIXUP,
        metavar="STEP",
        help="with --self-mix-rate: stop self-mixing at this optimisation step (0 = never), so "
        "that the run ends on translations alone",
    )
    sampling_k: float | None = _opt(
        None, group=XMIXUP, help="inverse-sigmoid decay k (default 1000, QA 2000)"
    )
    target_labels: str | None = _opt(
        None,
        group=XMIXUP,
        choices=("gold", "pseudo", "projected"),
        help="tagging target loss: gold target_tags, soft pseudo-labels (target_tag_probs or "
        "--teacher), or the English tags projected through a word alignment made with the "
        "backbone (default: gold when every item has target_tags)",
    )
    word_token: str = _opt(
        "first-content",
        group=XMIXUP,
        choices=WORD_TOKEN_RULES,
        help="tagging: the sub-token a word is labelled and read on. first-content skips a "
        "bare word-boundary piece ('\u2581'), which SentencePiece tokenizers put before most "
        "Chinese/Japanese/Thai words; first is the rule of models trained before it",
    )
    teacher: str | None = _opt(
        None,
        group=XMIXUP,
        metavar="CKPT",
        help="tagging checkpoint that pseudo-labels the target words",
    )

    select: str | None = _opt(
        None,
        group=SELECTION,
        choices=("best", "last"),
        help="final weights (default: best when --eval is given)",
    )
    select_on: str = _opt(
        "target",
        group=SELECTION,
        choices=("target", "source"),
        help="score dev on the target or on its English side only (true zero-shot)",
    )
    average_checkpoints: int = _opt(
        0,
        group=SELECTION,
        metavar="N",
        help="average the weights of the last N saved checkpoints",
    )
    eval_steps: int | None = _opt(None, group=SELECTION, help="default: total steps / 5")
    save_steps: int | None = _opt(None, group=SELECTION, help="default: --eval-steps")
    logging_steps: int | None = _opt(None, group=SELECTION)
    eval_batch_size: int = _opt(32, group=SELECTION)
    resume: bool = _opt(False, group=SELECTION, help="continue from the last checkpoint in --out")
    skip_bad: bool = _opt(False, group=SELECTION, help="skip and count invalid JSONL lines")
    disable_tqdm: bool = _opt(False, group=SELECTION, flag="--no-progress", help="no progress bars")

    def with_task_defaults(self, mixup_layer: int) -> TrainOptions:
        """These options with the task defaults of training/config.py filled in (`--lr`,
        `--freeze-layers`, `--alpha`) for a model whose mixup layer is `mixup_layer`."""
        # imported here: this module is the CLI's stdlib-only shell (`xmixup serve` loads it)
        from training.config import DEFAULT_ALPHA, default_frozen_layers, default_lr

        frozen = self.freeze_layers
        if frozen is None:
            frozen = default_frozen_layers(self.task, mixup_layer)
        lr = self.lr if self.lr is not None else default_lr(self.task, frozen)
        alpha = self.alpha if self.alpha is not None else DEFAULT_ALPHA[self.task]
        return dataclasses.replace(self, freeze_layers=frozen, lr=lr, alpha=alpha)

    def check(self) -> None:
        """Refuse flag combinations that cannot work, before anything heavy is loaded."""
        if self.select == "best" and not self.eval:
            raise UserError(
                "--select best needs --eval FILE", "pass a dev file or use --select last"
            )
        if self.select == "best" and self.average_checkpoints:
            raise UserError(
                "--select best and --average-checkpoints exclude each other",
                "checkpoint averaging replaces selection: drop --select best",
            )
        if self.select_on not in ("target", "source"):
            raise UserError(f"--select-on must be target or source, not {self.select_on!r}")
        if not 0.0 <= self.source_noise <= 1.0:
            raise UserError(f"--source-noise {self.source_noise} is not a probability in [0, 1]")
        if not 0.0 <= self.no_source_rate < 1.0:
            raise UserError(
                f"--no-source-rate {self.no_source_rate} is not a probability in [0, 1)",
                "1 would never show the model a translation",
            )
        if not 0.0 <= self.self_mix_rate < 1.0:
            raise UserError(
                f"--self-mix-rate {self.self_mix_rate} is not a probability in [0, 1)",
                "1 would never mix a translation into the target stream",
            )
        for flag, w in (
            ("--unmixed-weight", self.unmixed_weight),
            ("--unmixed-distill", self.unmixed_distill),
        ):
            if w < 0:
                raise UserError(f"{flag} {w} is negative", "0 = off")
            if w > 0 and self.method != "xmixup":
                raise UserError(f"{flag} is for --method xmixup", f"drop {flag}")
        if self.unmixed_distill > 0 and self.task != "classify":
            raise UserError("--unmixed-distill is for classification", "drop --unmixed-distill")
        if self.self_mix_from < 0:
            raise UserError(f"--self-mix-from {self.self_mix_from} is a negative step")
        if self.self_mix_until and self.self_mix_until <= self.self_mix_from:
            raise UserError(
                f"--self-mix-until {self.self_mix_until} is not after --self-mix-from "
                f"{self.self_mix_from}",
                "0 = to the end of the run",
            )
        modifiers = {
            "--self-mix-from": self.self_mix_from,
            "--self-mix-until": self.self_mix_until,
            "--self-mix-copies": self.self_mix_copies,
        }
        for flag, on in modifiers.items():
            if on and self.self_mix_rate <= 0:
                raise UserError(f"{flag} changes --self-mix-rate, which is 0 (off)")
        if self.frozen_cache_mb < 0:
            raise UserError(f"--frozen-cache-mb {self.frozen_cache_mb} is negative", "0 = off")
        if self.consistency_weight < 0:
            raise UserError(f"--consistency-weight {self.consistency_weight} is negative")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"--alpha {self.alpha} is not in [0, 1]")
        if self.target_labels not in (None, "gold", "pseudo", "projected"):
            raise UserError(
                f"--target-labels must be gold, pseudo or projected, not {self.target_labels!r}"
            )
        if self.teacher and self.task != "tag":
            raise UserError("--teacher is for tagging pseudo-labels only", "drop --teacher")
        if self.batch_size < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise UserError("--batch-size and --max-steps must be positive")


def _value_type(hint: Any) -> type:
    """``int`` for ``int | None``; the type itself otherwise."""
    if isinstance(hint, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner  # type: ignore[no-any-return]
    return hint  # type: ignore[no-any-return]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argparse argument per TrainOptions field, in field order, under its group."""
    hints = typing.get_type_hints(TrainOptions)
    groups: dict[str | None, Any] = {None: parser}
    for g in GROUPS:
        groups[g] = parser.add_argument_group(g)
    for f in dataclasses.fields(TrainOptions):
        meta = f.metadata
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        value_type = _value_type(hints[f.name])
        if value_type is bool:
            kwargs["action"] = "store_true"
        else:
            if value_type is not str:
                kwargs["type"] = value_type
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"] is not None:
                kwargs["metavar"] = meta["metavar"]
        groups[meta["group"]].add_argument(flag, **kwargs)


def from_namespace(args: argparse.Namespace) -> TrainOptions:
    """The TrainOptions that parsed command-line arguments hold."""
    return TrainOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions)})
