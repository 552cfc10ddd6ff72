"""XMixupModel: padding invariance, plain-encoder equivalence, inference rules, methods."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.tiny import make_tiny_model, pad_items, random_batch  # noqa: E402
from xmixup.errors import UserError  # noqa: E402

TOL = 1e-5
TOKEN_LEVEL = {
    "logits",
    "start_logits",
    "end_logits",
    "forward_target_logits",
    "forward_source_logits",
}


def _item(n: int, seed: int) -> torch.Tensor:
    return random_batch([n], seed=seed)[0][0]


def _outputs(model, t, s) -> dict[str, torch.Tensor]:
    """predict() outputs plus forward()'s logits, as one dict, without gradients."""
    with torch.no_grad():
        out = dict(model.predict(*t, *s))
        fwd = model(*t, *s)
    out["forward_target_logits"] = fwd.target_logits
    out["forward_source_logits"] = fwd.source_logits
    out["forward_ratio"] = fwd.mixup_ratio
    return out


@pytest.mark.parametrize(
    ("task", "arch"),
    [("classify", "bert"), ("tag", "bert"), ("qa", "bert"), ("classify", "xlmr"), ("qa", "xlmr")],
)
def test_padding_invariance(tiny_backbone, tiny_xlmr_backbone, task: str, arch: str) -> None:
    backbone = tiny_backbone if arch == "bert" else tiny_xlmr_backbone
    # Mixup layer 2 of 4 so layers below and above the mix are both exercised.
    model = make_tiny_model(backbone, task, mixup_layer=2)
    t0, s0 = _item(6, 1), _item(8, 2)
    alone = _outputs(model, pad_items([t0]), pad_items([s0]))
    batches = {
        "target longer": (pad_items([t0, _item(15, 3)]), pad_items([s0, _item(5, 4)])),
        "source longer": (pad_items([t0, _item(4, 5)]), pad_items([s0, _item(19, 6)])),
    }
    for name, (t, s) in batches.items():
        batched = _outputs(model, t, s)
        for key, ref in alone.items():
            if ref is None:
                continue
            got = batched[key][:1]
            if task != "classify" and key in TOKEN_LEVEL:
                # Token-level outputs: compare the item's real positions.
                n = s0.shape[0] if key == "forward_source_logits" else t0.shape[0]
                got = got[:, :n]
            assert got.shape == ref.shape, (name, key)
            diff = (got - ref).abs().max().item()
            assert diff <= TOL, f"{task}/{arch} {name}: {key} differs by {diff}"
    assert alone["mixup_ratio"].item() > 0


@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_self_mix_rows_are_the_no_translation_path(tiny_backbone, task: str) -> None:
    """--self-mix-rate: a self-mixed row's target stream is what the service computes with no
    translation (the target fed as the source); its source stream still reads the translation;
    the other rows are untouched."""
    model = make_tiny_model(tiny_backbone, task, mixup_layer=2)
    t, s = random_batch([6, 9, 4], seed=1), random_batch([8, 5, 11], seed=2)
    rows = torch.tensor([True, False, True])
    with torch.no_grad():
        mixed = model(*t, *s, self_mix=rows)
        plain = model(*t, *s)
        own = model(*t, *t)
    n_t = t[1].sum(dim=1)
    for i in range(3):
        ref = own if rows[i] else plain
        n = int(n_t[i])
        got, want = mixed.target_logits[i], ref.target_logits[i]
        if task != "classify":
            got, want = got[:n], want[:n]
        assert (got - want).abs().max().item() <= TOL, (task, i)
        assert abs(mixed.mixup_ratio[i].item() - ref.mixup_ratio[i].item()) <= TOL
    # The source stream is the translation's in every row.
    assert (mixed.source_logits - plain.source_logits).abs().max().item() <= TOL
    assert (mixed.target_logits[0] - plain.target_logits[0]).abs().max().item() > 1e-4


