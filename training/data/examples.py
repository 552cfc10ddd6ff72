"""Regenerate the demo samples in ``examples/data/`` from a data root, deterministically.

    python -m training.data.examples --data DATA_ROOT --out examples/data

Only sets whose licence allows redistribution are sampled (SIB-200 CC BY-SA 4.0, UD PUD
CC BY-SA 3.0/4.0, XQuAD CC BY-SA 4.0); XNLI, LinES and PAN-X are not. Each eval file holds
languages absent from its train file (the "unseen" ones) plus one trained language for
comparison, and never an item (or its translation) that is in train.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.classification import convert_sib200
from training.data.conllu import convert_pud
from training.data.convert import ConvertResult
from training.data.splits import shared_groups
from training.data.squad import convert_squad

SEED = 0
QA_TRAIN_CHARS = 400

# Sentence ends: Latin/Greek/Cyrillic/Arabic/Devanagari punctuation followed by a space, or a
# CJK full stop / question / exclamation mark (no space follows those).
_SENTENCE_END = re.compile(r"(?<=[.!?;؟।])\s+|(?<=[。！？])")


def _width(text: str) -> int:
    """Characters, a CJK character counted as 3: about one token each either way."""
    return len(text) + 2 * sum(
        1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
    )


def crop_qa_context(
    context: str, answers: list[dict[str, Any]], max_chars: int
) -> tuple[str, list[dict[str, Any]]]:
    """The sentence holding the (first) answer plus neighbouring sentences up to ``max_chars``
    (a CJK character counts as 3).

    For the demo's QA *training* sample only: a full XQuAD paragraph needs two or three 192-token
    windows, most of them without the answer, so most of a step's compute teaches "no answer
    here". A gold-passage crop (TyDiQA-GoldP style) halves the sequence length and puts an answer
    in every window, which is what makes a few hundred CPU steps useful. Eval files keep the
    full paragraphs.
    """
    if _width(context) <= max_chars or not answers:
        return context, answers
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(context)), len(context)]
    spans = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    a0 = answers[0]["answer_start"]
    a1 = a0 + len(answers[0]["text"])
    first = next(i for i, (a, b) in enumerate(spans) if a <= a0 < b)
    last = next(i for i, (a, b) in enumerate(spans) if a < a1 <= b)
    lo, hi = first, last
    while True:  # grow by whole sentences, after then before, while it fits
        grown = False
        for cand in ((lo, hi + 1), (lo - 1, hi)):
            fits = cand[0] >= 0 and cand[1] < len(spans)
            if fits and _width(context[spans[cand[0]][0] : spans[cand[1]][1]]) <= max_chars:
                lo, hi = cand
                grown = True
        if not grown:
            break
    start, end = spans[lo][0], spans[hi][1]
    kept = [
        {**ans, "answer_start": ans["answer_start"] - start}
        for ans in answers
        if start <= ans["answer_start"] and ans["answer_start"] + len(ans["text"]) <= end
    ]
    return context[start:end].rstrip(), kept


def crop_qa_record(record: dict[str, Any], max_chars: int) -> dict[str, Any]:
    out = dict(record)
    out["context"], out["answers"] = crop_qa_context(
        record["context"], record["answers"], max_chars
    )
    if record.get("source_context") is not None:
        out["source_context"], out["source_answers"] = crop_qa_context(
            record["source_context"], record.get("source_answers") or [], max_chars
        )
    return out


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    origin: str  # repository @ commit, from the data set's SOURCE.md
    licence: str
    licence_url: str
    train: Callable[[Path], ConvertResult]
    eval: Callable[[Path], ConvertResult]
    train_limit: int
    eval_limit: int
    how: str
    seen_in_eval: tuple[str, ...]
    train_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None


SAMPLES = (
    Sample(
        name="sib200",
        title="SIB-200 topic classification (7 classes)",
        origin="dadelani/sib-200 @ 593cea88519930f776c1a4a1980b6a35b39dca57, "
        "data/annotated/<lang>/{train,test}.tsv (text from FLORES-200)",
        licence="CC BY-SA 4.0 (FLORES-200 sentences, SIB-200 labels)",
        licence_url="https://creativecommons.org/licenses/by-sa/4.0/",
        train=lambda d: convert_sib200(d, langs=["en", "de", "fr", "es", "ru", "zh", "ar", "fi"]),
        eval=lambda d: convert_sib200(d, langs=["sw", "is", "vi", "de"], split="test"),
        train_limit=40,
        eval_limit=50,
        how="train: the SIB-200 train split; eval: the SIB-200 test split (other index_ids). "
        "Source = the English (eng_Latn) sentence with the same index_id; for en, target = source.",
        seen_in_eval=("de",),
    ),
    Sample(
        name="pud",
        title="UD PUD part-of-speech tagging (UPOS, 17 tags)",
        origin="UniversalDependencies/UD_<Language>-PUD (commits: ar be733f45d21f, zh "
        "2849afd946a8, en f16eba4ae7f3, fi fa2c5ad1df6b, fr c245786cfb30, de ff80846ae60a, "
        "id 765fb3fe4862, ko 9bc99c21a00b, ru da5b3816eeaa, es 818a82b8628c), "
        "<l>_pud-ud-test.conllu",
        licence="CC BY-SA 3.0 (ar de en es fr id ko ru zh) / CC BY-SA 4.0 (fi)",
        licence_url="https://creativecommons.org/licenses/by-sa/3.0/ and "
        "https://creativecommons.org/licenses/by-sa/4.0/",
        train=lambda d: convert_pud(
            d, langs=["en", "de", "fr", "es", "ru", "zh", "ar"], split="train"
        ),
        eval=lambda d: convert_pud(d, langs=["fi", "ko", "id", "de"], split="eval"),
        train_limit=50,
        eval_limit=40,
        how="sentences split by a hash of '# sent_id' (train/eval halves), so a sentence and "
        "its translations are on one side only. Source = the English PUD sentence with the "
        "same sent_id (own tokens and tags; no word alignment); for en, target = source.",
        seen_in_eval=("de",),
    ),
    Sample(
        name="xquad",
        title="XQuAD extractive QA",
        origin="deepmind/xquad @ 60cac411649156efb6aab9dd4c9cde787a2c0345, xquad.<l>.json",
        licence="CC BY-SA 4.0",
        licence_url="https://creativecommons.org/licenses/by-sa/4.0/",
        train=lambda d: convert_squad(d, langs=["en", "de", "es", "ru", "zh"], split="train"),
        eval=lambda d: convert_squad(d, langs=["ar", "el", "vi", "ro", "de"], split="eval"),
        # QA learns slowest of the three tasks: more distinct questions per step pay off.
        train_limit=100,
        eval_limit=30,
        how="questions split by a hash of the English article title (train/eval halves), so "
        "an article, its questions and their translations are on one side only. Source = the "
        "English question/context with the same question id; for en, target = source. "
        f"Train contexts (target and source alike) are cut to the sentences around the answer, "
        f"at most {QA_TRAIN_CHARS} characters (a gold passage, as in TyDiQA-GoldP), so that "
        "every training window holds an answer; eval contexts are the full paragraphs.",
        seen_in_eval=("de",),
        train_transform=lambda r: crop_qa_record(r, QA_TRAIN_CHARS),
    ),
)


def _source_md(s: Sample, train: ConvertResult, evaluation: ConvertResult) -> str:
    def counts(r: ConvertResult) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(r.per_lang.items()))

    unseen = sorted(set(evaluation.per_lang) - set(train.per_lang))
    return (
        f"# {s.title} - demo sample\n\n"
        f"Source: {s.origin}.\n"
        f"Licence: {s.licence} ({s.licence_url}). Redistributed under the same licence; "
        "the JSONL files are an adaptation (format conversion and sampling) of the original.\n\n"
        f"Sampled: {s.how}\n"
        f"At most {s.train_limit} train / {s.eval_limit} eval items per language, a seeded "
        f"random sample (seed {SEED}).\n\n"
        f"- train.jsonl: {len(train.records)} items ({counts(train)})\n"
        f"- eval.jsonl: {len(evaluation.records)} items ({counts(evaluation)}); "
        f"languages not in train: {', '.join(unseen)}; seen in train: "
        f"{', '.join(s.seen_in_eval)}\n\n"
        "Format: training/data/README.md. Regenerate: examples/data/build.sh\n"
    )


def build(data_root: Path, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write every sample; returns {name: {"train": n, "eval": n}}."""
    summary = {}
    for s in SAMPLES:
        train, evaluation = s.train(data_root), s.eval(data_root)
        train.limit_per_lang(s.train_limit, SEED)
        if s.train_transform is not None:
            train.records = [s.train_transform(r) for r in train.records]
        evaluation.limit_per_lang(s.eval_limit, SEED)
        leaked = shared_groups(train.records, evaluation.records, lambda r: r["group"])
        if leaked:  # guards the split logic: a demo that leaks would overstate results
            raise AssertionError(f"{s.name}: groups on both sides: {sorted(leaked)[:5]}")
        target = out_dir / s.name
        target.mkdir(parents=True, exist_ok=True)
        train.validate()
        evaluation.validate()
        from training.data.schema import write_jsonl

        write_jsonl(train.records, target / "train.jsonl")
        write_jsonl(evaluation.records, target / "eval.jsonl")
        (target / "SOURCE.md").write_text(_source_md(s, train, evaluation), encoding="utf-8")
        summary[s.name] = {"train": len(train.records), "eval": len(evaluation.records)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the data root (training/data/README.md)")
    parser.add_argument("--out", default="examples/data", help="output folder")
    args = parser.parse_args(argv)
    summary = build(Path(args.data), Path(args.out))
    for name, n in summary.items():
        print(f"{name}: train {n['train']}, eval {n['eval']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
