"""XMixupTrainer.create_optimizer: λ's gate at its own learning rate, every weight once."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.tiny import make_tiny_model  # noqa: E402


@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_gate_has_its_own_rate_and_no_decay(task: str, tiny_backbone: Path, tmp_path: Path) -> None:
    # The smoke test's "the gate moved" check is weak for QA (its gradient sign flips between
    # steps: 4 steps moved it 0.0075-0.035); this reads the rule itself from the optimizer.
    from transformers import TrainingArguments

    from training.xmixup_trainer import XMixupTrainer

    model = make_tiny_model(tiny_backbone, task)
    model.train()
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=5e-5, weight_decay=0.01, report_to=[]
    )
    trainer = XMixupTrainer(
        model=model,
        args=args,
        xm_model=model,
        plan=None,
        alpha=0.4,
        target_label_mode="gold",
        gate_lr=0.05,
        eval_records=None,
        tokenizer=None,
        eval_batch_size=8,
    )
    opt = trainer.create_optimizer()
    gate_ids = {id(p) for p in model.gate_parameters()}
    assert gate_ids
    seen: list[int] = []
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        seen += [id(p) for p in group["params"]]
        if ids & gate_ids:
            assert ids == gate_ids  # the gate's group holds the gate only
            assert (group["lr"], group["weight_decay"]) == (0.05, 0.0)
        else:
            assert group["lr"] == 5e-5
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable)  # every trainable weight, each exactly once
    decayed = next(g for g in opt.param_groups if g["weight_decay"] == 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["params"] and all(
        "bias" not in names[id(p)] and "LayerNorm" not in names[id(p)] for p in decayed["params"]
    )
