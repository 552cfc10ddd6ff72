"""Source-noise surrogate: determinism, identity at p=0, rate ≈ p, aligned tags, QA spans."""

from __future__ import annotations

import random

import pytest

from training.data.noise import SourceNoise, Vocabulary, source_vocabulary

WORDS = [f"w{i}" for i in range(50)]


def _sentence(rng: random.Random, n: int = 12) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def test_deterministic_given_seed_key_step() -> None:
    vocab = Vocabulary.from_token_lists([WORDS])
    toks = WORDS[:20]
    a = SourceNoise(0.3, seed=1, vocab=vocab).tokens(toks, key="x", step=5)
    b = SourceNoise(0.3, seed=1, vocab=vocab).tokens(toks, key="x", step=5)
    assert a == b
    others = [
        SourceNoise(0.3, seed=2, vocab=vocab).tokens(toks, key="x", step=5),
        SourceNoise(0.3, seed=1, vocab=vocab).tokens(toks, key="y", step=5),
        SourceNoise(0.3, seed=1, vocab=vocab).tokens(toks, key="x", step=6),
    ]
    assert all(o.tokens != a.tokens for o in others)


def test_p_zero_is_identity() -> None:
    noise = SourceNoise(0.0, seed=3)
    text = "An  odd\tspaced   sentence."
    assert noise.text(text, key="k") == text
    out = noise.tokens(["a", "b"], ["X", "Y"], key="k")
    assert (out.tokens, out.tags, out.n_edits) == (["a", "b"], ["X", "Y"], 0)
    rec = {"id": "1", "source": "Hello there", "source_pair": "Yes"}
    assert noise.apply(rec, "classify") == rec | {
        "source_bt": "Hello there",
        "source_bt_pair": "Yes",
    }


def test_edit_rate_close_to_p_and_monotone() -> None:
    rng = random.Random(0)
    sents = [_sentence(rng) for _ in range(1500)]
    vocab = Vocabulary.from_token_lists(sents)
    for p in (0.1, 0.3):
        noise = SourceNoise(p, seed=7, vocab=vocab)
        outs = [noise.tokens(s, key=str(i)) for i, s in enumerate(sents)]
        edits = sum(o.n_edits for o in outs)
        n_words = sum(len(s) for s in sents)
        assert abs(edits / n_words - p) < 0.015, (p, edits / n_words)
        # Each op is used about a third of the time.
        for count in (sum(o.n_dropped for o in outs), sum(o.n_swapped for o in outs),
                      sum(o.n_substituted for o in outs)):  # fmt: skip
            assert abs(count / edits - 1 / 3) < 0.05
        dropped = sum(len(s) - len(o.tokens) for s, o in zip(sents, outs, strict=True))
        assert dropped == sum(o.n_dropped for o in outs)
    # Monotone in p: with the same (seed, key), every word dropped at 0.1 is dropped at 0.3.
    low = SourceNoise(0.1, seed=7, vocab=vocab, ops=["drop"]).tokens(WORDS, key="m")
    high = SourceNoise(0.3, seed=7, vocab=vocab, ops=["drop"]).tokens(WORDS, key="m")
    assert set(high.origin) <= set(low.origin) and len(high.origin) < len(low.origin)


def test_tags_stay_aligned() -> None:
    # Tag = the word upper-cased, so alignment is checkable for every output position.
    rng = random.Random(1)
    vocab = Vocabulary.from_token_lists([WORDS])
    noise = SourceNoise(0.5, seed=0, vocab=vocab)
    n_subst = 0
    for i in range(200):
        toks = _sentence(rng, 10)
        out = noise.tokens(toks, [t.upper() for t in toks], key=str(i))
        assert out.tags is not None and len(out.tags) == len(out.tokens) >= 1
        for j, (tok, tag) in enumerate(zip(out.tokens, out.tags, strict=True)):
            if j in out.substituted:
                # Substituted word keeps its slot's tag (documented choice).
                assert tag == toks[out.origin[j]].upper() and tok != toks[out.origin[j]]
                n_subst += 1
            else:
                assert tag == tok.upper()
        # swaps move at most max_shift per swap; the order otherwise survives
        assert sorted(out.origin) == sorted(set(out.origin))
    assert n_subst > 0


def test_swap_is_local_and_never_empties() -> None:
    noise = SourceNoise(1.0, seed=0, ops=["swap"])
    out = noise.tokens([str(i) for i in range(6)], key="s")
    assert sorted(out.tokens) == [str(i) for i in range(6)] and out.n_swapped > 0
    only = SourceNoise(1.0, seed=0, ops=["drop"]).tokens(["a", "b", "c"], key="d")
    assert only.tokens == ["a"]  # all drawn for dropping: the first word is kept


def test_qa_answers_still_found_in_noisy_context() -> None:
    rng = random.Random(2)
    items = []
    for i in range(300):
        words = _sentence(rng, 30)
        sep = "  " if i % 3 == 0 else " "  # odd whitespace too: kept verbatim inside answers
        context = sep.join(words)
        starts = [sum(len(w) + len(sep) for w in words[:k]) for k in range(len(words))]
        if i % 2:  # a three-word answer
            start, end = starts[10], starts[12] + len(words[12])
        else:  # an answer starting mid-word
            start, end = starts[5] + 1, starts[5] + len(words[5])
        answer = context[start:end]
        items.append(
            {
                "id": str(i),
                "source_question": "what is " + words[3],
                "source_context": context,
                "source_answers": [{"text": answer, "answer_start": start}],
            }
        )
    noise = SourceNoise.for_records(items, "qa", 0.4, seed=5)
    changed = 0
    for rec in items:
        out = noise.apply(rec, "qa", step=3)
        ctx = out["source_bt_context"]
        for ans in out["source_bt_answers"]:
            assert ctx[ans["answer_start"] : ans["answer_start"] + len(ans["text"])] == ans["text"]
        changed += ctx != rec["source_context"]
    assert changed > 250


def test_apply_tagging_and_real_bt_kept() -> None:
    rec = {"id": "t", "source_tokens": ["a", "b", "c", "d"], "source_tags": ["A", "B", "C", "D"]}
    noise = SourceNoise.for_records([rec], "tag", 1.0, seed=0)
    out = noise.apply(rec, "tag")
    assert len(out["source_bt_tokens"]) == len(out["source_bt_tags"])
    assert out["source_bt_tokens"] != rec["source_tokens"]
    real = {"id": "c", "source": "x y", "source_bt": "real back-translation"}
    assert noise.apply(real, "classify")["source_bt"] == "real back-translation"
    assert len(source_vocabulary([rec], "tag")) == 4
    with pytest.raises(ValueError):
        SourceNoise(1.5)
