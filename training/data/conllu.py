"""CoNLL-U reader and the POS (UPOS) converters: parallel PUD treebanks and English-only sets.

PUD treebanks are sentence-aligned through ``# sent_id`` (Icelandic has the same ids in a
different order, so alignment is always by id, never by position). There is no word
alignment: target and source keep their own tokenisation and tags; X-Mixup mixes at sentence
level through attention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.data.convert import SOURCE_LANG, ConvertResult, resolve_input, select_langs
from training.data.splits import in_hash_split
from xmixup.errors import UserError

_PUD_FILE = re.compile(r"^([a-z]{2,3})_pud-ud-test\.conllu$")
_UD_FILE = re.compile(r"^([a-z]{2,3})_[a-z]+-ud-[a-z]+\.conllu$")


@dataclass
class Sentence:
    sent_id: str
    tokens: list[str] = field(default_factory=list)
    upos: list[str] = field(default_factory=list)
    line: int = 0


def read_conllu(path: str | Path) -> list[Sentence]:
    """Sentences with their syntactic words and UPOS tags.

    Multiword-token ranges (``1-2``: the surface form "zur" of "zu der") and empty nodes
    (``1.1``) are skipped: UPOS lives on the syntactic words, one tag each. Sentences without
    ``# sent_id`` get ``<file stem>-<n>``.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    current: Sentence | None = None
    pending_id: str | None = None
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                if current is not None and current.tokens:
                    sentences.append(current)
                current, pending_id = None, None
                continue
            if line.startswith("#"):
                m = re.match(r"#\s*sent_id\s*=\s*(\S+)", line)
                if m:
                    pending_id = m.group(1)
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise UserError(
                    f"{path}:{lineno}: field 'line': {len(cols)} columns, CoNLL-U has 10",
                    "is this a CoNLL-U file?",
                )
            if "-" in cols[0] or "." in cols[0]:
                continue
            if current is None:
                sid = pending_id or f"{path.stem}-{len(sentences) + 1}"
                current = Sentence(sent_id=sid, line=lineno)
            if not cols[1].strip():
                raise UserError(f"{path}:{lineno}: field 'FORM': empty word form")
            current.tokens.append(cols[1])
            current.upos.append(cols[3])
    if current is not None and current.tokens:
        sentences.append(current)
    return sentences


def _pud_files(root: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(root.rglob("*.conllu")):
        m = _PUD_FILE.match(p.name)
        if m and "not-to-release" not in p.parts:
            files[m.group(1)] = p
    if not files:
        raise UserError(f"no *_pud-ud-test.conllu under {root}", "point --input at ud_pud/")
    return files


def _tag_record(
    rid: str, lang: str, group: str, target: Sentence, source: Sentence
) -> dict[str, object]:
    return {
        "id": rid,
        "lang": lang,
        "group": group,
        "target_tokens": target.tokens,
        "target_tags": target.upos,
        "source_tokens": source.tokens,
        "source_tags": source.upos,
    }


def convert_pud(
    input_path: str | Path,
    *,
    langs: Sequence[str] | None = None,
    split: str | None = None,
    eval_fraction: float = 0.5,
) -> ConvertResult:
    """Parallel PUD: target = xx sentence (tokens + UPOS), source = the English sentence.

    ``split`` (train|eval) keeps the sentence ids whose hash falls on that side, so a sentence
    and its translations are never on both sides.
    """
    root = resolve_input(input_path, "tagging/ud_pud")
    files = _pud_files(root)
    if SOURCE_LANG not in files:
        raise UserError(f"no en_pud-ud-test.conllu under {root}", "English PUD is the source")
    chosen = select_langs(list(files), langs, "conllu")
    english = {s.sent_id: s for s in read_conllu(files[SOURCE_LANG])}
    res = ConvertResult(task="tag", fmt="conllu")
    for lang in chosen:
        for sent in read_conllu(files[lang]):
            src = english.get(sent.sent_id)
            if src is None:
                res.skip(f"no English sentence with this sent_id ({lang})")
                continue
            if split not in (None, "all") and not in_hash_split(sent.sent_id, split, eval_fraction):
                res.skip(f"other side of the {split} split ({lang})")
                continue
            res.records.append(
                _tag_record(f"pud-{sent.sent_id}-{lang}", lang, f"pud:{sent.sent_id}", sent, src)
            )
    return res


def convert_conllu_file(
    input_path: str | Path,
    *,
    source_path: str | Path | None = None,
    lang: str | None = None,
    split: str | None = None,
    eval_fraction: float = 0.5,
) -> ConvertResult:
    """One treebank file. Without ``source_path`` target = source (English-only training,
    e.g. LinES); with it, the two files are aligned by sent_id."""
    path = Path(input_path)
    if lang is None:
        m = _UD_FILE.match(path.name)
        lang = m.group(1) if m else SOURCE_LANG
    res = ConvertResult(task="tag", fmt="conllu")
    sources = None
    if source_path is not None:
        sources = {s.sent_id: s for s in read_conllu(source_path)}
    else:
        res.notes.append("no --source: target = source (same sentence)")
    for sent in read_conllu(path):
        src = sent if sources is None else sources.get(sent.sent_id)
        if src is None:
            res.skip("no source sentence with this sent_id")
            continue
        if split not in (None, "all") and not in_hash_split(sent.sent_id, split, eval_fraction):
            res.skip(f"other side of the {split} split")
            continue
        rid = f"{path.stem}-{sent.sent_id}-{lang}"
        res.records.append(_tag_record(rid, lang, f"{path.stem}:{sent.sent_id}", sent, src))
    return res


def convert_conllu(
    input_path: str | Path,
    *,
    source_path: str | Path | None = None,
    langs: Sequence[str] | None = None,
    split: str | None = None,
    eval_fraction: float = 0.5,
) -> ConvertResult:
    """Directory -> parallel PUD; file -> one treebank (optionally with a parallel source)."""
    p = Path(input_path)
    if p.is_file():
        lang = langs[0] if langs else None
        return convert_conllu_file(
            p, source_path=source_path, lang=lang, split=split, eval_fraction=eval_fraction
        )
    return convert_pud(p, langs=langs, split=split, eval_fraction=eval_fraction)
