"""The λ gate and the entropy features: range, input dependence, gradients, NaN regression."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from tests.tiny import make_tiny_model, pad_items, random_batch  # noqa: E402
from training.mixup import EntropyGate, masked_row_entropy  # noqa: E402


def test_masked_entropy_matches_manual_and_ignores_padding() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(1, 2, 3, 5, generator=g)
    key_mask = torch.tensor([[True, True, True, False, False]])
    query_mask = torch.tensor([[True, True, False]])
    got = masked_row_entropy(scores, key_mask, query_mask, normalize=False)
    p = torch.softmax(scores[..., :3], dim=-1)
    rows = -(p * p.log()).sum(-1)  # [1, 2, 3]
    want = rows[:, :, :2].mean()  # heads and the two real query rows only
    assert got.shape == (1,)
    assert abs(got.item() - want.item()) < 1e-6
    normed = masked_row_entropy(scores, key_mask, query_mask, normalize=True)
    assert abs(normed.item() - want.item() / math.log(3)) < 1e-6
    # Garbage in padded keys / rows must not matter.
    noisy = scores.clone()
    noisy[..., 3:] = 1e4
    noisy[:, :, 2, :] = -1e4
    assert torch.allclose(masked_row_entropy(noisy, key_mask, query_mask, False), got)


def test_normalized_entropy_bounds() -> None:
    key_mask = torch.ones(1, 6, dtype=torch.bool)
    q_mask = torch.ones(1, 4, dtype=torch.bool)
    uniform = masked_row_entropy(torch.zeros(1, 2, 4, 6), key_mask, q_mask, True)
    peaked = torch.full((1, 2, 4, 6), -50.0)
    peaked[..., 0] = 50.0
    sharp = masked_row_entropy(peaked, key_mask, q_mask, True)
    assert abs(uniform.item() - 1.0) < 1e-6
    assert sharp.item() < 1e-6


@pytest.mark.parametrize("mode", ["normalized", "paper"])
def test_gate_init_and_range(mode: str) -> None:
    gate = EntropyGate(lambda0=0.5, mode=mode)
    key_mask = torch.ones(1, 5, dtype=torch.bool)
    q_mask = torch.ones(1, 5, dtype=torch.bool)
    lams = []
    for scale in (0.0, 1.0, 100.0):
        scores = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(1)) * scale
        lams.append(gate(scores, q_mask, key_mask).item())
    assert all(0.0 < x <= 0.5 for x in lams)
    if mode == "normalized":
        # Uniform attention (x = 2) -> 0.5·sigmoid(-2 + logit 0.8) ; peaked -> close to λ0.
        assert abs(lams[0] - 0.5 / (1 + math.exp(2.0 - math.log(4.0)))) < 1e-6
        assert lams[2] > lams[1] > lams[0]
    else:
        assert gate.weight.item() == 1.0 and gate.bias.item() == 0.0
        assert lams[0] > lams[2]  # paper parametrisation: λ grows with entropy


@pytest.mark.parametrize("gate", ["normalized", "paper"])
def test_lambda_in_range_and_depends_on_source(tiny_backbone, gate: str) -> None:
    model = make_tiny_model(tiny_backbone, "classify", gate=gate)
    t_ids, t_mask = random_batch([9, 6, 12, 4], seed=1)
    lams = []
    for seed in (2, 3):
        s_ids, s_mask = random_batch([7, 11, 5, 8], seed=seed)
        with torch.no_grad():
            lams.append(model(t_ids, t_mask, s_ids, s_mask).mixup_ratio)
    for lam in lams:
        assert lam.shape == (4,)
        assert bool(((lam > 0) & (lam <= 0.5)).all())
        assert lam.std().item() > 1e-4  # differs between examples
    # Different sources -> different λ. The paper gate sits on the flat top of its sigmoid
    # (entropy sums of several nats), so its differences are an order smaller.
    min_diff = 1e-3 if gate == "normalized" else 1e-4
    assert (lams[0] - lams[1]).abs().max().item() > min_diff


def test_gradients_reach_gate_and_encoder(tiny_backbone) -> None:
    model = make_tiny_model(tiny_backbone, "classify").train()
    t_ids, t_mask = random_batch([9, 6, 12, 4], seed=1)
    s_ids, s_mask = random_batch([7, 14, 5, 8], seed=2)
    out = model(t_ids, t_mask, s_ids, s_mask)
    labels = torch.tensor([0, 1, 2, 0])
    loss = torch.nn.functional.cross_entropy(out.target_logits, labels)
    loss = loss + torch.nn.functional.cross_entropy(out.source_logits, labels)
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    for p in model.gate_parameters():
        assert p.grad is not None and p.grad.abs().item() > 0
    mix = model.layers[model.mixup_index].attention.self
    for p in (mix.query.weight, mix.key.weight, model.encoder.embeddings.word_embeddings.weight):
        assert p.grad is not None and p.grad.abs().sum().item() > 0


def test_entropy_nan_regression_with_heavy_padding(tiny_backbone) -> None:
    """xlogy-style entropies give 0/0 gradients at masked keys; ours must stay finite."""
    model = make_tiny_model(tiny_backbone, "tag", mixup_layer=2).train()
    t_ids, t_mask = pad_items([random_batch([n], seed=n)[0][0] for n in (2, 17, 1)])
    s_ids, s_mask = pad_items([random_batch([n], seed=10 + n)[0][0] for n in (20, 1, 3)])
    out = model(t_ids, t_mask, s_ids, s_mask)
    loss = out.target_logits.logsumexp(-1).sum() + out.mixup_ratio.sum() * 10
    loss.backward()
    assert torch.isfinite(out.mixup_ratio).all()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.gate.weight.grad.abs().item() > 0
