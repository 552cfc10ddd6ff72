"""Seeded source-noise model: a surrogate for a machine back-translated ("translate-test-like")
source when the data has no ``source_bt``.

No MT system is available offline, so scheduled sampling and the robustness sweep degrade the
human-translated English source with three word-level edits typical of MT output:

* **drop** - the word is removed (MT omissions);
* **swap** - the word trades places with a neighbour at distance 1 or 2 (local reordering);
* **substitute** - the word is replaced by another word of the same language drawn from a
  vocabulary built from the data set's own source side, by corpus frequency (wrong lexical
  choice; frequent words are the likely substitutes, as in real MT errors).

``p`` is the probability that a word *initiates* an edit; the edit is drawn uniformly from
``ops``. A swap moves two words but counts once, so the fraction of edited positions is
≈ p (a little more for swaps). Protected words (QA answers) are never edited nor moved.

Determinism: every random draw comes from an RNG seeded by sha256(seed, item key, step,
stream), so reruns reproduce exactly, and every position always consumes the same draws
whatever ``p`` is. Hence the words edited at p = 0.15 are a subset of those edited at
p = 0.3 for the same (seed, key, step): the robustness sweep degrades the *same* sources
progressively instead of drawing unrelated noise per level. ``p = 0`` is the identity.

Tagging (documented choice): tags travel with their words - a dropped word drops its tag, a
swapped word takes its tag along. A substituted word keeps the tag of its *position* (the
slot's syntactic role is unchanged, the word is not), and its index is reported in
``NoisyTokens.substituted`` so a loss can ignore it. The source-side task loss is skipped
on noisy sources anyway (as in the paper's code); the tags are kept aligned so that any
consumer that does use them sees a consistent sequence.

Strings are split on whitespace and rejoined with single spaces (the source language is
English; text in a script without spaces would be one "word" and only substituted/dropped).
"""

from __future__ import annotations

import bisect
import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OPS: tuple[str, ...] = ("drop", "swap", "substitute")
_WORD = re.compile(r"\S+")


class Vocabulary:
    """Words of one language with frequencies; sampling is by frequency.

    Words are stored sorted so that the same corpus gives the same draws regardless of the
    order in which records were read.
    """

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.words = sorted(w for w, c in counts.items() if c > 0)
        self._cum: list[int] = []
        total = 0
        for w in self.words:
            total += counts[w]
            self._cum.append(total)
        self.total = total

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_token_lists(cls, token_lists: Iterable[Sequence[str]]) -> Vocabulary:
        counts: Counter[str] = Counter()
        for toks in token_lists:
            counts.update(toks)
        return cls(counts)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocabulary:
        return cls.from_token_lists(t.split() for t in texts)

    def sample(self, u: float, exclude: str | None = None) -> str | None:
        """The word at quantile ``u`` of the frequency distribution, avoiding ``exclude``."""
        if not self.words:
            return None
        idx = bisect.bisect_right(self._cum, int(u * self.total))
        idx = min(idx, len(self.words) - 1)
        word = self.words[idx]
        if word == exclude and len(self.words) > 1:
            # Deterministic fallback: the next word, so the result depends only on u.
            word = self.words[(idx + 1) % len(self.words)]
        return word


@dataclass
class NoisyTokens:
    """Result of noising a token list."""

    tokens: list[str]
    tags: list[str] | None
    substituted: list[int] = field(default_factory=list)  # output indices
    origin: list[int] = field(default_factory=list)  # input index of each output token
    n_dropped: int = 0
    n_swapped: int = 0
    n_substituted: int = 0

    @property
    def n_edits(self) -> int:
        return self.n_dropped + self.n_swapped + self.n_substituted


