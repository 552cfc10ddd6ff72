"""Featurisation: pair encoding, first-sub-token labels, QA windows / answer positions / offsets."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from training.collate import Collator  # noqa: E402
from training.data.noise import SourceNoise  # noqa: E402
from training.features import IGNORE_INDEX, Featurizer, source_only, target_as_source  # noqa: E402


@pytest.fixture(scope="module")
def tok(tiny_backbone: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_backbone))


def test_classify_pairs_truncation_and_label(tok) -> None:
    rec = {
        "id": "a",
        "lang": "de",
        "target": "Die Katze sitzt auf der Matte.",
        "target_pair": "Ein Mann spielt.",
        "source": "The cat sits on the mat.",
        "source_pair": "A man plays.",
        "label": "yes",
    }
    f = Featurizer("classify", tok, labels=["no", "yes"], max_length=12)([rec])[0]
    full = tok(rec["target"], rec["target_pair"])["input_ids"]
    assert len(full) > 12 and len(f["target_input_ids"]) == 12  # truncated to max_length
    assert (
        f["target_input_ids"]
        == tok(rec["target"], rec["target_pair"], truncation="longest_first", max_length=12)[
            "input_ids"
        ]
    )
    assert (
        f["source_input_ids"]
        == tok(rec["source"], rec["source_pair"], truncation=True, max_length=12)["input_ids"]
    )
    assert f["target_labels"] == f["source_labels"] == 1
    assert f["alt_source_input_ids"] is None  # no bt, no noise -> nothing to substitute
    # a back-translation becomes the stand-in
    f2 = Featurizer("classify", tok, labels=["no", "yes"])(
        [{**rec, "source_bt": "The cat is on a mat.", "source_bt_pair": "A man is playing."}]
    )[0]
    assert (
        f2["alt_source_input_ids"] == tok("The cat is on a mat.", "A man is playing.")["input_ids"]
    )


def test_tag_labels_on_first_subtoken_and_soft_labels(tok) -> None:
    rec = {
        "id": "t",
        "lang": "de",
        "target_tokens": ["Angela", "läuft", "Berlin"],
        "target_tags": ["B-PER", "O", "B-LOC"],
        "source_tokens": ["Angela", "runs", "Berlin"],
        "source_tags": ["B-PER", "O", "B-LOC"],
        "target_tag_probs": [[0.1, 0.9, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]],
    }
    labels = ["B-LOC", "B-PER", "O"]
    f = Featurizer("tag", tok, labels=labels, target_label_mode="pseudo")([rec])[0]
    enc = tok(rec["target_tokens"], is_split_into_words=True)
    word_ids = enc.word_ids()
    assert len(word_ids) > len(rec["target_tokens"]) + 2  # some words split into sub-tokens
    expected: list[int] = []
    prev = None
    for w in word_ids:
        expected.append(
            labels.index(str(rec["target_tags"][w]))
            if w is not None and w != prev
            else IGNORE_INDEX
        )
        prev = w
    assert f["target_labels"] == expected
    assert sum(x != IGNORE_INDEX for x in f["target_labels"]) == 3
    first = [i for i, x in enumerate(f["target_labels"]) if x != IGNORE_INDEX]
    assert f["target_soft_labels"][first[1]].tolist() == pytest.approx([0.2, 0.2, 0.6])
    assert f["target_soft_labels"].sum() == pytest.approx(3.0)  # zero rows elsewhere
    assert [f["target_word_index"][i] for i in first] == [0, 1, 2]
    # pseudo mode without probabilities is refused with a hint
    from xmixup.errors import UserError

    with pytest.raises(UserError, match="target_tag_probs"):
        Featurizer("tag", tok, labels=labels, target_label_mode="pseudo")(
            [{**rec, "target_tag_probs": None}]
        )


def test_qa_windows_answer_positions_and_offsets(tok) -> None:
    context = (
        " ".join(["The river flows slowly through the old town."] * 6)
        + " The station is in Berlin."
    )
    src_ctx = "The station is in Berlin near the park."
    rec = {
        "id": "q",
        "lang": "en",
        "question": "Where is the station?",
        "context": context,
        "answers": [{"text": "Berlin", "answer_start": context.index("Berlin")}],
        "source_question": "Where is the station?",
        "source_context": src_ctx,
        "source_answers": [{"text": "Berlin", "answer_start": src_ctx.index("Berlin")}],
    }
    feats = Featurizer("qa", tok, max_length=48, doc_stride=16, max_query_length=16)([rec])
    assert len(feats) >= 3  # doc-stride windows
    hits = [f for f in feats if f["target_start_positions"] != 0]
    assert hits and any(f["target_start_positions"] == 0 for f in feats)  # outside -> CLS
    for f in hits:
        s, e = f["target_start_positions"], f["target_end_positions"]
        c0, c1 = f["offsets"][s][0], f["offsets"][e][1]
        assert context[c0:c1].strip() == "Berlin"
    for f in feats:
        assert len(f["target_input_ids"]) <= 48
        assert f["offsets"][0] is None  # CLS and question tokens carry no context offsets
        assert f["source_input_ids"] == feats[0]["source_input_ids"]  # source: first window only
    s, e = feats[0]["source_start_positions"], feats[0]["source_end_positions"]
    src_offsets = tok("Where is the station?", src_ctx, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    assert src_ctx[src_offsets[s][0] : src_offsets[e][1]].strip() == "Berlin"
    assert feats[0]["source_has_labels"] is True


def test_noise_stand_in_and_collator(tok) -> None:
    recs = [
        {"id": f"r{i}", "lang": "de", "target": t, "source": s, "label": "a"}
        for i, (t, s) in enumerate(
            [
                ("Ein Hund.", "A dog runs across the green field today."),
                ("Zwei Katzen sitzen hier.", "Two cats sit here."),
            ]
        )
    ]
    noise = SourceNoise.for_records(recs, "classify", p=1.0, seed=3)
    feats = Featurizer("classify", tok, labels=["a", "b"], noise=noise)(recs)
    assert all(f["alt_source_input_ids"] is not None for f in feats)
    assert feats[0]["alt_source_input_ids"] != feats[0]["source_input_ids"]
    batch = Collator("classify", pad_id=1)(feats)
    lengths = [len(f["target_input_ids"]) for f in feats]
    assert batch["target_input_ids"].shape == (2, max(lengths))
    short = lengths.index(min(lengths))
    assert batch["target_input_ids"][short, min(lengths) :].eq(1).all()  # padded with pad id
    assert batch["target_attention_mask"].sum(1).tolist() == lengths
    assert batch["alt_is_real"].tolist() == [False, False]
    assert batch["source_is_original"].tolist() == [True, True]
    # no stand-in: the collator repeats the real source and marks it real
    plain = Collator("classify")(Featurizer("classify", tok, labels=["a", "b"])(recs))
    assert torch.equal(plain["alt_source_input_ids"], plain["source_input_ids"])
    assert plain["alt_is_real"].tolist() == [True, True]
    # eval sweep: noise replaces the source, which is then no longer the original
    swept = Featurizer("classify", tok, labels=["a", "b"], noise=noise, noise_replaces_source=True)(
        recs
    )
    assert swept[0]["source_is_original"] is False
    assert swept[0]["source_input_ids"] == feats[0]["alt_source_input_ids"]


def test_views() -> None:
    rec = {"target": "x", "source": "y", "source_pair": None, "label": "a", "source_bt": "z"}
    assert source_only(rec, "classify")["target"] == "y"
    view = target_as_source(rec, "classify")
    assert view["source"] == "x" and view["source_bt"] is None
