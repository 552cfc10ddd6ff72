"""Vocabulary trimming: keep the pieces some scripts or a corpus need, in the tokenizer and the
graph together.

A multilingual backbone carries ~250k pieces, and their embedding rows are most of a bundle
(384 MB of 470 for multilingual-e5-small); a deployment that serves a few languages reads a
fraction of them. The kept set is: the special tokens, every piece without letters (digits,
punctuation, the word-start mark), every piece whose letters are all in one of ``scripts``
(Unicode script by character name: LATIN, CYRILLIC, GREEK, ARABIC, CJK, HANGUL, ...), and
every piece the full tokenizer produces on the ``corpus`` files.

Kept pieces keep their order, so ids are remapped monotonically and the pad id (a constant in
the traced position-id computation) does not move. The trimmed ``tokenizer.json`` is the same
Unigram model over fewer pieces: a word whose usual pieces were dropped is segmented into kept
ones, and only text that no kept piece covers becomes ``<unk>``. How often either happens is
measured per language by ``piece_rates`` (bench/export.py reports it). The tokenizers library
has no vocabulary-subsetting API, so the JSON is rewritten here: the model's piece list and
``unk_id``, ``added_tokens`` and the post-processor's special-token ids.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xmixup.errors import UserError

# Record fields that never hold text to tokenise (corpus files are the task's JSONL).
_NOT_TEXT_KEYS = frozenset({"id", "lang"})


@dataclass
class VocabPlan:
    """Which of the checkpoint's token ids a trimmed bundle keeps (ascending old ids)."""

    kept: np.ndarray
    source_size: int
    scripts: tuple[str, ...] = ()
    corpus: tuple[str, ...] = ()
    corpus_pieces: int = 0

    @property
    def size(self) -> int:
        return len(self.kept)

    def old_to_new(self, rows: int) -> np.ndarray:
        """New id per old id for ``rows`` old ids; -1 where the piece was dropped."""
        table = np.full(rows, -1, dtype=np.int64)
        table[self.kept] = np.arange(len(self.kept), dtype=np.int64)
        return table

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "source_size": self.source_size,
            "scripts": list(self.scripts),
            "corpus": list(self.corpus),
            "corpus_pieces": self.corpus_pieces,
        }


@dataclass
class PieceRates:
    """Per text set: tokens of the full tokenizer whose piece was dropped, and ``<unk>`` tokens
    of the trimmed tokenizer beyond those the full one already gave."""

    tokens: int = 0
    dropped: int = 0
    unk: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "dropped_piece_rate": round(self.dropped / max(self.tokens, 1), 5),
            "unk_rate": round(self.unk / max(self.tokens, 1), 5),
        }


