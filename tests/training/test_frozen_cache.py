"""The frozen-layer cache: training with it equals training without it (losses, gradients)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.tiny import make_tiny_model, pad_items  # noqa: E402
from training.freeze import freeze  # noqa: E402
from training.frozen_cache import FrozenFeatureCache  # noqa: E402

# Items are drawn from a pool of 5, in batches of different widths: later batches repeat
# items, some wider than the batch that stored them (the row is then recomputed).
POOL_LENGTHS = [4, 9, 6, 12, 3]
BATCHES = [[0, 1], [1, 2], [0, 3], [2, 4], [4, 1], [3, 0, 2]]


def _pool(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 600, (n,), generator=g) for n in POOL_LENGTHS]


def _losses_and_grads(backbone, task: str, cache_mb: float) -> tuple[list[float], list, object]:
    model = make_tiny_model(backbone, task, mixup_layer=3)
    freeze(model, embeddings=True, layers=2, cache_mb=cache_mb)
    model.train()
    targets, sources = _pool(1), _pool(2)
    losses: list[float] = []
    grads = []
    for step, rows in enumerate(BATCHES):
        t = pad_items([targets[r] for r in rows])
        s = pad_items([sources[r] for r in rows])
        torch.manual_seed(100 + step)  # the same dropout masks in the trained layers
        out = model(*t, *s)
        loss = out.target_logits.float().pow(2).mean() + out.source_logits.float().pow(2).mean()
        model.zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(
            [p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None]
        )
    return losses, grads, model.frozen_cache


@pytest.mark.parametrize("task", ["classify", "qa"])
def test_cached_training_equals_uncached(tiny_backbone, task: str) -> None:
    base_losses, base_grads, none = _losses_and_grads(tiny_backbone, task, cache_mb=0)
    assert none is None
    losses, grads, cache = _losses_and_grads(tiny_backbone, task, cache_mb=64)
    assert isinstance(cache, FrozenFeatureCache)
    # Two streams x (2+2+2+2+2+3) rows; 10 distinct items, so every other visit hits.
    assert cache.hits > 0 and cache.misses > 0
    assert cache.hits + cache.misses == 2 * sum(len(b) for b in BATCHES)
    assert cache.stats()["rows"] == 10 and cache.used_bytes > 0
    assert losses == pytest.approx(base_losses, rel=1e-5, abs=1e-6)
    for step, (got, want) in enumerate(zip(grads, base_grads, strict=True)):
        assert len(got) == len(want) > 0
        for g, w in zip(got, want, strict=True):
            diff = (g - w).abs().max().item()
            assert diff <= 1e-5 * max(1.0, w.abs().max().item()), (step, diff)


def test_rows_are_padding_exact_and_recomputed_when_a_batch_is_wider() -> None:
    """A pad position's value is kept, so a row read into a narrower batch is exact; a wider
    batch recomputes it."""
    calls: list[int] = []

    def compute(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(ids.shape[0])
        # position-dependent, pads included, like a real encoder's output at pad positions
        pos = torch.arange(ids.shape[1], dtype=torch.float32)
        return (ids.float()[..., None] + pos[None, :, None]).expand(-1, -1, 2).clone()

    cache = FrozenFeatureCache(budget_bytes=10_000)
    a = pad_items([torch.tensor([7, 8, 9]), torch.tensor([5, 6, 7, 8, 9, 10])])
    first = cache.fetch(*a, compute)
    assert calls == [2] and torch.equal(first, compute(*a))
    narrow = pad_items([torch.tensor([7, 8, 9]), torch.tensor([11, 12, 13, 14])])
    calls.clear()
    got = cache.fetch(*narrow, compute)
    assert calls == [1]  # only the new item
    assert torch.equal(got[0], first[0, :4])  # the stored row, pads included
    wide = pad_items([torch.tensor([7, 8, 9]), torch.tensor(list(range(20, 28)))])
    calls.clear()
    cache.fetch(*wide, compute)
    assert calls == [2]  # the stored row is 6 wide, this batch 8: recomputed
    assert cache.rows[torch.tensor([7, 8, 9]).numpy().tobytes()].shape[0] == 8


def test_budget_and_left_padding_fall_back_to_computing() -> None:
    def compute(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return ids.float()[..., None].clone()

    full = FrozenFeatureCache(budget_bytes=0)
    batch = pad_items([torch.tensor([5, 6]), torch.tensor([7])])
    assert torch.equal(full.fetch(*batch, compute), compute(*batch))
    assert full.rows == {} and full.used_bytes == 0
    cache = FrozenFeatureCache(budget_bytes=1 << 20)
    left = (torch.tensor([[1, 5, 6]]), torch.tensor([[0, 1, 1]]))
    assert torch.equal(cache.fetch(*left, compute), compute(*left))
    assert cache.rows == {} and cache.hits == cache.misses == 0


def test_evaluation_and_hidden_states_bypass_the_cache(tiny_backbone) -> None:
    model = make_tiny_model(tiny_backbone, "classify", mixup_layer=3)
    freeze(model, embeddings=True, layers=2, cache_mb=64)
    items = pad_items(_pool(3)[:2])
    model.eval()
    with torch.no_grad():
        model(*items, *items)
    model.train()
    with torch.no_grad():
        model(*items, *items, output_hidden_states=True)
    assert model.frozen_cache is not None and model.frozen_cache.rows == {}
