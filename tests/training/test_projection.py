"""Tags projected through a mutual-argmax word alignment (training/projection.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from training.projection import embed_words, mutual_argmax, project_tags
from training.pseudo_labels import resolve_target_labels


def _unit(rows: list[list[float]]) -> np.ndarray:
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_mutual_argmax_keeps_only_pairs_that_choose_each_other() -> None:
    source = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # t0 ~ s1, t1 ~ s0, t2 leans to s0 too but s0 prefers t1: t2 stays unaligned
    target = _unit([[0.1, 1, 0], [1, 0.05, 0], [0.9, 0.2, 0.3]])
    assert sorted(mutual_argmax(target, source)) == [(0, 1), (1, 0)]
    # a zero row (a word cut by truncation) is never aligned
    target[0] = 0
    assert sorted(mutual_argmax(target, source)) == [(1, 0)]
    assert mutual_argmax(target[:0], source) == []


def test_identical_sentences_align_word_for_word(tiny_backbone: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(tiny_backbone)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_backbone))
    words = ["Der", "Hund", "schläft", "heute", "im", "Garten", "."]
    vecs = embed_words(model, tok, [words, words[:3]], layer=1)
    assert [v.shape[0] for v in vecs] == [7, 3]
    assert np.allclose(np.linalg.norm(vecs[0], axis=1), 1.0, atol=1e-5)
    assert mutual_argmax(vecs[0], vecs[0]) == [(i, i) for i in range(7)]


def test_projected_labels_carry_the_source_tags(tiny_backbone: Path) -> None:
    labels = ["DET", "NOUN", "PUNCT", "VERB"]
    rec = {
        "id": "a",
        "lang": "de",
        "target_tokens": ["the", "dog", "sleeps", "."],
        "source_tokens": ["the", "dog", "sleeps", "."],
        "source_tags": ["DET", "NOUN", "VERB", "PUNCT"],
    }
    out, stats = project_tags([rec], tiny_backbone, labels, layer=1, progress=False)
    probs = np.array(out[0]["target_tag_probs"])
    assert probs.shape == (4, 4) and stats["coverage"] == 1.0
    assert [labels[i] for i in probs.argmax(axis=1)] == rec["source_tags"]
    # through the trainer's entry point: soft labels, trained with the pseudo-label loss
    recs, mode = resolve_target_labels(
        [rec], labels, task="tag", method="translate-train", requested="projected",
        teacher=None, backbone=str(tiny_backbone),
    )  # fmt: skip
    assert mode == "pseudo" and np.array(recs[0]["target_tag_probs"]).sum() >= 3


def test_project_tags_command_writes_a_file_training_reads(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    import json

    from training.data.schema import read_jsonl
    from xmixup.cli import main

    rows = [
        {
            "id": f"t{i}",
            "lang": "de",
            "target_tokens": words,
            "source_tokens": words[::-1],
            "source_tags": tags[::-1],
        }
        for i, (words, tags) in enumerate(
            [
                (["der", "Hund", "."], ["DET", "NOUN", "PUNCT"]),
                (["ein", "sehr", "kleines", "Haus", "!"], ["DET", "ADV", "ADJ", "NOUN", "PUNCT"]),
            ]
        )
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = ["project-tags", "--data", str(src), "--out", str(out)]
    assert main([*argv, "--backbone", str(tiny_backbone), "--layer", "1"]) == 0
    records, report = read_jsonl(out, "tag")  # zero rows (unaligned words) are valid
    assert len(records) == 2 and not report.n_skipped
    labels = ["ADJ", "ADV", "DET", "NOUN", "PUNCT"]
    assert sum(np.array(r.target_tag_probs).sum() for r in records) >= 4  # most words aligned
    for rec, row in zip(records, rows, strict=True):
        probs = np.array(rec.target_tag_probs)
        assert probs.shape == (len(row["target_tokens"]), len(labels))
        assert set(probs.sum(axis=1)) <= {0.0, 1.0}
        # reversed sources: an aligned word's tag is its own (the same word, mirrored)
        for t in np.flatnonzero(probs.sum(axis=1)):
            assert labels[probs[t].argmax()] == row["source_tags"][len(row["source_tags"]) - 1 - t]
