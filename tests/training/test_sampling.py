"""Scheduled sampling: the inverse-sigmoid schedule and the seeded per-step coin."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from training.sampling import DEFAULT_K, SamplingPlan, make_plan, p_real


def test_schedule_values() -> None:
    assert p_real(0, 1000) == pytest.approx(1000 / 1001)
    # p = 1/2 exactly where exp(step/k) = k, i.e. step = k ln k
    assert p_real(round(1000 * math.log(1000)), 1000) == pytest.approx(0.5, abs=1e-3)
    assert p_real(2000, 1000) == pytest.approx(1000 / (1000 + math.exp(2)))
    assert p_real(10**9, 1000) == 0.0  # no overflow far out
    values = [p_real(s, 1000) for s in range(0, 20000, 500)]
    assert all(a > b for a, b in itertools.pairwise(values))
    # QA decays twice as slowly
    assert DEFAULT_K == {"classify": 1000, "tag": 1000, "qa": 2000}
    assert p_real(8000, DEFAULT_K["qa"]) > p_real(8000, DEFAULT_K["classify"])
    with pytest.raises(ValueError):
        p_real(0, 0)


def test_draws_are_per_step_seeded_and_follow_p() -> None:
    plan = SamplingPlan(k=10, seed=7, fallback="noise")
    a = [plan.use_real(s) for s in range(200)]
    # same seed and step -> same coin, whatever the call order (resume, DDP ranks)
    assert a == [SamplingPlan(k=10, seed=7, fallback="noise").use_real(s) for s in range(200)]
    assert [plan.use_real(s) for s in reversed(range(200))] == a[::-1]
    other = [SamplingPlan(k=10, seed=8, fallback="noise").use_real(s) for s in range(200)]
    assert other != a
    # the coin varies from step to step (not once per epoch) and tracks p_real
    steps = range(0, 60)
    draws = np.array([plan.use_real(s) for s in steps], dtype=float)
    assert 0 < draws.sum() < len(draws)
    many = [SamplingPlan(k=10, seed=s, fallback="bt").use_real(23) for s in range(2000)]
    assert np.mean(many) == pytest.approx(p_real(23, 10), abs=0.04)
    # early steps are (almost) always real
    assert all(plan.use_real(s) for s in range(3))


def test_plan_fallbacks() -> None:
    assert make_plan("classify", has_bt=True, noise_p=0.0, seed=1).fallback == "bt"
    assert make_plan("tag", has_bt=False, noise_p=0.15, seed=1).fallback == "noise"
    real = make_plan("qa", has_bt=False, noise_p=0.0, seed=1)
    assert real.fallback == "real" and real.k == 2000
    assert all(real.use_real(s) for s in range(0, 50000, 997))
    assert real.p_real_at(10**6) == 1.0
    assert "real source is used at every step" in real.describe()
    assert "noisy source" in make_plan("tag", has_bt=False, noise_p=0.3, seed=1).describe()


def test_no_source_draw_is_seeded_per_item_and_follows_the_rate() -> None:
    off = make_plan("classify", has_bt=False, noise_p=0.0, seed=1)
    assert not off.no_source_items(5, 16).any()
    plan = make_plan("classify", has_bt=False, noise_p=0.0, seed=1, no_source_rate=0.25)
    a = plan.no_source_items(5, 16)
    assert a.shape == (16,) and a.dtype == bool
    # a pure function of (seed, step): resumes and DDP ranks draw the same items
    assert (plan.no_source_items(5, 16) == a).all()
    assert not all((plan.no_source_items(s, 16) == a).all() for s in range(6, 10))
    many = np.concatenate([plan.no_source_items(s, 16) for s in range(500)])
    assert many.mean() == pytest.approx(0.25, abs=0.02)
    # independent of the per-step coin: the real source still goes in at every step
    assert all(plan.use_real(s) for s in range(0, 5000, 97))
    assert "target as the source with probability 0.25" in plan.describe()
    assert "real source is used at every step" in plan.describe()


def test_self_mix_draw_is_seeded_and_independent_of_the_no_source_draw() -> None:
    off = make_plan("classify", has_bt=False, noise_p=0.0, seed=1)
    assert not off.self_mix_items(5, 16).any()
    plan = make_plan(
        "classify", has_bt=False, noise_p=0.0, seed=1, no_source_rate=0.25, self_mix_rate=0.25
    )
    a = plan.self_mix_items(5, 16)
    assert (plan.self_mix_items(5, 16) == a).all()
    many = np.concatenate([plan.self_mix_items(s, 16) for s in range(500)])
    assert many.mean() == pytest.approx(0.25, abs=0.02)
    other = np.concatenate([plan.no_source_items(s, 16) for s in range(500)])
    # two separate coins: about a quarter of one set falls in the other, not all of it
    assert (many & other).mean() == pytest.approx(0.0625, abs=0.015)
    assert "mixes with itself with probability 0.25" in plan.describe()


def test_self_mix_from_holds_the_draw_back_until_its_step() -> None:
    plain = make_plan("classify", has_bt=False, noise_p=0.0, seed=1, self_mix_rate=0.5)
    late = make_plan(
        "classify", has_bt=False, noise_p=0.0, seed=1, self_mix_rate=0.5, self_mix_from=200
    )
    assert not any(late.self_mix_items(s, 16).any() for s in range(200))
    # from its step on it is the same seeded draw as a plan that self-mixes from the start
    for s in (200, 201, 299):
        assert (late.self_mix_items(s, 16) == plain.self_mix_items(s, 16)).all()
    assert sum(plain.self_mix_items(s, 16).sum() for s in range(200)) > 1000
    assert "from step 200" in late.describe()
    assert "from step" not in plain.describe()


def test_self_mix_until_stops_the_draw_at_its_step() -> None:
    plain = make_plan("classify", has_bt=False, noise_p=0.0, seed=1, self_mix_rate=0.5)
    early = make_plan(
        "classify", has_bt=False, noise_p=0.0, seed=1, self_mix_rate=0.5, self_mix_until=150
    )
    for s in (0, 1, 149):
        assert (early.self_mix_items(s, 16) == plain.self_mix_items(s, 16)).all()
    assert not any(early.self_mix_items(s, 16).any() for s in range(150, 400))
    assert "until step 150" in early.describe()
