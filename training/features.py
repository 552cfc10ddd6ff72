"""JSONL records -> model inputs, the one tokenisation shared by training, evaluation and export.

Rules (docs/ARCHITECTURE.md "Tokenisation rules"):
- classify: ``tokenizer(text, pair)`` with longest-first truncation to ``max_length``; the
  source from ``source``/``source_pair`` the same way.
- tag: words encoded pre-split; a word's label on its first sub-token, -100 elsewhere.
- qa: ``question`` + ``context`` with context-only truncation and doc-stride windows (every
  window is a feature; offsets map tokens back to context characters). The source is
  ``source_question`` + ``source_context``, first window only, with its own answer positions.
  A window that does not contain the answer points at CLS (0).
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
from typing import Any

import numpy as np

from xmixup.core.bundle import effective_doc_stride
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


@dataclass
class Featurizer:
    """Tokenises records for one task. ``labels`` is the label list (classify/tag).

    ``noise``: a ``SourceNoise`` (training/data/noise.py) or None; when given, items without a
    back-translation get a noisy copy of their source as the scheduled-sampling stand-in, and
    with ``noise_replaces_source`` (evaluation robustness sweep) the noisy source replaces the
    real one outright.
    ``target_label_mode``: tagging, ``gold`` (``target_tags``) or ``pseudo``
    (``target_tag_probs`` as soft labels).
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
    label_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        if self.task == "qa" and self.max_query_length + 8 > self.max_length:
            raise UserError(
                f"max_length {self.max_length} leaves no room for the context after a "
                f"question of up to {self.max_query_length} tokens",
                "raise --max-length (QA default 384) or lower max_query_length",
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
        enc = self.tokenizer(
            texts,
            pairs if all(has_pair) and pairs else None,
            truncation="longest_first",
            max_length=self.max_length,
        )
        return [list(ids) for ids in enc["input_ids"]]

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
    def _encode_words(
        self, word_lists: list[list[str]]
    ) -> tuple[list[list[int]], list[list[int | None]]]:
        enc = self.tokenizer(
            word_lists, is_split_into_words=True, truncation=True, max_length=self.max_length
        )
        return [list(x) for x in enc["input_ids"]], [
            enc.word_ids(i) for i in range(len(word_lists))
        ]

    @staticmethod
    def _first_subtoken_positions(word_ids: Sequence[int | None]) -> list[int]:
        """Per token: the word index on a word's first sub-token, -1 elsewhere."""
        out, prev = [], None
        for w in word_ids:
            out.append(w if (w is not None and w != prev) else -1)
            prev = w
        return out

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
        t_ids, t_words = self._encode_words([list(r["target_tokens"]) for r in recs])
        reals = [self._real_source(r) for r in recs]
        s_ids, s_words = self._encode_words([list(s["source_tokens"]) for s, _ in reals])
        alts = [self._alt_source_fields(r) for r in recs]
        alt_idx = [i for i, a in enumerate(alts) if a is not None]
        alt_ids: dict[int, list[int]] = {}
        if alt_idx:
            ids, _ = self._encode_words([list(alts[i]["source_tokens"]) for i in alt_idx])  # type: ignore[index]
            alt_ids = dict(zip(alt_idx, ids, strict=True))
        c = len(self.labels)
        feats = []
        for i, r in enumerate(recs):
            t_first = self._first_subtoken_positions(t_words[i])
            s_first = self._first_subtoken_positions(s_words[i])
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
                probs = r["target_tag_probs"]
                soft = np.zeros((len(t_first), c), dtype=np.float32)
                for pos, w in enumerate(t_first):
                    if w >= 0:
                        soft[pos] = probs[w]
                feat["target_soft_labels"] = soft
            feats.append(feat)
        return feats

    # ------------------------------------------------------------------ qa
    def _truncate_questions(self, questions: list[str]) -> list[str]:
        """Cut each question to ``max_query_length`` sub-tokens (at a token's char offset)."""
        enc = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for q, offs in zip(questions, enc["offset_mapping"], strict=True):
            out.append(
                q if len(offs) <= self.max_query_length else q[: offs[self.max_query_length][0]]
            )
        return out

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

    def _stride(self) -> int:
        return effective_doc_stride(self.max_length, self.max_query_length, self.doc_stride)

    def _qa_encode(self, questions: list[str], contexts: list[str], windows: bool) -> Any:
        return self.tokenizer(
            self._truncate_questions(questions),
            contexts,
            truncation="only_second",
            max_length=self.max_length,
            stride=self._stride(),
            return_overflowing_tokens=windows,
            return_offsets_mapping=True,
        )

    def _qa(self, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tgt = self._qa_encode([r["question"] for r in recs], [r["context"] for r in recs], True)
        reals = [self._real_source(r) for r in recs]
        src = self._qa_encode(
            [s["source_question"] for s, _ in reals], [s["source_context"] for s, _ in reals], False
        )
        src_pos = []
        for i, (s, original) in enumerate(reals):
            answers = s.get("source_answers") or [] if original else []
            pos = self._answer_positions(src["offset_mapping"][i], src.sequence_ids(i), answers)
            src_pos.append((pos, original and bool(answers)))
        alts = [self._alt_source_fields(r) for r in recs]
        alt_idx = [i for i, a in enumerate(alts) if a is not None]
        alt_ids: dict[int, list[int]] = {}
        if alt_idx:
            enc = self._qa_encode(
                [alts[i]["source_question"] for i in alt_idx],  # type: ignore[index]
                [alts[i]["source_context"] for i in alt_idx],  # type: ignore[index]
                False,
            )
            alt_ids = {i: list(ids) for i, ids in zip(alt_idx, enc["input_ids"], strict=True)}
        feats = []
        mapping = tgt["overflow_to_sample_mapping"]
        for w in range(len(tgt["input_ids"])):
            i = int(mapping[w])
            seq = tgt.sequence_ids(w)
            offsets = tgt["offset_mapping"][w]
            start, end = self._answer_positions(offsets, seq, recs[i].get("answers") or [])
            (s_start, s_end), s_ok = src_pos[i]
            feats.append(
                {
                    "example_index": i,
                    "target_input_ids": list(tgt["input_ids"][w]),
                    "source_input_ids": list(src["input_ids"][i]),
                    "alt_source_input_ids": alt_ids.get(i),
                    "source_is_original": reals[i][1],
                    # context tokens only: question and special tokens cannot start an answer
                    "offsets": [
                        tuple(o) if sid == 1 else None for o, sid in zip(offsets, seq, strict=True)
                    ],
                    "target_start_positions": start,
                    "target_end_positions": end,
                    "source_start_positions": s_start,
                    "source_end_positions": s_end,
                    "source_has_labels": s_ok,
                }
            )
        return feats


# ----------------------------------------------------------------------------- collation

_TOKEN_KEYS = ("target_input_ids", "source_input_ids", "alt_source_input_ids")
_SEQ_LABEL_KEYS = ("target_labels", "source_labels")  # per token for tagging
_SCALAR_KEYS = (
    "target_labels",
    "source_labels",
    "target_start_positions",
    "target_end_positions",
    "source_start_positions",
    "source_end_positions",
)


@dataclass
class Collator:
    """Dynamic padding to the longest sequence of the batch, per stream.

    Produces ``{target,source,alt_source}_{input_ids,attention_mask}``, ``alt_is_real`` (items
    without a stand-in repeat their real source), ``source_is_original``,
    ``source_has_labels`` and the task's labels (token labels padded with -100, soft labels
    with zero rows). Metadata (offsets, word indices, example index) stays out of the batch.
    """

    task: str
    pad_id: int = 1

    def _pad(self, seqs: list[list[int]], value: int) -> Any:
        import torch

        width = max(len(s) for s in seqs)
        out = torch.full((len(seqs), width), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        return out

    def __call__(self, feats: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = {}
        alt = [f.get("alt_source_input_ids") for f in feats]
        streams = {
            "target": [f["target_input_ids"] for f in feats],
            "source": [f["source_input_ids"] for f in feats],
            "alt_source": [
                a if a is not None else f["source_input_ids"]
                for a, f in zip(alt, feats, strict=True)
            ],
        }
        for name, seqs in streams.items():
            batch[f"{name}_input_ids"] = self._pad(seqs, self.pad_id)
            batch[f"{name}_attention_mask"] = self._pad([[1] * len(s) for s in seqs], 0)
        original = [bool(f.get("source_is_original", True)) for f in feats]
        batch["source_is_original"] = torch.tensor(original)
        # A repeated real source is still the original; a stand-in is not.
        batch["alt_is_real"] = torch.tensor(
            [a is None and o for a, o in zip(alt, original, strict=True)]
        )
        batch["source_has_labels"] = torch.tensor(
            [bool(f.get("source_has_labels", True)) for f in feats]
        )
        if self.task == "tag":
            for key in _SEQ_LABEL_KEYS:
                batch[key] = self._pad([f[key] for f in feats], IGNORE_INDEX)
            if "target_soft_labels" in feats[0]:
                width = batch["target_labels"].shape[1]
                c = feats[0]["target_soft_labels"].shape[1]
                soft = torch.zeros((len(feats), width, c), dtype=torch.float32)
                for i, f in enumerate(feats):
                    arr = torch.as_tensor(f["target_soft_labels"])
                    soft[i, : arr.shape[0]] = arr
                batch["target_soft_labels"] = soft
        else:
            for key in _SCALAR_KEYS:
                if key in feats[0]:
                    batch[key] = torch.tensor([int(f[key]) for f in feats], dtype=torch.long)
        return batch
