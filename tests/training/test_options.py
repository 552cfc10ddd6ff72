"""``xmixup train``'s flags are built from the TrainOptions fields: names, defaults, types."""

from __future__ import annotations

import dataclasses

import pytest

from training.options import TrainOptions, from_namespace
from xmixup.cli import build_parser
from xmixup.errors import UserError

REQUIRED = ["--task", "tag", "--train", "t.jsonl", "--out", "o"]


def _parse(*extra: str) -> TrainOptions:
    return from_namespace(build_parser().parse_args(["train", *REQUIRED, *extra]))


def _train_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def test_defaults_are_the_dataclass_defaults() -> None:
    assert _parse() == TrainOptions(task="tag", train="t.jsonl", out="o")
    assert _parse().method == "xmixup" and _parse().pooling == "mean"
    assert _parse().word_token == "first-content"  # new trainings skip bare "▁" pieces
    assert _parse("--word-token", "first").word_token == "first"


def test_task_defaults_fill_lr_and_frozen_layers() -> None:
    # QA and tagging: the layers below the mixup layer fixed, at 5e-4 (training/config.py);
    # classification: every layer at 5e-5
    qa = TrainOptions(task="qa", train="t.jsonl", out="o")
    assert qa.lr is None and qa.freeze_layers is None  # "not given", resolved per model
    assert qa.with_task_defaults(8) == dataclasses.replace(qa, freeze_layers=7, lr=5e-4, alpha=0.2)
    tag = TrainOptions(task="tag", train="t.jsonl", out="o").with_task_defaults(4)
    assert (tag.freeze_layers, tag.lr) == (3, 5e-4)
    cls = TrainOptions(task="classify", train="t.jsonl", out="o").with_task_defaults(8)
    assert (cls.freeze_layers, cls.lr) == (0, 5e-5)
    # what is given wins; a QA full fine-tune goes back to the base rate
    assert qa.with_task_defaults(1).freeze_layers == 0
    full = dataclasses.replace(qa, freeze_layers=0).with_task_defaults(8)
    assert (full.freeze_layers, full.lr) == (0, 5e-5)
    given = _parse("--task", "qa", "--lr", "1e-4", "--freeze-layers", "3").with_task_defaults(8)
    assert (given.freeze_layers, given.lr) == (3, 1e-4)


def test_every_field_is_one_flag() -> None:
    flags = {a.dest: a.option_strings for a in _train_parser()._actions if a.dest != "help"}
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    assert set(flags) == names
    assert flags["disable_tqdm"] == ["--no-progress"]
    assert flags["max_steps"] == ["--max-steps"]
    assert flags["eval_batch_size"] == ["--eval-batch-size"]


def test_values_are_typed() -> None:
    opts = _parse(
        "--max-steps", "7", "--lr", "1e-4", "--gate-lr", "0.5", "--pooling", "cls",
        "--freeze-embeddings", "--no-progress", "--source-noise", "0.25", "--method", "zero-shot",
    )  # fmt: skip
    assert opts.max_steps == 7 and isinstance(opts.max_steps, int)
    assert opts.lr == pytest.approx(1e-4) and opts.gate_lr == 0.5
    assert opts.pooling == "cls" and opts.method == "zero-shot"
    assert opts.freeze_embeddings is True and opts.disable_tqdm is True
    assert opts.resume is False and opts.source_noise == 0.25


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--train", "t.jsonl", "--out", "o"],  # --task missing
        ["train", *REQUIRED, "--pooling", "max"],
        ["train", *REQUIRED, "--gate", "sigmoid"],
        ["train", *REQUIRED, "--word-token", "last"],
        ["train", *REQUIRED, "--max-steps", "1.5"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_help_lists_groups_defaults_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for section in ("schedule:", "X-Mixup:", "selection and checkpoints:"):
        assert section in text
    assert "--no-progress" in text and "no progress bars" in text
    assert "--source-noise P" in text and "(default: 0.0)" in text


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"select": "best"}, "needs --eval"),
        ({"eval": "d.jsonl", "select": "best", "average_checkpoints": 2}, "exclude each other"),
        ({"source_noise": 1.5}, "not a probability"),
        ({"alpha": -0.1}, "not in"),
        ({"self_mix_rate": 1.0}, "--self-mix-rate 1.0 is not a probability"),
        ({"self_mix_from": -1, "self_mix_rate": 0.2}, "--self-mix-from -1 is a negative step"),
        ({"self_mix_from": 100}, "--self-mix-from changes --self-mix-rate, which is 0"),
        ({"self_mix_copies": True}, "--self-mix-copies changes --self-mix-rate, which is 0"),
        ({"self_mix_until": 50}, "--self-mix-until changes --self-mix-rate, which is 0"),
        (
            {"self_mix_rate": 0.2, "self_mix_from": 100, "self_mix_until": 100},
            "--self-mix-until 100 is not after --self-mix-from 100",
        ),
        ({"consistency_weight": -1.0}, "--consistency-weight -1.0 is negative"),
        ({"unmixed_weight": -1.0}, "--unmixed-weight -1.0 is negative"),
        ({"method": "translate-train", "unmixed_weight": 1.0}, "--unmixed-weight is for --method"),
        ({"unmixed_distill": 1.0}, "--unmixed-distill is for classification"),
        ({"task": "qa", "teacher": "ckpt"}, "tagging pseudo-labels only"),
        ({"batch_size": 0}, "must be positive"),
    ],
)
def test_check_refuses_impossible_combinations(changes: dict, match: str) -> None:
    opts = dataclasses.replace(TrainOptions(task="tag", train="t.jsonl", out="o"), **changes)
    with pytest.raises(UserError, match=match):
        opts.check()
    TrainOptions(task="tag", train="t.jsonl", out="o").check()  # the defaults pass


def test_options_module_stays_stdlib_only() -> None:
    """`xmixup serve` loads the CLI, whose train flags come from training.options: that module
    must not pull torch, transformers or numpy into the server process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, training.options; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'numpy', 'tokenizers')))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
