"""JSONL records -> model inputs: the core featuriser plus what only training needs.

Token ids, word indices and QA windows come from ``xmixup/core/featurize.py`` (the rules the
service applies too). This adapter adds the training-only fields:
- classify: the label, for the target and the source (``source``/``source_pair``).
- tag: a word's label on the token its word-token rule picks, -100 elsewhere (or soft
  pseudo-labels).
- qa: every target window is a feature; a window that does not contain the answer points at
  CLS (0). The source is ``source_question`` + ``source_context``, first window only, with its
  own answer positions.
- token type ids are never produced (all zero, as the reference code does).

Besides the real source every feature may carry ``alt_source_input_ids``: what scheduled
sampling substitutes when its coin says "not real" (the item's back-translation, else the
seeded noisy source; absent when neither exists, the collator then repeats the real source
and marks it real).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from xmixup.core.featurize import TextEncoder, context_offsets, word_tokens
from xmixup.errors import UserError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
CLS_INDEX = 0


def record_dict(record: Any) -> dict[str, Any]:
    """A record (pydantic model or dict) as a plain dict."""
    if isinstance(record, Mapping):
        return dict(record)
    return record.model_dump(exclude={"meta"})


def source_only(record: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The record with its source (English) side as the target: zero-shot / translate-test.

    Zero-shot and translate-test train on English alone; translate-test also infers on the
    English source. The source stays the source, so the item is still well formed.
    """
    r = dict(record)
    if task == "classify":
        r["target"], r["target_pair"] = r["source"], r.get("source_pair")
    elif task == "tag":
        r["target_tokens"], r["target_tags"] = r["source_tokens"], r["source_tags"]
        r["target_tag_probs"] = None
    elif task == "qa":
        r["question"], r["context"] = r["source_question"], r["source_context"]
        r["answers"] = r["source_answers"]
    return r


