"""Small bundles: a trimmed bundle with the default's int8 storage answers as its fp32 parent.

Tiny XLM-R checkpoints (padding-based position ids: the pad id must not move when ids are
remapped) are exported twice: the fp32 parent, and a child with the default CLI bundle's
storage (int8 embedding rows, every weight matrix stored int8: the size floor is lowered, as
the tiny matrices are all under it) and the vocabulary trimmed to Latin-script pieces plus
those a multilingual sample uses. Both go
through verify-bundle and the service in one app; on the sample the child's labels and spans
equal the parent's and its tags agree on at least 99 % of words. Text whose pieces were
dropped is read as kept pieces or ``<unk>``, never an error.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_export.onnx_export import export_bundle
from model_export.vocab_trim import piece_rates, plan_vocab, write_trimmed_tokenizer
from tests.tiny import make_tiny_checkpoint
from xmixup.core.bundle import load_bundle
from xmixup.core.runner import Runner
from xmixup.core.special_tokens import read_special_tokens

pytestmark = pytest.mark.integration

LABELS = {"classify": ["negative", "neutral", "positive"], "tag": ["O", "B-PER", "I-PER"]}
SAMPLE = [
    ("Die Katze sitzt auf der Matte.", "The cat sits on the mat."),
    ("El gato está sentado en la alfombra.", "The cat is sitting on the rug."),
    ("Кошка сидит на коврике.", "The cat sits on the mat."),
    ("猫坐在垫子上。", "The cat sits on the mat."),
    ("Anna wohnt seit 2019 in Hamburg.", "Anna has lived in Hamburg since 2019."),
]
OUTSIDE = "ქართული ენა"  # Georgian: neither Latin nor in the sample


@pytest.fixture(scope="module")
def bundles(tiny_xlmr_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shrink")
    corpus = root / "sample.jsonl"
    corpus.write_text(
        "".join(json.dumps({"target": t, "source": s}) + "\n" for t, s in SAMPLE),
        encoding="utf-8",
    )
    extra: dict[str, dict[str, Any]] = {
        "qa": {"max_length": 64, "doc_stride": 16, "max_query_length": 16}
    }
    for task in ("classify", "tag", "qa"):
        ckpt = make_tiny_checkpoint(
            root / f"ckpt-{task}",
            task,
            LABELS.get(task, []),
            backbone_dir=tiny_xlmr_backbone,
            seed=5,
            **extra.get(task, {}),
        )
        # the parent unfused: exporting is the slow part of this test, and it is exact
        export_bundle(ckpt, root / "models" / f"{task}-fp32", optimize=False)
        export_bundle(
            ckpt,
            root / "models" / f"{task}-small",
            embeddings="int8",
            weights="int8",
            weights_min_elements=1024,
            vocab_scripts=["latin"],
            vocab_corpus=[corpus],
        )
    return root / "models"


def test_child_bundle_records_what_was_done(bundles: Path) -> None:
    parent = load_bundle(bundles / "tag-fp32")
    child = load_bundle(bundles / "tag-small")
    Runner.for_bundle(child)  # verify-bundle's load: checksums, session, I/O names
    pv, cv = parent.manifest.vocabulary, child.manifest.vocabulary
    assert pv is not None and cv is not None
    assert pv.size == pv.source_size and pv.embedding_precision == "fp32"
    assert cv.embedding_precision == "int8" and cv.scripts == ["LATIN"]
    assert cv.corpus == ["sample.jsonl"] and cv.source_size == pv.size > cv.size
    # special tokens as the trimmed tokenizer numbers them; the pad id did not move
    assert child.manifest.special_tokens == read_special_tokens(child.tokenizer_path)
    assert child.pad_id == parent.pad_id == 1
    assert child.manifest.files["model.onnx"].size < parent.manifest.files["model.onnx"].size
    # every matrix of the encoder went int8 on disk (Q, K, V, output and both FFN ones per layer)
    assert child.manifest.export["weights"]["matrices"] >= 6 * 2
    assert parent.manifest.export.get("weights") is None
    # the model card (checksummed with the rest) says what was kept and what that costs
    card = (child.path / "README.md").read_text(encoding="utf-8")
    assert f"{cv.size} of {cv.source_size} pieces (scripts LATIN); int8 embedding rows" in card
    assert "reads as `<unk>`" in card
    parent_card = (parent.path / "README.md").read_text(encoding="utf-8")
    assert f"all {pv.size} pieces; fp32 embedding rows" in parent_card
    assert "<unk>" not in parent_card


def test_token_outside_the_trimmed_vocabulary_reads_as_unk(bundles: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    child = Tokenizer.from_file(str(bundles / "tag-small" / "tokenizer.json"))
    unk = child.token_to_id("<unk>")
    ids = child.encode(OUTSIDE, add_special_tokens=False).ids
    assert unk in ids and all(0 <= i < child.get_vocab_size() for i in ids)
    # every sample piece survived: the sample is segmented exactly as by the full vocabulary
    full = Tokenizer.from_file(str(bundles.parent / "ckpt-tag" / "checkpoint" / "tokenizer.json"))
    for text, _ in SAMPLE:
        assert child.encode(text).tokens == full.encode(text).tokens
    # the rule itself: scripts only, no corpus → Cyrillic and Han become <unk> or are dropped
    plan = plan_vocab(bundles.parent / "ckpt-tag" / "checkpoint" / "tokenizer.json", ["LATIN"])
    write_trimmed_tokenizer(
        bundles.parent / "ckpt-tag" / "checkpoint" / "tokenizer.json", tmp_path / "t.json", plan
    )
    latin = Tokenizer.from_file(str(tmp_path / "t.json"))
    assert latin.encode(SAMPLE[0][0]).tokens == full.encode(SAMPLE[0][0]).tokens
    assert latin.token_to_id("<unk>") in latin.encode(SAMPLE[3][0]).ids
    # the rates the bench reports: none for German, some for Chinese under a Latin vocabulary
    source = bundles.parent / "ckpt-tag" / "checkpoint" / "tokenizer.json"
    german = piece_rates(source, plan, [SAMPLE[0][0]]).as_dict()
    chinese = piece_rates(source, plan, [SAMPLE[3][0]]).as_dict()
    assert german["dropped_piece_rate"] == german["unk_rate"] == 0 and german["tokens"] > 0
    assert chinese["dropped_piece_rate"] > 0 and chinese["unk_rate"] > 0


def _answers(bundles: Path) -> dict[str, Any]:
    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(models_dir=bundles, max_wait_ms=0, log_json=False))
    texts = [{"target": t, "source": s} for t, s in SAMPLE] + [{"target": OUTSIDE}]
    qa = [
        {
            "question": "Wo wohnt Anna?",
            "context": SAMPLE[4][0],
            "source_question": "Where does Anna live?",
            "source_context": SAMPLE[4][1],
        },
        {"question": "Wer sitzt?", "context": SAMPLE[0][0] + " " + SAMPLE[1][0]},
        {"question": "Кто сидит?", "context": SAMPLE[2][0] + " " + OUTSIDE},
    ]
    out: dict[str, Any] = {}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for kind in ("fp32", "small"):
                    for task, inputs in (("classify", texts), ("tag", texts), ("qa", qa)):
                        body = {"inputs": inputs, "model": f"{task}-{kind}", "top_k": 3}
                        if task != "qa":
                            body.pop("top_k")
                        r = await c.post(f"/{task}", json=body)
                        assert r.status_code == 200, r.text
                        out[f"{task}-{kind}"] = r.json()["results"]

    asyncio.run(run())
    return out


def test_service_answers_like_the_fp32_parent(bundles: Path) -> None:
    got = _answers(bundles)
    # the Georgian item (last) is outside the kept pieces: answered, not compared
    parent, child = got["classify-fp32"][:-1], got["classify-small"][:-1]
    assert [r["label"] for r in child] == [r["label"] for r in parent]
    words = agree = 0
    for p, c in zip(got["tag-fp32"][:-1], got["tag-small"][:-1], strict=True):
        assert [t["text"] for t in c["tokens"]] == [t["text"] for t in p["tokens"]]
        words += len(p["tokens"])
        agree += sum(a["tag"] == b["tag"] for a, b in zip(p["tokens"], c["tokens"], strict=True))
    assert words > 20 and agree / words >= 0.99
    for p, c in zip(got["qa-fp32"][:2], got["qa-small"][:2], strict=True):
        assert (c["answers"][0]["start"], c["answers"][0]["end"]) == (
            p["answers"][0]["start"],
            p["answers"][0]["end"],
        )
    assert got["qa-small"][2]["answers"]  # a context with dropped pieces still answers
