"""Converters on small hand-made files, leakage-safe splits, the CLI, and (when present) the
real shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.classification import convert_row_aligned, convert_sib200
from training.data.conllu import convert_conllu, convert_pud, read_conllu
from training.data.schema import read_jsonl
from training.data.splits import (
    deterministic_sample,
    in_hash_split,
    parse_rows,
    shared_groups,
    split_by_group,
)
from training.data.squad import convert_squad
from xmixup.cli import main
from xmixup.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not present")


# ------------------------------------------------------------------------------- fixtures
def _sib(root: Path) -> Path:
    rows = {
        "eng_Latn": [("7", "sports", "The team won."), ("9", "health", "Eat well.")],
        "deu_Latn": [("9", "health", "Iss gut."), ("7", "sports", "Das Team gewann."),
                     ("8", "travel", "Kein Englisch.")],
    }  # fmt: skip
    for lang, items in rows.items():
        d = root / "sib200" / lang
        d.mkdir(parents=True)
        lines = ["index_id\tcategory\ttext"] + ["\t".join(r) for r in items]
        (d / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "sib200"


def _conllu_sent(sid: str, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"# sent_id = {sid}", "# text = x"]
    lines += [f"{i}\t{form}\t_\t{upos}\t_\t_\t0\t_\t_\t_" for i, form, upos in rows]
    return "\n".join(lines) + "\n\n"


def _pud(root: Path) -> Path:
    en = _conllu_sent("s1", [("1", "The", "DET"), ("2", "cat", "NOUN")]) + _conllu_sent(
        "s2", [("1", "Go", "VERB"), ("2", "!", "PUNCT")]
    )
    # German: a multiword token range line (1-2 "zum") and an empty node (2.1) to skip.
    de = _conllu_sent(
        "s1", [("1-2", "zum", "_"), ("1", "zu", "ADP"), ("2", "dem", "DET"), ("2.1", "e", "_"),
               ("3", "Kater", "NOUN")]
    ) + _conllu_sent("s2", [("1", "Geh", "VERB")])  # fmt: skip
    # Icelandic: same ids, different order; s3 has no English counterpart.
    is_ = (
        _conllu_sent("s2", [("1", "Farðu", "VERB")])
        + _conllu_sent("s1", [("1", "Kötturinn", "NOUN")])
        + _conllu_sent("s3", [("1", "Ekkert", "PRON")])
    )
    for lang, name, text in (("en", "English", en), ("de", "German", de), ("is", "Icelandic", is_)):
        d = root / "ud_pud" / f"UD_{name}-PUD"
        d.mkdir(parents=True)
        (d / f"{lang}_pud-ud-test.conllu").write_text(text, encoding="utf-8")
    return root / "ud_pud"


def _squad_file(
    path: Path, articles: list[tuple[str, str, list[tuple[str, str, str, int]]]]
) -> None:
    data = [
        {
            "title": title,
            "paragraphs": [
                {
                    "context": ctx,
                    "qas": [
                        {"id": qid, "question": q, "answers": [{"text": a, "answer_start": s}]}
                        for qid, q, a, s in qas
                    ],
                }
            ],
        }
        for title, ctx, qas in articles
    ]
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


def _xquad(root: Path) -> Path:
    d = root / "xquad"
    d.mkdir()
    _squad_file(
        d / "xquad.en.json",
        [("Cats", "Cats purr loudly.", [("q1", "What do cats do?", "purr", 5)]),
         ("Dogs", "Dogs bark.", [("q2", "What do dogs do?", "bark", 5)])],
    )  # fmt: skip
    _squad_file(
        d / "xquad.de.json",
        [("Cats", "Katzen schnurren laut.", [("q1", "Was tun Katzen?", "schnurren", 7)]),
         ("Dogs", "Hunde bellen.", [("q2", "Was tun Hunde?", "bellen", 0)]),   # wrong offset
         ("Fish", "Fische.", [("q9", "Was?", "Fische", 0)])],  # no English counterpart
    )  # fmt: skip
    return d


# ------------------------------------------------------------------------------ converters
def test_sib200_join_on_index_id(tmp_path: Path) -> None:
    root = _sib(tmp_path)
    res = convert_sib200(root, langs=["deu_Latn"])
    assert [(r["id"], r["lang"], r["target"], r["source"], r["label"]) for r in res.records] == [
        ("sib200-train-9-de", "de", "Iss gut.", "Eat well.", "health"),
        ("sib200-train-7-de", "de", "Das Team gewann.", "The team won.", "sports"),
    ]
    assert res.skipped == {"no English item with this index_id (de)": 1}
    # English as a language: target = source (zero-shot data).
    en = convert_sib200(root, langs=["en"]).records
    assert all(r["target"] == r["source"] for r in en) and len(en) == 2
    with pytest.raises(UserError, match="no data for language"):
        convert_sib200(root, langs=["fr"])
    with pytest.raises(UserError, match="no split"):
        convert_sib200(root, split="validation")


def test_xnli_and_pawsx_rows(tmp_path: Path) -> None:
    for fmt in ("xnli", "pawsx"):
        (tmp_path / fmt).mkdir()
    x = tmp_path / "xnli"
    (x / "dev-en.tsv").write_text("P0\tH0\tneutral\nP1\tH1\tentailment\nP2\tH2\tneutral\n")
    (x / "dev-de.tsv").write_text("p0\th0\tneutral\np1\th1\tentailment\np2\th2\tcontradiction\n")
    res = convert_row_aligned("xnli", x, rows="1:3")
    assert [(r["id"], r["target"], r["source_pair"], r["label"]) for r in res.records] == [
        ("xnli-1-de", "p1", "H1", "entailment")
    ]
    assert res.skipped == {"label differs from English (de)": 1}
    p = tmp_path / "pawsx"
    (p / "dev-en.tsv").write_text("A\tB\t1\nC\tD\t0\nE\tF\t1\n")
    (p / "dev-fr.tsv").write_text("a\tb\t1\nNS\td\t0\ne\tf\t0\n")
    res = convert_row_aligned("pawsx", p)
    assert [(r["target"], r["label"]) for r in res.records] == [("a", "paraphrase")]
    assert res.skipped == {
        "untranslated 'NS' row (fr)": 1,
        "label differs from English (fr)": 1,
    }
    (x / "dev-fr.tsv").write_text("p0\th0\tneutral\n")
    with pytest.raises(UserError, match="row-aligned"):
        convert_row_aligned("xnli", x, langs=["fr"])


def test_read_conllu_skips_ranges_and_empty_nodes(tmp_path: Path) -> None:
    root = _pud(tmp_path)
    sents = read_conllu(root / "UD_German-PUD" / "de_pud-ud-test.conllu")
    assert [(s.sent_id, s.tokens, s.upos) for s in sents] == [
        ("s1", ["zu", "dem", "Kater"], ["ADP", "DET", "NOUN"]),
        ("s2", ["Geh"], ["VERB"]),
    ]
    bad = tmp_path / "bad.conllu"
    bad.write_text("# sent_id = a\n1\tx\t_\n")
    with pytest.raises(UserError, match=r"bad\.conllu:2: field 'line': 3 columns"):
        read_conllu(bad)


def test_pud_aligned_by_sent_id_not_position(tmp_path: Path) -> None:
    res = convert_pud(_pud(tmp_path))
    by_id = {r["id"]: r for r in res.records}
    assert by_id["pud-s1-is"]["source_tokens"] == ["The", "cat"]  # s1 is second in is file
    assert by_id["pud-s2-is"]["source_tags"] == ["VERB", "PUNCT"]
    assert by_id["pud-s1-de"]["target_tags"] == ["ADP", "DET", "NOUN"]
    assert res.per_lang == {"de": 2, "is": 2}
    assert res.skipped == {"no English sentence with this sent_id (is)": 1}
    res.validate()


def test_conllu_single_file_is_its_own_source(tmp_path: Path) -> None:
    path = _pud(tmp_path) / "UD_English-PUD" / "en_pud-ud-test.conllu"
    res = convert_conllu(path)
    assert [r["lang"] for r in res.records] == ["en", "en"]
    assert all(r["target_tokens"] == r["source_tokens"] for r in res.records)


def test_squad_aligned_by_question_id(tmp_path: Path) -> None:
    res = convert_squad(_xquad(tmp_path))
    assert len(res.records) == 1
    r = res.records[0]
    assert (r["id"], r["group"], r["answers"], r["source_answers"]) == (
        "xquad-q1-de",
        "xquad:Cats",
        [{"text": "schnurren", "answer_start": 7}],
        [{"text": "purr", "answer_start": 5}],
    )
    assert r["source_context"] == "Cats purr loudly."
    assert res.skipped == {
        "no answer found at answer_start in the context (de)": 1,
        "no English question with this id (de)": 1,
    }
    single = convert_squad(tmp_path / "xquad" / "xquad.en.json")
    assert [x["lang"] for x in single.records] == ["en", "en"]
    assert single.records[0]["source_question"] == single.records[0]["question"]


# ---------------------------------------------------------------------------------- splits
def test_splits_are_group_disjoint_and_deterministic() -> None:
    assert parse_rows("0:1245") == (0, 1245)
    assert parse_rows("5:")[0] == 5
    for bad in ("3", "5:2", "a:b"):
        with pytest.raises(UserError):
            parse_rows(bad)
    items = [(g, lang) for g in map(str, range(400)) for lang in ("de", "fr")]
    train, evaluation = split_by_group(items, lambda x: x[0], 0.25)
    assert not shared_groups(train, evaluation, lambda x: x[0])
    assert 0.18 < len(evaluation) / len(items) < 0.32
    assert all(in_hash_split(g, "eval", 0.25) for g, _ in evaluation)
    assert not any(in_hash_split(g, "eval", 0.25) for g, _ in train)
    a = deterministic_sample(list(range(100)), 10, seed=3, key="de")
    assert a == deterministic_sample(list(range(100)), 10, seed=3, key="de") == sorted(a)
    assert a != deterministic_sample(list(range(100)), 10, seed=4, key="de")


# ------------------------------------------------------------------------------------- CLI
def test_cli_writes_jsonl_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _sib(tmp_path)
    out = tmp_path / "out" / "train.jsonl"
    argv = ["data", "--task", "classify", "--format", "sib200", "--input", str(tmp_path)]
    assert main([*argv, "--langs", "de", "--limit", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 classify items from sib200" in printed and "de: 1" in printed
    stats = json.loads((tmp_path / "out" / "train.jsonl.stats.json").read_text())
    assert stats["per_lang"] == {"de": 1}
    assert stats["skipped"] == {
        "no English item with this index_id (de)": 1,
        "over --limit 1 (de)": 1,
    }
    recs, _ = read_jsonl(out, "classify")
    assert len(recs) == 1 and recs[0].lang == "de"
    # wrong task for the format / check mode
    assert main([*argv, "--task", "qa", "--out", str(out)]) == 2
    assert main(["data", "--task", "classify", "--check", str(out)]) == 0
    noisy = tmp_path / "noisy.jsonl"
    assert main([*argv[:-1], str(root), "--noise", "0.5", "--out", str(noisy)]) == 0
    recs, _ = read_jsonl(noisy, "classify")
    assert all(r.source_bt is not None for r in recs)


# ------------------------------------------------------------------------------ real data
@needs_shared
def test_real_pud_de_alignment_count() -> None:
    res = convert_pud(SHARED, langs=["de", "is"])
    assert res.per_lang == {"de": 1000, "is": 1000} and not res.skipped
    by_id = {r["id"]: r for r in res.records}
    assert by_id["pud-n01001011-de"]["source_tokens"][:2] == ["“", "While"]
    assert by_id["pud-n01001011-is"]["source_tokens"][:2] == ["“", "While"]


@needs_shared
def test_real_sib200_join_count() -> None:
    res = convert_sib200(SHARED, langs=["de"])
    assert len(res.records) == 701 and not res.skipped


@needs_shared
def test_real_xquad_split_by_article() -> None:
    train = convert_squad(SHARED, langs=["de"], split="train")
    evaluation = convert_squad(SHARED, langs=["de", "en"], split="eval")
    assert len(train.records) + evaluation.per_lang["de"] == 1190
    assert not shared_groups(train.records, evaluation.records, lambda r: r["group"])