def target_as_source(record: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The record with its target fed as its own source (``--no-source``; service default)."""
    r = dict(record)
    if task == "classify":
        r["source"], r["source_pair"] = r["target"], r.get("target_pair")
    elif task == "tag":
        r["source_tokens"] = r["target_tokens"]
        r["source_tags"] = r.get("target_tags") or ["O"] * len(r["target_tokens"])
    elif task == "qa":
        r["source_question"], r["source_context"] = r["question"], r["context"]
        r["source_answers"] = r["answers"]
    for k in [k for k in r if k.startswith("source_bt")]:
        r[k] = None
    return r


@lru_cache(maxsize=8)
def _text_encoder(
    backend: Tokenizer, max_length: int, doc_stride: int | None, max_query_length: int | None
) -> TextEncoder:
    # Copying a 250k-entry tokenizer takes seconds; evaluation builds a Featurizer per call.
    return TextEncoder(
        Tokenizer.from_str(backend.to_str()), max_length, doc_stride, max_query_length
    )


@dataclass
class Featurizer:
    """Tokenises records for one task. ``labels`` is the label list (classify/tag).

    ``noise``: a ``SourceNoise`` (training/data/noise.py) or None; when given, items without a
    back-translation get a noisy copy of their source as the scheduled-sampling stand-in, and
    with ``noise_replaces_source`` (evaluation robustness sweep) the noisy source replaces the
    real one outright.
    ``target_label_mode``: tagging, ``gold`` (``target_tags``) or ``pseudo``
    (``target_tag_probs`` as soft labels).
    ``tokenizer``: an HF fast tokenizer (its ``backend_tokenizer`` is used) or a
    ``tokenizers.Tokenizer``.
    ``word_token``: tagging, the model's word-token rule (``xmixup.core.featurize.word_tokens``).
    """

    task: str
    tokenizer: Any
    labels: Sequence[str] = ()
    max_length: int = 128
    doc_stride: int = 128
    max_query_length: int = 64
    noise: Any = None
    noise_replaces_source: bool = False
    use_bt: bool = True
    target_label_mode: str = "gold"
    word_token: str = "first"
    label_index: dict[str, int] = field(init=False)
    encoder: TextEncoder = field(init=False)

    def __post_init__(self) -> None:
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        qa = self.task == "qa"
        if qa and self.max_query_length + 8 > self.max_length:
            raise UserError(
                f"max_length {self.max_length} leaves no room for the context after a "
                f"question of up to {self.max_query_length} tokens",
                "raise --max-length (QA default 384) or lower max_query_length",
            )
        self.encoder = _text_encoder(
            getattr(self.tokenizer, "backend_tokenizer", self.tokenizer),
            self.max_length,
            self.doc_stride if qa else None,
            self.max_query_length if qa else None,
        )

    # ------------------------------------------------------------------ public
    def __call__(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        """Features for ``records`` (each feature knows its ``example_index``)."""
        recs = [record_dict(r) for r in records]
        if self.task == "classify":
            return self._classify(recs)
        if self.task == "tag":
            return self._tag(recs)
        if self.task == "qa":
            return self._qa(recs)
        raise ValueError(f"unknown task {self.task!r}")

    # ------------------------------------------------------------------ helpers
    def _label(self, name: str, rec: Mapping[str, Any], fieldname: str) -> int:
        try:
            return self.label_index[name]
        except KeyError:
            raise UserError(
                f"item {rec.get('id')!r}: field {fieldname!r} has label {name!r}, not one of "
                f"the model's labels {list(self.labels)}",
                "train and evaluate with the same label set",
            ) from None

    def _alt_source_fields(self, rec: Mapping[str, Any]) -> dict[str, Any] | None:
        """The scheduled-sampling stand-in for ``rec``'s source (same field names), or None."""
        t, rid = self.task, str(rec.get("id"))
        if self.use_bt:
            if t == "classify" and rec.get("source_bt"):
                return {"source": rec["source_bt"], "source_pair": rec.get("source_bt_pair")}
            if t == "tag" and rec.get("source_bt_tokens"):
                return {"source_tokens": rec["source_bt_tokens"]}
            if t == "qa" and rec.get("source_bt_context"):
                return {
                    "source_question": rec["source_bt_question"],
                    "source_context": rec["source_bt_context"],
                }
        if self.noise is None:
            return None
        return self._noisy_source_fields(rec, rid)

    def _noisy_source_fields(self, rec: Mapping[str, Any], rid: str) -> dict[str, Any]:
        """The source after ``SourceNoise`` (seeded per item id), under the plain source names."""
        clean = {k: v for k, v in rec.items() if not k.startswith("source_bt")}
        noisy = self.noise.apply(clean, self.task)
        if self.task == "classify":
            return {"source": noisy["source_bt"], "source_pair": noisy.get("source_bt_pair")}
        if self.task == "tag":
            return {
                "source_tokens": noisy["source_bt_tokens"],
                "source_tags": noisy["source_bt_tags"],
            }
        return {
            "source_question": noisy["source_bt_question"],
            "source_context": noisy["source_bt_context"],
            "source_answers": noisy["source_bt_answers"],
        }

    def _real_source(self, rec: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The source actually used as "real", and whether it is the original."""
        if self.noise is not None and self.noise_replaces_source:
            return {**rec, **self._noisy_source_fields(rec, str(rec.get("id")))}, False
        return dict(rec), True

    # ------------------------------------------------------------------ classify
    def _encode_pairs(self, texts: list[str], pairs: list[str | None]) -> list[list[int]]:
        has_pair = [p is not None for p in pairs]
        if any(has_pair) and not all(has_pair):
            raise UserError(
                "some items have a pair text and others do not",
                "a pair task needs target_pair/source_pair on every item",
            )
        items: list[str | tuple[str, str]] = (
            list(zip(texts, pairs, strict=True)) if all(has_pair) else list(texts)  # type: ignore[arg-type]
        )
        encodings, _ = self.encoder.encode_texts(items, [True] * len(items))
        return [list(e.ids) for e in encodings]

    def _classify(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tgt = self._encode_pairs([r["target"] for r in recs], [r.get("target_pair") for r in recs])
        reals = [self._real_source(r) for r in recs]
        src = self._encode_pairs(
            [s["source"] for s, _ in reals], [s.get("source_pair") for s, _ in reals]
        )
        alts = [self._alt_source_fields(r) for r in recs]
        alt_idx = [i for i, a in enumerate(alts) if a is not None]
        alt_ids: dict[int, list[int]] = {}
        if alt_idx:
            enc = self._encode_pairs(
                [alts[i]["source"] for i in alt_idx],  # type: ignore[index]
                [alts[i].get("source_pair") for i in alt_idx],  # type: ignore[union-attr]
            )
            alt_ids = dict(zip(alt_idx, enc, strict=True))
        feats = []
        for i, r in enumerate(recs):
            label = self._label(r["label"], r, "label") if r.get("label") is not None else -1
            feats.append(
                {
                    "example_index": i,
                    "target_input_ids": tgt[i],
                    "source_input_ids": src[i],
                    "alt_source_input_ids": alt_ids.get(i),
                    "source_is_original": reals[i][1],
                    "target_labels": label,
                    "source_labels": label,
                    "source_has_labels": reals[i][1],
                }
            )
        return feats

    # ------------------------------------------------------------------ tag
    def _encode_words(self, word_lists: list[list[str]]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and, per token, the word read on it (-1 elsewhere)."""
        encodings, _ = self.encoder.encode_words(word_lists, [True] * len(word_lists))
        return [list(e.ids) for e in encodings], [
            word_tokens(e, self.word_token) for e in encodings
        ]

    def _tag_labels(
        self, first: list[int], tags: Sequence[str] | None, rec: Mapping, name: str
    ) -> list[int]:
        if tags is None:
            return [IGNORE_INDEX] * len(first)
        return [self._label(tags[w], rec, name) if w >= 0 else IGNORE_INDEX for w in first]

    def _tag(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pseudo = self.target_label_mode == "pseudo"
        if pseudo:
            missing = [r["id"] for r in recs if not r.get("target_tag_probs")]
            if missing:
                raise UserError(
                    f"{len(missing)} item(s) have no target_tag_probs for pseudo-labels "
                    f"(first: {missing[0]!r})",
                    "add target_tag_probs to the data, pass --teacher CKPT to compute them, "
                    "or use --target-labels gold when the data has target_tags",
                )
        t_ids, t_firsts = self._encode_words([list(r["target_tokens"]) for r in recs])
        reals = [self._real_source(r) for r in recs]
        s_ids, s_firsts = self._encode_words([list(s["source_tokens"]) for s, _ in reals])
        alts = [self._alt_source_fields(r) for r in recs]
        alt_idx = [i for i, a in enumerate(alts) if a is not None]
        alt_ids: dict[int, list[int]] = {}
        if alt_idx:
            ids, _ = self._encode_words([list(alts[i]["source_tokens"]) for i in alt_idx])  # type: ignore[index]
            alt_ids = dict(zip(alt_idx, ids, strict=True))
        feats = []
        for i, r in enumerate(recs):
            t_first, s_first = t_firsts[i], s_firsts[i]
            feat: dict[str, Any] = {
                "example_index": i,
                "target_input_ids": t_ids[i],
                "source_input_ids": s_ids[i],
                "alt_source_input_ids": alt_ids.get(i),
                "source_is_original": reals[i][1],
                "target_word_index": t_first,
                "target_labels": self._tag_labels(t_first, r.get("target_tags"), r, "target_tags"),
                "source_labels": self._tag_labels(
                    s_first, reals[i][0]["source_tags"], r, "source_tags"
                ),
                "source_has_labels": reals[i][1],
            }
            if pseudo:
                feat["target_soft_labels"] = self._soft_labels(t_first, r["target_tag_probs"])
            feats.append(feat)
        return feats

    def _soft_labels(self, first: list[int], probs: Sequence[Sequence[float]]) -> np.ndarray:
        """A word's label distribution on the token it is read on, zero rows elsewhere."""
        soft = np.zeros((len(first), len(self.labels)), dtype=np.float32)
        for pos, w in enumerate(first):
            if w >= 0:
                soft[pos] = probs[w]
        return soft

    # ------------------------------------------------------------------ qa
    def _answer_positions(
        self,
        offsets: Sequence[tuple[int, int]],
        seq_ids: Sequence[int | None],
        answers: Sequence[Mapping],
    ) -> tuple[int, int]:
        """(start, end) token positions of the first answer in this window, or (CLS, CLS)."""
        if not answers:
            return CLS_INDEX, CLS_INDEX
        a0 = answers[0]
        start_char = int(a0["answer_start"])
        end_char = start_char + len(a0["text"])
        ctx = [i for i, s in enumerate(seq_ids) if s == 1]
        if not ctx:
            return CLS_INDEX, CLS_INDEX
        first, last = ctx[0], ctx[-1]
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            return CLS_INDEX, CLS_INDEX
        s = first
        while s <= last and offsets[s][0] <= start_char:
            s += 1
        e = last
        while e >= first and offsets[e][1] >= end_char:
            e -= 1
        return s - 1, e + 1

    def _qa_encode(self, questions: list[str], contexts: list[str]) -> list[list[Encoding]]:
        """Per item, its doc-stride windows (questions cut to ``max_query_length`` first)."""
        capped = [q for q, _ in self.encoder.cap_questions(questions)]
        return self.encoder.encode_windows(capped, contexts)

    def _qa(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tgt = self._qa_encode([r["question"] for r in recs], [r["context"] for r in recs])
        reals = [self._real_source(r) for r in recs]
        src = [
            windows[0]
            for windows in self._qa_encode(
                [s["source_question"] for s, _ in reals], [s["source_context"] for s, _ in reals]
            )
        ]
        src_pos = []
        for enc, (s, original) in zip(src, reals, strict=True):
            answers = s.get("source_answers") or [] if original else []
            pos = self._answer_positions(enc.offsets, enc.sequence_ids, answers)
            src_pos.append((pos, original and bool(answers)))
        alts = [self._alt_source_fields(r) for r in recs]
        alt_idx = [i for i, a in enumerate(alts) if a is not None]
        alt_ids: dict[int, list[int]] = {}
        if alt_idx:
            alt_enc = self._qa_encode(
                [alts[i]["source_question"] for i in alt_idx],  # type: ignore[index]
                [alts[i]["source_context"] for i in alt_idx],  # type: ignore[index]
            )
            alt_ids = {i: list(w[0].ids) for i, w in zip(alt_idx, alt_enc, strict=True)}
        feats = []
        for i, windows in enumerate(tgt):
            (s_start, s_end), s_ok = src_pos[i]
            for w in windows:
                start, end = self._answer_positions(
                    w.offsets, w.sequence_ids, recs[i].get("answers") or []
                )
                feats.append(
                    {
                        "example_index": i,
                        "target_input_ids": list(w.ids),
                        "source_input_ids": list(src[i].ids),
                        "alt_source_input_ids": alt_ids.get(i),
                        "source_is_original": reals[i][1],
                        "offsets": context_offsets(w),
                        "target_start_positions": start,
                        "target_end_positions": end,
                        "source_start_positions": s_start,
                        "source_end_positions": s_end,
                        "source_has_labels": s_ok,
                    }
                )
        return feats
