"""The translation-trust head: its metrics, its logistic fit, and a tiny model end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from training.trust_metrics import auroc, trusted_split

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ metrics on known arrays
def test_auroc_known_values() -> None:
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    # pairs: (0.6>0.5) (0.6<0.7) (0.4<0.5) (0.4<0.7) -> 1/4
    assert auroc([0.6, 0.4], [0.5, 0.7]) == 0.25
    # ties count one half: (0.5 = 0.5) 1/2, (0.5 < 1) 0, (0.9 > 0.5) 1, (0.9 < 1) 0 -> 1.5 / 4
    assert auroc([0.5, 0.9], [0.5, 1.0]) == 0.375
    assert auroc([0.3, 0.3, 0.3], [0.3]) == 0.5
    with pytest.raises(ValueError):
        auroc([], [0.1])


def test_auroc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 5, 40).astype(float)  # many ties
    neg = rng.integers(0, 4, 30).astype(float)
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(pos, neg) == pytest.approx(float(np.mean(pairs)), abs=1e-12)


def test_trusted_split_known_values() -> None:
    trust = [0.9, 0.1, 0.8, 0.7, 0.2]
    score = [1.0, 0.0, 1.0, 0.0, 1.0]
    # share 0.6 of 5 = 3 most trusted: items 0, 2, 3 -> (1 + 1 + 0) / 3; rest 1, 4 -> 0.5
    out = trusted_split(trust, score, share=0.6)
    assert out == {"trusted": pytest.approx(2 / 3), "rest": 0.5, "n_trusted": 3, "n_rest": 2}
    out = trusted_split(trust, score, share=1.0)
    assert out["n_rest"] == 0 and math.isnan(out["rest"]) and out["trusted"] == 0.6
    # ties keep item order: items 0 and 1 share the top trust, item 0 goes first
    assert trusted_split([0.5, 0.5, 0.1], [1.0, 0.0, 0.0], share=1 / 3)["trusted"] == 1.0
    with pytest.raises(ValueError):
        trusted_split([0.1], [1.0, 0.0])


# ------------------------------------------------------------------ the logistic fit
def _toy(n: int = 300, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # Columns on very different scales and offsets: the standardisation must matter.
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor(
        [1.0, 10.0, 0.1, 3.0, 50.0, 0.5], dtype=torch.float64
    ) + torch.tensor([0.0, 5.0, -2.0, 1.0, 100.0, 0.0], dtype=torch.float64)
    logit = (x[:, 0] - 0.2 * (x[:, 1] - 5.0) + 8.0 * (x[:, 2] + 2.0)).clamp(-30, 30)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(logit)).double()
    return x, y


def test_fit_logistic_folds_the_standardisation_of_a_reference_fit() -> None:
    """The folded (weight, bias) on raw features give the same probabilities as the reference
    L2 logistic regression on standardised features (scikit-learn, C = 1 / (l2 · n))."""
    from training.trust import fit_logistic

    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    x, y = _toy()
    l2 = 1e-2
    weight, bias = fit_logistic(x, y, l2)
    mu, sd = x.mean(0), x.std(0, unbiased=False)
    z = ((x - mu) / sd).numpy()
    ref = sklearn_lm.LogisticRegression(C=1.0 / (l2 * len(x)), tol=1e-10, max_iter=10_000)
    ref.fit(z, y.numpy())
    expected = ref.predict_proba(z)[:, 1]
    got = torch.sigmoid(x.float() @ weight + bias).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_fit_logistic_satisfies_the_optimality_conditions() -> None:
    """At the optimum the gradient of mean BCE + l2/2 |w|² (standardised) vanishes."""
    from training.trust import fit_logistic

    x, y = _toy()
    l2 = 1e-2
    weight, bias = fit_logistic(x, y, l2)
    mu, sd = x.mean(0), x.std(0, unbiased=False)
    w_std = weight.double() * sd  # unfold
    z = (x - mu) / sd
    p = torch.sigmoid(x @ weight.double() + bias.double())
    assert float((p - y).mean()) == pytest.approx(0.0, abs=1e-4)
    grad = ((p - y)[:, None] * z).mean(0) + l2 * w_std
    assert float(grad.abs().max()) < 1e-4
    again = fit_logistic(x, y, l2)
    assert torch.equal(again[0], weight) and torch.equal(again[1], bias)  # deterministic


def test_pooled_stats_are_masked_mean_and_std() -> None:
    from training.trust_head import pooled_stats

    h = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    out = pooled_stats(h, mask)[0]
    assert out[:2].tolist() == [2.0, 4.0]
    assert out[2:].tolist() == pytest.approx([1.0, 2.0], abs=1e-5)


# ------------------------------------------------------------------ tiny model end to end
TINY = {"classify": ["negative", "positive"], "tag": ["O", "B-PER", "I-PER"], "qa": []}


@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_fit_keeps_task_outputs_and_adds_trust(
    task: str, tiny_backbone: Path, tmp_path: Path
) -> None:
    from tests.tiny import fit_tiny_trust, make_tiny_checkpoint, random_batch
    from training.modeling import XMixupModel

    extra = {"max_length": 64, "doc_stride": 16, "max_query_length": 16} if task == "qa" else {}
    ckpt = make_tiny_checkpoint(tmp_path, task, TINY[task], backbone_dir=tiny_backbone, **extra)
    t_ids, t_mask = random_batch([9, 5, 7], seed=1)
    s_ids, s_mask = random_batch([6, 11, 3], seed=2)
    before = XMixupModel.from_pretrained(ckpt)
    assert before.trust is None and before.config.trust_head is False
    with torch.no_grad():
        old = before.predict(t_ids, t_mask, s_ids, s_mask)
    assert "translation_trust" not in old

    summary = fit_tiny_trust(ckpt)
    assert summary["positives"] == 15 and summary["negatives"] > 0
    after = XMixupModel.from_pretrained(ckpt)  # reloaded: the head is in the checkpoint
    assert after.config.trust_head is True
    with torch.no_grad():
        new = after.predict(t_ids, t_mask, s_ids, s_mask)
        other = after.predict(t_ids, t_mask, s_ids.flip(0), s_mask.flip(0))
    for name, value in old.items():
        assert torch.equal(new[name], value), name  # bit-identical task outputs
    trust = new["translation_trust"]
    assert trust.shape == (3,) and bool(((trust > 0) & (trust < 1)).all())
    # per item, from its own source only
    assert torch.allclose(other["translation_trust"], trust.flip(0), atol=1e-6)
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["xmixup"]["trust_head"] is True
    assert not list(ckpt.glob(".*.tmp"))


def test_source_features_rows_follow_the_records(tiny_backbone: Path, tmp_path: Path) -> None:
    """Batched by length, yet each row is its own record's, as computed alone (no padding)."""
    from transformers import AutoTokenizer

    from tests.tiny import make_tiny_checkpoint, trust_records
    from training.modeling import XMixupModel
    from training.trust import source_features

    ckpt = make_tiny_checkpoint(tmp_path, "classify", TINY["classify"], backbone_dir=tiny_backbone)
    model = XMixupModel.from_pretrained(ckpt).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    # 45 records: more than one batch of 32, with a few much longer sources
    recs = [dict(r) for r in trust_records("classify", TINY["classify"]) * 3]
    for k in (3, 20, 40):
        recs[k]["source"] = " ".join([recs[k]["source"]] * (k // 10 + 2))
    rows, ids = source_features(model, tokenizer, recs, None)
    assert len({len(i) for i in ids}) > 1 and rows.shape[0] == len(recs)
    for k in (0, 3, 20, 33, 40, len(recs) - 1):
        alone, alone_ids = source_features(model, tokenizer, [recs[k]], None)
        assert alone_ids[0] == ids[k]
        assert torch.allclose(rows[k], alone[0], atol=1e-5), k


def test_trust_refuses_baselines(tiny_backbone: Path, tmp_path: Path) -> None:
    from tests.tiny import fit_tiny_trust, make_tiny_checkpoint
    from xmixup.errors import UserError

    ckpt = make_tiny_checkpoint(
        tmp_path, "classify", TINY["classify"], backbone_dir=tiny_backbone, method="zero-shot"
    )
    with pytest.raises(UserError, match="X-Mixup"):
        fit_tiny_trust(ckpt)


def test_trust_cli_and_evaluate_per_item(
    tiny_backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xmixup trust` rewrites the checkpoint; `xmixup evaluate` then reports trust per item."""
    from tests.tiny import make_tiny_checkpoint, trust_records
    from xmixup.cli import main

    ckpt = make_tiny_checkpoint(tmp_path, "classify", TINY["classify"], backbone_dir=tiny_backbone)
    data = tmp_path / "train.jsonl"
    rows = trust_records("classify", TINY["classify"])
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["trust", "--model", str(ckpt), "--data", str(data), "--items", "10"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["items"] == 10 and 0.0 <= summary["train_auroc"] <= 1.0

    results = {}
    for name, extra in (("clean", []), ("noisy", ["--source-noise", "0.3"])):
        out = tmp_path / f"{name}.json"
        args = ["evaluate", "--model", str(ckpt), "--data", str(data), "--out", str(out)]
        assert main([*args, *extra]) == 0
        results[name] = json.loads(out.read_text())
    clean, noisy = results["clean"], results["noisy"]
    assert len(clean["trust_per_item"]) == len(clean["score_per_item"]) == len(rows)
    assert set(clean["score_per_item"]) <= {0.0, 1.0}
    assert clean["trust"]["min"] == min(clean["trust_per_item"])
    acc = 100.0 * sum(clean["score_per_item"]) / len(rows)
    assert acc == pytest.approx(clean["avg"])  # one language: per-item scores give the metric
    assert noisy["trust_per_item"] != clean["trust_per_item"]
    assert 0.0 <= auroc(clean["trust_per_item"], noisy["trust_per_item"]) <= 1.0
