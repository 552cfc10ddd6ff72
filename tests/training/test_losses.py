"""Each loss term on hand-made tensors with known values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from training import losses as L  # noqa: E402


def test_masked_mean_and_consistency_mse() -> None:
    src = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # mean [2, 3]
    tgt = torch.tensor([[[0.0, 0.0], [100.0, 100.0]]])  # padding must not count
    m_src = torch.tensor([[1, 1]])
    m_tgt = torch.tensor([[1, 0]])
    assert L.masked_mean(tgt, m_tgt).tolist() == [[0.0, 0.0]]
    assert L.consistency_mse(src, m_src, tgt, m_tgt).item() == pytest.approx((4 + 9) / 2)


def test_kl_source_target() -> None:
    src = torch.tensor([[0.0, 0.0]])  # p = [.5, .5]
    tgt = torch.tensor([[0.0, math.log(3.0)]])  # q = [.25, .75]
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert L.kl_source_target(src, tgt).item() == pytest.approx(expected, rel=1e-6)
    assert L.kl_source_target(tgt, tgt).item() == pytest.approx(0.0, abs=1e-7)
    # direction matters: KL(p||q) != KL(q||p)
    assert L.kl_source_target(tgt, src).item() != pytest.approx(expected, rel=1e-3)


def test_classify_and_tag_ce() -> None:
    assert L.classify_item_ce(torch.zeros(2, 4), torch.tensor([0, 3])).tolist() == pytest.approx(
        [math.log(4)] * 2
    )
    logits = torch.zeros(2, 3, 2)
    logits[0, 0] = torch.tensor([0.0, math.log(3.0)])  # p(label 1) = .75
    labels = torch.tensor([[1, -100, 0], [-100, -100, -100]])
    got = L.tag_item_ce(logits, labels)
    # item 0: mean of -ln .75 and -ln .5; item 1: nothing labelled -> 0
    assert got[0].item() == pytest.approx((-math.log(0.75) - math.log(0.5)) / 2)
    assert got[1].item() == 0.0


def test_soft_label_ce_pseudo_labels() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, -5.0]]])
    soft = torch.tensor([[[0.5, 0.5], [0.0, 0.0]]])  # second position: not a word start
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert L.tag_item_soft_ce(logits, soft).item() == pytest.approx(expected)
    # a one-hot soft label equals the hard CE
    hard = torch.tensor([[1, -100]])
    onehot = torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])
    assert L.tag_item_soft_ce(logits, onehot).item() == pytest.approx(
        L.tag_item_ce(logits, hard).item()
    )


def test_qa_ce() -> None:
    start = torch.zeros(1, 4)
    end = torch.tensor([[0.0, 0.0, 0.0, math.log(3.0)]])  # p(3) = 3/6
    got = L.qa_item_ce(start, end, torch.tensor([1]), torch.tensor([3]))
    assert got.item() == pytest.approx((math.log(4) - math.log(0.5)) / 2)


def test_combine_skips_source_loss_on_stand_in_sources() -> None:
    src = torch.tensor([1.0, 2.0])
    tgt = torch.tensor([3.0, 4.0])
    real = torch.tensor([True, False])
    # item 0: .4*1 + .6*3 = 2.2 ; item 1 (back-translation): target alone, weight 1 -> 4
    assert L.combine_task_losses(src, tgt, real, 0.4).item() == pytest.approx((2.2 + 4.0) / 2)
    assert L.combine_task_losses(None, tgt, real, 0.4).item() == pytest.approx(3.5)


def _out(tl, sl, th, sh):
    return SimpleNamespace(
        target_logits=tl, source_logits=sl, target_last_hidden=th, source_last_hidden=sh
    )


def test_xmixup_loss_sums_the_terms() -> None:
    tl = torch.tensor([[0.0, math.log(3.0)]])
    sl = torch.tensor([[0.0, 0.0]])
    th = torch.zeros(1, 2, 2)
    sh = torch.ones(1, 2, 2)
    batch = {
        "target_labels": torch.tensor([1]),
        "source_labels": torch.tensor([1]),
        "target_attention_mask": torch.ones(1, 2),
        "source_attention_mask": torch.ones(1, 2),
    }
    parts = L.xmixup_loss("classify", _out(tl, sl, th, sh), batch, torch.tensor([True]), alpha=0.4)
    task = 0.4 * math.log(2) + 0.6 * -math.log(0.75)
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert parts.total.item() == pytest.approx(task + 1.0 + kl, rel=1e-6)
    assert parts.mse == pytest.approx(1.0) and parts.kl == pytest.approx(kl, rel=1e-6)
    # --consistency-weight scales both consistency terms (0: task loss alone), not the task loss
    for w in (0.0, 2.5):
        weighted = L.xmixup_loss(
            "classify",
            _out(tl, sl, th, sh),
            batch,
            torch.tensor([True]),
            alpha=0.4,
            consistency_weight=w,
        )
        assert weighted.total.item() == pytest.approx(task + w * (1.0 + kl), rel=1e-6)
        assert weighted.mse == pytest.approx(1.0)  # logged unweighted
    # tagging: no KL term; pseudo mode reads the soft labels, not target_labels
    tl3 = torch.tensor([[[0.0, math.log(3.0)]]])
    sl3 = torch.zeros(1, 1, 2)
    tb = {
        "target_labels": torch.tensor([[0]]),
        "target_soft_labels": torch.tensor([[[0.0, 1.0]]]),
        "source_labels": torch.tensor([[1]]),
        "target_attention_mask": torch.ones(1, 1),
        "source_attention_mask": torch.ones(1, 1),
    }
    o = _out(tl3, sl3, torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))
    gold = L.xmixup_loss("tag", o, tb, torch.tensor([True]), alpha=0.8, target_label_mode="gold")
    pseudo = L.xmixup_loss(
        "tag", o, tb, torch.tensor([True]), alpha=0.8, target_label_mode="pseudo"
    )
    assert gold.kl == 0.0
    assert gold.task_target == pytest.approx(-math.log(0.25))
    assert pseudo.task_target == pytest.approx(-math.log(0.75))
    assert pseudo.total.item() == pytest.approx(0.8 * math.log(2) + 0.2 * -math.log(0.75))


def test_unmixed_path_loss_and_distillation() -> None:
    """--unmixed-weight / --unmixed-distill: the mixing-off target's label loss and its KL from
    the mixed target stream, each with its weight, on top of the unchanged X-Mixup loss."""
    tl = torch.tensor([[0.0, math.log(3.0)]])  # mixed target: p = (0.25, 0.75)
    sl = torch.tensor([[0.0, 0.0]])
    ul = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)  # unmixed: (0.75, 0.25)
    batch = {
        "target_labels": torch.tensor([1]),
        "source_labels": torch.tensor([1]),
        "target_attention_mask": torch.ones(1, 2),
        "source_attention_mask": torch.ones(1, 2),
    }
    h = torch.zeros(1, 2, 2)
    real = torch.tensor([True])

    def loss(out, **kw):
        return L.xmixup_loss("classify", out, batch, real, **{"alpha": 0.4, **kw})

    base = loss(_out(tl, sl, h, h))
    out = _out(tl, sl, h, h)
    out.unmixed_logits = ul
    ce = -math.log(0.25)
    kl = 0.25 * math.log(0.25 / 0.75) + 0.75 * math.log(0.75 / 0.25)
    parts = loss(out, unmixed_weight=0.5, unmixed_distill=2.0)
    assert parts.total.item() == pytest.approx(base.total.item() + 0.5 * ce + 2.0 * kl, rel=1e-6)
    assert parts.unmixed == pytest.approx(0.5 * ce + 2.0 * kl, rel=1e-6)
    # The mixed stream is the teacher: the KL sends no gradient into it.
    tl_g = tl.clone().requires_grad_(True)
    out.target_logits = tl_g
    only_kl = loss(out, alpha=0.0, unmixed_distill=1.0, use_mse=False, use_kl=False)
    only_kl.total.backward()
    assert tl_g.grad is not None and ul.grad is not None
    assert torch.allclose(tl_g.grad, torch.softmax(tl, -1) - torch.tensor([[0.0, 1.0]]))
    assert ul.grad.abs().sum().item() > 0.1
    # Weights 0 leave the loss as it was, even with the unmixed logits present.
    assert loss(out).total.item() == pytest.approx(base.total.item(), rel=1e-6)


def test_target_only_loss_for_baselines() -> None:
    parts = L.target_only_loss(
        "classify", torch.zeros(3, 4), {"target_labels": torch.tensor([0, 1, 2])}
    )
    assert parts.total.item() == pytest.approx(math.log(4))
    assert math.isnan(parts.task_source)
