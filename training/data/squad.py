"""SQuAD-format QA converters: XQuAD, MLQA (parallel, aligned by question id) and
non-parallel sets such as TyDiQA-GoldP (target = source).

The target keeps its own answer span (the label); the English item's span becomes
``source_answers``. Splits go by the English article title, so a question and its
translations - and every other question on the same article - stay on one side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.convert import SOURCE_LANG, ConvertResult, resolve_input, select_langs
from training.data.splits import in_hash_split
from xmixup.errors import UserError

# File-name patterns of the SQuAD-format sets (XQuAD, MLQA, TyDiQA); group 1 is the language.
_LANG_PATTERNS = (
    re.compile(r"^xquad\.([a-z]{2})\.json$"),
    re.compile(r"^dev-context-([a-z]{2})-question-\1\.json$"),
    re.compile(r"^tydiqa\.goldp\.([a-z]{2})\.(?:dev|train)\.json$"),
    re.compile(r"^(?:.*[._-])?([a-z]{2})\.json$"),
)


@dataclass
class QAItem:
    qid: str
    title: str
    question: str
    context: str
    answers: list[dict[str, Any]]


def lang_of(path: Path, *, specific_only: bool = False) -> str | None:
    """The language in a file name; ``specific_only`` skips the generic ``*.xx.json`` rule
    (in an MLQA folder it would read ``context-ar-question-de`` as German)."""
    for pat in _LANG_PATTERNS[:-1] if specific_only else _LANG_PATTERNS:
        m = pat.match(path.name)
        if m:
            return m.group(1)
    return None


def read_squad(path: str | Path) -> list[QAItem]:
    """Questions of a SQuAD v1.1 JSON file, in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = []
        for a_idx, article in enumerate(data["data"]):
            title = article.get("title") or f"{path.stem}#{a_idx}"
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    answers = [
                        {"text": a["text"], "answer_start": int(a["answer_start"])}
                        for a in qa.get("answers", [])
                    ]
                    items.append(
                        QAItem(str(qa["id"]), title, qa["question"], para["context"], answers)
                    )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"{path}: not a SQuAD v1.1 file ({type(exc).__name__}: {exc})",
            "expected {'data': [{'title', 'paragraphs': [{'context', 'qas': [...]}]}]}",
        ) from None
    return items


def _dedupe(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = set()
    out = []
    for a in answers:
        key = (a["text"], a["answer_start"])
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def _valid_answers(answers: list[dict[str, Any]], context: str) -> list[dict[str, Any]]:
    return [
        a
        for a in answers
        if a["text"]
        and context[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]
    ]


def _set_name(path: Path) -> str:
    """Short set name for ids and groups: xquad, mlqa, tydiqa, else the file stem."""
    if path.name.startswith("dev-context-"):
        return "mlqa"
    return path.name.split(".")[0]


def _discover(root: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for specific_only in (True, False):
        for p in sorted(root.glob("*.json")):
            lang = lang_of(p, specific_only=specific_only)
            if lang is not None and lang not in files:
                files[lang] = p
        if files:
            break
    if not files:
        raise UserError(f"no SQuAD-format *.json with a language in its name under {root}")
    return files


def _convert_pair(
    res: ConvertResult,
    lang: str,
    target: list[QAItem],
    source: dict[str, QAItem] | None,
    split: str | None,
    eval_fraction: float,
    prefix: str,
) -> None:
    for item in target:
        src = item if source is None else source.get(item.qid)
        if src is None:
            res.skip(f"no English question with this id ({lang})")
            continue
        # The English title is the article's identity in every language (MLQA translates it).
        group = src.title
        if split not in (None, "all") and not in_hash_split(group, split, eval_fraction):
            res.skip(f"article on the other side of the {split} split ({lang})")
            continue
        answers = _dedupe(_valid_answers(item.answers, item.context))
        if not answers:
            res.skip(f"no answer found at answer_start in the context ({lang})")
            continue
        src_answers = _dedupe(_valid_answers(src.answers, src.context))
        res.records.append(
            {
                "id": f"{prefix}-{item.qid}-{lang}",
                "lang": lang,
                "group": f"{prefix}:{group}",
                "question": item.question,
                "context": item.context,
                "answers": answers,
                "source_question": src.question,
                "source_context": src.context,
                "source_answers": src_answers,
            }
        )


def convert_squad(
    input_path: str | Path,
    *,
    source_path: str | Path | None = None,
    langs: Sequence[str] | None = None,
    split: str | None = None,
    eval_fraction: float = 0.5,
    prefix: str | None = None,
) -> ConvertResult:
    """A directory of per-language files (XQuAD, MLQA dev) aligned by question id with the
    English file, or one file (optionally with ``source_path``; without it target = source,
    as for TyDiQA-en)."""
    res = ConvertResult(task="qa", fmt="squad")
    p = resolve_input(input_path, "qa/xquad")
    if p.is_file():
        lang = (langs[0] if langs else None) or lang_of(p) or SOURCE_LANG
        source = None
        if source_path is not None:
            source = {q.qid: q for q in read_squad(source_path)}
        else:
            res.notes.append("no --source: target = source (English-only / non-parallel)")
        _convert_pair(
            res, lang, read_squad(p), source, split, eval_fraction, prefix or _set_name(p)
        )
        return res
    files = _discover(p)
    if SOURCE_LANG not in files:
        raise UserError(f"{p} has no English file", "the English file is the source side")
    chosen = select_langs(list(files), langs, "squad")
    english = {q.qid: q for q in read_squad(files[SOURCE_LANG])}
    name = prefix or _set_name(files[SOURCE_LANG])
    for lang in chosen:
        _convert_pair(res, lang, read_squad(files[lang]), english, split, eval_fraction, name)
    return res
