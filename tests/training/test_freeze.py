"""`--freeze-layers`: the lowest layers stay fixed, get no gradient, and give the same outputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.tiny import make_tiny_backbone, make_tiny_model, random_batch  # noqa: E402
from training.freeze import freeze, max_frozen_layers  # noqa: E402
from xmixup.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory):
    return make_tiny_backbone(tmp_path_factory.mktemp("freeze") / "bb", num_layers=4)


def _loss_and_grads(model, seed: int = 3):
    t_ids, t_mask = random_batch([7, 5, 9], seed=seed)
    s_ids, s_mask = random_batch([6, 8, 4], seed=seed + 1)
    torch.manual_seed(0)
    out = model(t_ids, t_mask, s_ids, s_mask)
    loss = out.target_logits.square().mean() + out.source_logits.square().mean()
    loss.backward()
    return out


def test_frozen_layers_get_no_gradient_and_upper_layers_do(backbone) -> None:
    model = make_tiny_model(backbone, "classify", mixup_layer=3).train()
    freeze(model, embeddings=True, layers=2)
    _loss_and_grads(model)
    for name, p in model.encoder.embeddings.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    for i, layer in enumerate(model.layers):
        grads = [p.grad for p in layer.parameters()]
        if i < 2:
            assert all(g is None for g in grads), f"frozen layer {i} got a gradient"
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), f"layer {i}"
    assert all(p.grad is not None for p in model.gate.parameters())


def test_freezing_changes_no_output(backbone) -> None:
    plain = make_tiny_model(backbone, "tag", mixup_layer=3)
    frozen = make_tiny_model(backbone, "tag", mixup_layer=3)
    freeze(frozen, embeddings=False, layers=2)
    t_ids, t_mask = random_batch([7, 5], seed=1)
    s_ids, s_mask = random_batch([6, 8], seed=2)
    a = plain(t_ids, t_mask, s_ids, s_mask)
    b = frozen(t_ids, t_mask, s_ids, s_mask)
    assert torch.equal(a.target_logits, b.target_logits)
    assert torch.equal(a.mixup_ratio, b.mixup_ratio)
    assert b.target_logits.requires_grad  # the upper layers and head still train


def test_embeddings_only_keeps_layers_trainable(backbone) -> None:
    model = make_tiny_model(backbone, "classify", mixup_layer=2).train()
    freeze(model, embeddings=True, layers=0)
    assert not model.encoder.embeddings.word_embeddings.weight.requires_grad
    assert model.encoder.embeddings.position_embeddings.weight.requires_grad
    assert all(p.requires_grad for p in model.layers.parameters())


@pytest.mark.parametrize(
    ("method", "layers", "limit"),
    [("xmixup", 3, 2), ("xmixup", -1, 2), ("translate-train", 4, 3)],
)
def test_out_of_range_is_refused_naming_the_flag(backbone, method, layers, limit) -> None:
    model = make_tiny_model(backbone, "classify", method=method, mixup_layer=3)
    assert max_frozen_layers(model) == limit
    with pytest.raises(UserError, match="--freeze-layers"):
        freeze(model, embeddings=False, layers=layers)


def test_frozen_layers_run_without_dropout_in_training(backbone) -> None:
    model = make_tiny_model(backbone, "classify", mixup_layer=3)
    freeze(model, embeddings=True, layers=2)
    model.train()  # the Trainer calls this before every step
    assert not model.encoder.embeddings.training
    assert [layer.training for layer in model.layers] == [False, False, True, True]
    assert model.head.training and model.gate.training
    # The frozen part is a fixed function in training too: two passes agree below the mix.
    ids, mask = random_batch([7, 5], seed=4)
    states = [model._run(model._embed(ids), mask, 0, 2, None) for _ in range(2)]
    assert torch.equal(states[0], states[1])
    above = [model._run(states[0], mask, 2, 3, None) for _ in range(2)]
    assert not torch.equal(above[0], above[1])  # dropout still acts where weights train
    model.eval()
    assert not any(m.training for m in model.modules())