def letter_script(ch: str) -> str | None:
    """The script of a letter by its Unicode name ("LATIN SMALL LETTER A" -> "LATIN"); None for
    anything that is not a letter (digits, punctuation, symbols, the word-start mark)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]


def piece_scripts(piece: str) -> set[str]:
    return {s for s in map(letter_script, piece) if s is not None}


def corpus_texts(path: Path) -> Iterator[str]:
    """Texts of a corpus file: every string (and list of strings, joined by spaces) in each
    JSON object of a ``.jsonl`` file except ``id``/``lang``; else each line of a text file."""
    if path.suffix != ".jsonl":
        with open(path, encoding="utf-8") as handle:
            yield from (line.rstrip("\n") for line in handle if line.strip())
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield from _strings(json.loads(line))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        yield " ".join(value)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in _NOT_TEXT_KEYS:
                yield from _strings(v)


def _unigram_json(tokenizer_json: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    kind = data.get("model", {}).get("type")
    if kind != "Unigram":
        raise UserError(
            f"{tokenizer_json}: vocabulary trimming needs a Unigram (SentencePiece) tokenizer, "
            f"this one is {kind}",
            "export without --vocab-scripts / --vocab-corpus",
        )
    return data


def plan_vocab(
    tokenizer_json: Path, scripts: Sequence[str] = (), corpus: Sequence[Path] = ()
) -> VocabPlan:
    """The ids to keep for ``scripts`` and ``corpus`` (either may be empty, not both)."""
    from tokenizers import Tokenizer

    if not scripts and not corpus:
        raise UserError("nothing to keep the vocabulary for", "pass scripts or corpus files")
    data = _unigram_json(tokenizer_json)
    pieces = [p for p, _ in data["model"]["vocab"]]
    wanted = {s.upper() for s in scripts}
    known = set().union(*(piece_scripts(p) for p in pieces))
    unknown = sorted(wanted - known)
    if unknown:
        raise UserError(
            f"--vocab-scripts: {unknown} not found in this vocabulary",
            f"scripts it has include {sorted(known)[:40]}",
        )
    keep = np.zeros(len(pieces), dtype=bool)
    for i, piece in enumerate(pieces):
        found = piece_scripts(piece)
        keep[i] = not found or found <= wanted
    keep[[t["id"] for t in data.get("added_tokens", [])]] = True
    keep[int(data["model"]["unk_id"])] = True
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    used = np.zeros(len(pieces), dtype=bool)
    for path in corpus:
        for batch in _batches(corpus_texts(path), 512):
            for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
                used[enc.ids] = True
    keep |= used
    return VocabPlan(
        kept=np.flatnonzero(keep),
        source_size=len(pieces),
        scripts=tuple(sorted(wanted)),
        corpus=tuple(p.name for p in corpus),
        corpus_pieces=int(used.sum()),
    )


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_trimmed_tokenizer(src: Path, dst: Path, plan: VocabPlan) -> None:
    """``src`` with only the kept pieces, every id it mentions remapped."""
    data = _unigram_json(src)
    new = plan.old_to_new(plan.source_size)
    model = data["model"]
    model["vocab"] = [model["vocab"][i] for i in plan.kept]
    model["unk_id"] = int(new[int(model["unk_id"])])
    for token in data.get("added_tokens", []):
        token["id"] = int(new[token["id"]])
    if data.get("post_processor") is not None:
        data["post_processor"] = _remap_post_processor(data["post_processor"], new)
    dst.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _remap_post_processor(proc: Any, new: np.ndarray) -> Any:
    """Special-token ids in a post-processor: TemplateProcessing's ``special_tokens`` and
    Roberta/BertProcessing's ``[token, id]`` pairs, inside a Sequence too."""
    if isinstance(proc, list):
        return [_remap_post_processor(p, new) for p in proc]
    if not isinstance(proc, dict):
        return proc
    out = dict(proc)
    for key in ("sep", "cls"):
        if isinstance(out.get(key), list) and len(out[key]) == 2:
            out[key] = [out[key][0], int(new[out[key][1]])]
    for spec in (out.get("special_tokens") or {}).values():
        spec["ids"] = [int(new[i]) for i in spec["ids"]]
    if "processors" in out:
        out["processors"] = _remap_post_processor(out["processors"], new)
    return out


def slice_embedding(src: Path, dst: Path, table: str, plan: VocabPlan) -> tuple[int, int]:
    """Keep only the kept rows of the initializer ``table`` (old row i -> new row new[i]).
    Returns (rows before, rows after)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for i, init in enumerate(model.graph.initializer):
        if init.name == table:
            full = numpy_helper.to_array(init)
            if full.shape[0] < plan.source_size:
                raise UserError(
                    f"embedding {table} has {full.shape[0]} rows, the tokenizer "
                    f"{plan.source_size} pieces",
                    "the checkpoint's tokenizer does not match its model",
                )
            sliced = np.ascontiguousarray(full[plan.kept])
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(sliced, table))
            onnx.save_model(model, str(dst))
            return int(full.shape[0]), int(sliced.shape[0])
    raise UserError(f"graph {src.name} has no initializer {table}", "report the model")


def piece_rates(full_json: Path, plan: VocabPlan, texts: Sequence[str]) -> PieceRates:
    """How often ``texts`` meet a dropped piece (full tokenizer) and an extra ``<unk>``
    (trimmed tokenizer), token-weighted."""
    import tempfile

    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(full_json))
    kept = np.zeros(plan.source_size, dtype=bool)
    kept[plan.kept] = True
    with tempfile.TemporaryDirectory() as tmp:
        trimmed_path = Path(tmp) / "tokenizer.json"
        write_trimmed_tokenizer(full_json, trimmed_path, plan)
        trimmed = Tokenizer.from_file(str(trimmed_path))
    unk_full = int(_unigram_json(full_json)["model"]["unk_id"])
    unk_new = int(plan.old_to_new(plan.source_size)[unk_full])
    rates = PieceRates()
    for a, b in zip(
        full.encode_batch(list(texts), add_special_tokens=False),
        trimmed.encode_batch(list(texts), add_special_tokens=False),
        strict=True,
    ):
        ids = np.asarray(a.ids, dtype=np.int64)
        rates.tokens += len(ids)
        rates.dropped += int((~kept[ids]).sum())
        rates.unk += max(0, b.ids.count(unk_new) - a.ids.count(unk_full))
    return rates