class SourceNoise:
    """``SourceNoise(p, seed)``: word dropout, local swaps and same-language substitution."""

    def __init__(
        self,
        p: float,
        seed: int = 0,
        vocab: Vocabulary | None = None,
        ops: Sequence[str] = OPS,
        max_shift: int = 2,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"noise probability {p} is not in [0, 1]")
        unknown = set(ops) - set(OPS)
        if unknown or not ops:
            raise ValueError(f"unknown noise ops {sorted(unknown)}; use a subset of {OPS}")
        self.p = p
        self.seed = seed
        self.vocab = vocab
        self.ops = tuple(ops)
        self.max_shift = max_shift

    # ------------------------------------------------------------------------------ building
    @classmethod
    def for_records(
        cls, records: Iterable[Any], task: str, p: float, seed: int = 0, **kwargs: Any
    ) -> SourceNoise:
        """A noise model whose substitution vocabulary is the records' own source side."""
        return cls(p, seed, vocab=source_vocabulary(records, task), **kwargs)

    def _rng(self, key: str, step: int, stream: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}|{key}|{step}|{stream}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    # ------------------------------------------------------------------------------- tokens
    def tokens(
        self,
        tokens: Sequence[str],
        tags: Sequence[str] | None = None,
        *,
        key: str,
        step: int = 0,
        stream: str = "tokens",
        protected: Iterable[int] = (),
    ) -> NoisyTokens:
        """Noise a token list (and its aligned tags). ``protected`` indices are untouched."""
        n = len(tokens)
        if tags is not None and len(tags) != n:
            raise ValueError(f"{len(tags)} tags for {n} tokens")
        result = NoisyTokens(
            list(tokens), list(tags) if tags is not None else None, origin=list(range(n))
        )
        if self.p == 0.0 or n == 0:
            return result
        keep = set(protected)
        rng = self._rng(key, step, stream)
        # Four draws per position, always, so decisions are monotone in p (module docstring).
        draws = [(rng.random(), rng.random(), rng.random(), rng.random()) for _ in range(n)]
        vocab = self.vocab or Vocabulary(Counter(tokens))  # no corpus: the item's own words
        arrangement = list(range(n))  # arrangement[pos] = original index now at pos
        dropped: set[int] = set()
        replaced: dict[int, str] = {}
        for i, (u, u_op, u_shift, u_word) in enumerate(draws):
            if u >= self.p or i in keep:
                continue
            op = self.ops[min(int(u_op * len(self.ops)), len(self.ops) - 1)]
            if op == "drop":
                dropped.add(i)
                result.n_dropped += 1
            elif op == "substitute":
                word = vocab.sample(u_word, exclude=tokens[i])
                if word is not None and word != tokens[i]:
                    replaced[i] = word
                    result.n_substituted += 1
            else:
                pos = arrangement.index(i)
                options = [
                    pos + d
                    for d in range(-self.max_shift, self.max_shift + 1)
                    if d != 0 and 0 <= pos + d < n and arrangement[pos + d] not in keep
                ]
                if options:
                    j = options[min(int(u_shift * len(options)), len(options) - 1)]
                    arrangement[pos], arrangement[j] = arrangement[j], arrangement[pos]
                    result.n_swapped += 1
        if len(dropped) == n:
            # An empty source would be no input at all; keep the first word in place.
            first = arrangement[0]
            dropped.discard(first)
            result.n_dropped -= 1
        out_tokens: list[str] = []
        out_tags: list[str] = []
        origin: list[int] = []
        for orig in arrangement:
            if orig in dropped:
                continue
            origin.append(orig)
            if orig in replaced:
                result.substituted.append(len(out_tokens))
            out_tokens.append(replaced.get(orig, tokens[orig]))
            if tags is not None:
                out_tags.append(tags[orig])
        result.tokens = out_tokens
        result.origin = origin
        result.tags = out_tags if tags is not None else None
        return result

    # -------------------------------------------------------------------------------- text
    def text(self, text: str, *, key: str, step: int = 0, stream: str = "text") -> str:
        """Noise a whitespace-delimited string. Unchanged (byte for byte) if nothing is edited."""
        words = text.split()
        noisy = self.tokens(words, key=key, step=step, stream=stream)
        if noisy.n_edits == 0:
            return text
        return " ".join(noisy.tokens)

    def qa(
        self,
        question: str,
        context: str,
        answers: Sequence[Mapping[str, Any]],
        *,
        key: str,
        step: int = 0,
    ) -> tuple[str, str, list[dict[str, Any]]]:
        """Noise a QA source. Words overlapping an answer are one protected chunk, kept verbatim
        and in place, so every answer text is still in the noisy context; its offset is
        recomputed."""
        new_question = self.text(question, key=key, step=step, stream="question")
        spans = [(m.start(), m.end()) for m in _WORD.finditer(context)]
        answer_spans = [
            (int(a["answer_start"]), int(a["answer_start"]) + len(a["text"])) for a in answers
        ]
        # Merge words overlapping any answer (and overlapping answers) into chunks.
        chunks: list[list[int]] = []  # [char_start, char_end, protected]
        for start, end in spans:
            hit = any(s < end and start < e for s, e in answer_spans)
            if hit and chunks and chunks[-1][2] and _overlaps_any(chunks[-1], start, answer_spans):
                chunks[-1][1] = end
            else:
                chunks.append([start, end, int(hit)])
        words = [context[s:e] for s, e, _ in chunks]
        protected = [i for i, c in enumerate(chunks) if c[2]]
        noisy = self.tokens(words, key=key, step=step, stream="context", protected=protected)
        if noisy.n_edits == 0:
            return new_question, context, [dict(a) for a in answers]
        new_starts: dict[int, int] = {}
        offset = 0
        for out_idx, orig in enumerate(noisy.origin):
            if out_idx:
                offset += 1  # the joining space
            new_starts[orig] = offset
            offset += len(noisy.tokens[out_idx])
        new_context = " ".join(noisy.tokens)
        new_answers = []
        for a in answers:
            a_start = int(a["answer_start"])
            idx = next((i for i in protected if chunks[i][0] <= a_start < chunks[i][1]), None)
            shifted = -1 if idx is None else new_starts[idx] + (a_start - chunks[idx][0])
            if new_context[shifted : shifted + len(a["text"])] != a["text"] or shifted < 0:
                # An answer that starts or ends in whitespace the rejoin changed: keep this
                # context clean rather than emit an answer that is not in it.
                return new_question, context, [dict(a) for a in answers]
            new_answers.append({"text": a["text"], "answer_start": shifted})
        return new_question, new_context, new_answers

    # ----------------------------------------------------------------------------- records
    def apply(self, record: Mapping[str, Any], task: str, step: int = 0) -> dict[str, Any]:
        """A copy of a JSONL record (dict) with ``source_bt*`` filled by noise over the source.

        A record that already has a real back-translation keeps it: real MT beats a surrogate.
        """
        out = dict(record)
        key = str(record["id"])
        if task in ("classify", "classification"):
            if out.get("source_bt") is None:
                out["source_bt"] = self.text(record["source"], key=key, step=step, stream="a")
                if record.get("source_pair") is not None:
                    out["source_bt_pair"] = self.text(
                        record["source_pair"], key=key, step=step, stream="b"
                    )
        elif task in ("tag", "tagging"):
            if out.get("source_bt_tokens") is None:
                noisy = self.tokens(
                    record["source_tokens"], record.get("source_tags"), key=key, step=step
                )
                out["source_bt_tokens"] = noisy.tokens
                out["source_bt_tags"] = noisy.tags
        elif task == "qa":
            if out.get("source_bt_context") is None:
                q, c, answers = self.qa(
                    record["source_question"],
                    record["source_context"],
                    record.get("source_answers") or [],
                    key=key,
                    step=step,
                )
                out["source_bt_question"], out["source_bt_context"] = q, c
                out["source_bt_answers"] = answers
        else:
            raise ValueError(f"unknown task {task!r}")
        return out


def _overlaps_any(chunk: list[int], start: int, answer_spans: list[tuple[int, int]]) -> bool:
    """Whether the word at ``start`` and the previous protected chunk share an answer span."""
    return any(s < chunk[1] and chunk[0] < e and s <= start < e for s, e in answer_spans)


def source_vocabulary(records: Iterable[Any], task: str) -> Vocabulary:
    """Vocabulary of the source side of records (dicts or schema models)."""

    def get(r: Any, name: str) -> Any:
        return r.get(name) if isinstance(r, Mapping) else getattr(r, name, None)

    counts: Counter[str] = Counter()
    for r in records:
        if task in ("tag", "tagging"):
            counts.update(get(r, "source_tokens") or [])
        elif task == "qa":
            counts.update((get(r, "source_question") or "").split())
            counts.update((get(r, "source_context") or "").split())
        else:
            counts.update((get(r, "source") or "").split())
            counts.update((get(r, "source_pair") or "").split())
    return Vocabulary(counts)