@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_unmixed_branch_is_the_served_mixing_off_answer(tiny_backbone, task: str) -> None:
    """forward(unmixed=True) returns, beside the unchanged mixed streams, exactly what a bundle
    with `no_source_fallback: unmixed` serves (predict with the mixing off)."""
    model = make_tiny_model(tiny_backbone, task, mixup_layer=2)
    t, s = random_batch([6, 9], seed=3), random_batch([8, 5], seed=4)
    with torch.no_grad():
        both = model(*t, *s, unmixed=True)
        mixed = model(*t, *s)
        served = model.predict(*t, mixup=False)
    assert mixed.unmixed_logits is None
    assert (both.target_logits - mixed.target_logits).abs().max().item() <= TOL
    key = {"classify": "probabilities", "tag": "logits", "qa": "start_logits"}[task]
    got = both.unmixed_logits
    if task == "classify":
        got = torch.softmax(got, dim=-1)
    elif task == "qa":
        got = got[..., 0]
    mask = t[1].bool() if task != "classify" else torch.ones(2, dtype=torch.bool)
    assert (got - served[key])[mask].abs().max().item() <= TOL
    # and it is not the mixed answer
    assert (both.unmixed_logits - both.target_logits).abs().max().item() > 1e-4


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_mixup_off_equals_plain_hf_encoder(tiny_backbone, tiny_xlmr_backbone, arch: str) -> None:
    from transformers import AutoModel

    backbone = tiny_backbone if arch == "bert" else tiny_xlmr_backbone
    model = make_tiny_model(backbone, "tag", sharpen=1.0)
    model.mixup = False
    hf = AutoModel.from_pretrained(str(backbone)).eval()
    ids, mask = random_batch([9, 4, 13], seed=7)
    with torch.no_grad():
        ours = model(ids, mask).target_last_hidden
        ref = hf(
            input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state
        mixed = model(ids, mask, mixup=True).target_last_hidden
    real = mask.bool()
    assert (ours[real] - ref[real]).abs().max().item() <= TOL
    # ...and the mix really changes the target stream (the test can fail).
    assert (mixed[real] - ref[real]).abs().max().item() > 1e-3


def test_hidden_states_for_cka(tiny_backbone) -> None:
    model = make_tiny_model(tiny_backbone, "classify", mixup_layer=2)
    t, s = random_batch([5, 7], seed=1), random_batch([6, 3], seed=2)
    with torch.no_grad():
        out = model(*t, *s, output_hidden_states=True)
    assert len(out.target_hidden_states) == len(out.source_hidden_states) == model.num_layers + 1
    assert torch.equal(out.target_hidden_states[-1], out.target_last_hidden)
    assert torch.equal(out.source_hidden_states[-1], out.source_last_hidden)
    # Below the mixup layer the target is untouched by the source; from it on, it is mixed.
    with torch.no_grad():
        other = model(*t, *random_batch([6, 3], seed=9), output_hidden_states=True)
    assert torch.equal(out.target_hidden_states[1], other.target_hidden_states[1])
    assert not torch.allclose(out.target_hidden_states[2], other.target_hidden_states[2])


def test_classify_predict_averages_probabilities(tiny_backbone) -> None:
    model = make_tiny_model(tiny_backbone, "classify")
    t, s = random_batch([5, 9, 3], seed=1), random_batch([6, 4, 8], seed=2)
    with torch.no_grad():
        fwd = model(*t, *s)
        probs = model.predict(*t, *s)["probabilities"]
        by_logits = model.predict(*t, *s, combine="logits")["probabilities"]
    want = (fwd.source_logits.softmax(-1) + fwd.target_logits.softmax(-1)) / 2
    assert (probs - want).abs().max().item() <= 1e-6
    want_logits = ((fwd.source_logits + fwd.target_logits) / 2).softmax(-1)
    assert (by_logits - want_logits).abs().max().item() <= 1e-6
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    with pytest.raises(UserError):
        model.predict(*t, *s, combine="max")


@pytest.mark.parametrize("task", ["tag", "qa"])
def test_predict_stops_source_at_mixup_layer(tiny_backbone, task: str) -> None:
    model = make_tiny_model(tiny_backbone, task, mixup_layer=2)
    lt, ls = 6, 11  # distinct lengths tell the streams apart in the hooks
    t, s = random_batch([lt, 4], seed=1), random_batch([ls, 9], seed=2)
    calls: list[tuple[str, int, int]] = []
    handles = []
    for i, layer in enumerate(model.layers):
        for part, mod in (("attn", layer.attention.self.query), ("ffn", layer.intermediate)):
            handles.append(
                mod.register_forward_hook(
                    lambda _m, args, _o, i=i, part=part: calls.append((part, i, args[0].shape[1]))
                )
            )
    with torch.no_grad():
        pred = model.predict(*t, *s)
    source_calls = {(part, i) for part, i, length in calls if length == ls}
    # Source: layer 1 fully, layer 2 (index 1) attention only, nothing above.
    assert source_calls == {("attn", 0), ("ffn", 0), ("attn", 1)}
    calls.clear()
    with torch.no_grad():
        fwd = model(*t, *s)  # training view: the source runs to the top
    assert {(p, i) for p, i, n in calls if n == ls} == {
        (p, i) for p in ("attn", "ffn") for i in range(model.num_layers)
    }
    for h in handles:
        h.remove()
    # Stopping early changes nothing in the target outputs.
    if task == "tag":
        assert (pred["logits"] - fwd.target_logits).abs().max().item() <= 1e-6
    else:
        assert (pred["start_logits"] - fwd.target_logits[..., 0]).abs().max().item() <= 1e-6
        assert (pred["end_logits"] - fwd.target_logits[..., 1]).abs().max().item() <= 1e-6
    assert pred["mixup_ratio"].shape == (2,) and bool((pred["mixup_ratio"] > 0).all())


@pytest.mark.parametrize("method", ["translate-train", "zero-shot"])
def test_target_only_baselines_ignore_source(tiny_backbone, method: str) -> None:
    model = make_tiny_model(tiny_backbone, "classify", method=method)
    t = random_batch([5, 8], seed=1)
    with torch.no_grad():
        a = model.predict(*t, *random_batch([6, 3], seed=2))
        b = model.predict(*t)
        fwd = model(*t, *random_batch([6, 3], seed=2))
    assert torch.equal(a["probabilities"], b["probabilities"])
    assert torch.equal(a["mixup_ratio"], torch.zeros(2))
    assert fwd.source_logits is None and torch.equal(fwd.mixup_ratio, torch.zeros(2))
    assert torch.allclose(b["probabilities"], fwd.target_logits.softmax(-1), atol=1e-6)


def test_translate_test_uses_source_only(tiny_backbone) -> None:
    model = make_tiny_model(tiny_backbone, "classify", method="translate-test")
    s = random_batch([6, 3], seed=2)
    with torch.no_grad():
        a = model.predict(*random_batch([5, 8], seed=1), *s)
        b = model.predict(*random_batch([9, 2], seed=4), *s)
        fwd = model(*random_batch([5, 8], seed=1), *s)
        alone = model.predict(*s)  # no source: the given inputs are the source
    assert torch.equal(a["probabilities"], b["probabilities"])
    assert torch.allclose(a["probabilities"], fwd.source_logits.softmax(-1), atol=1e-6)
    assert torch.allclose(alone["probabilities"], a["probabilities"], atol=1e-6)
    assert fwd.target_logits is None and torch.equal(a["mixup_ratio"], torch.zeros(2))


def test_translate_test_is_classification_only(tiny_backbone) -> None:
    with pytest.raises(UserError, match="translate-test"):
        make_tiny_model(tiny_backbone, "tag", method="translate-test")


def test_mixup_layer_out_of_range(tiny_backbone) -> None:
    with pytest.raises(UserError, match="mixup_layer 5"):
        make_tiny_model(tiny_backbone, "classify", mixup_layer=5)


def test_default_mixup_layer_scales_with_depth(tiny_backbone) -> None:
    assert make_tiny_model(tiny_backbone, "tag").config.mixup_layer == 1  # round(4/3)
    assert make_tiny_model(tiny_backbone, "qa").config.mixup_layer == 2  # round(4/2)
    assert make_tiny_model(tiny_backbone, "classify").config.mixup_layer == 3
