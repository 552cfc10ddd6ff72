"""Text -> token ids: the one featuriser that training, evaluation, export and serving call.

Rules (docs/ARCHITECTURE.md "Tokenisation rules"):
- sentences and sentence pairs: ``tokenizer.encode(text, pair)``, truncated longest-first to
  ``max_length``;
- tagging: pre-split words encoded with ``is_pretokenized``; a word is read (and labelled) on
  one token, chosen by the model's word-token rule (``word_tokens``);
- QA: the question is cut to ``max_query_length`` sub-tokens, then ``question`` + ``context``
  is encoded with context-only truncation into doc-stride windows; offsets map each context
  token back to context characters.

Built on the ``tokenizers`` library alone, so the service needs neither torch nor
transformers; training hands in its HF tokenizer's ``backend_tokenizer``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Encoding, Tokenizer

from xmixup.core.vocab import WORD_TOKEN_RULES

if TYPE_CHECKING:
    from xmixup.core.bundle import Bundle

Offsets = tuple[int, int]
# From this many items on, the tokenizer's own thread pool encodes a batch (TokenizerMode).
POOLED_FROM = 8


def effective_doc_stride(max_length: int, max_query_length: int | None, doc_stride: int) -> int:
    """The window overlap QA really uses: ``doc_stride`` capped at half the context room left
    after the longest allowed question (the tokenizer refuses a stride that does not fit, e.g.
    the default 128 with max_length 128)."""
    room = max_length - (max_query_length or 0) - 4
    return max(0, min(doc_stride, room // 2))


# The bare word-boundary piece of SentencePiece (Metaspace) vocabularies.
WORD_BOUNDARY_PIECE = "\u2581"


def word_tokens(encoding: Encoding, rule: str) -> list[int]:
    """Per token: the word index on the token its word is read on, -1 elsewhere.

    The model records its rule (checkpoint config, bundle manifest; docs/ARCHITECTURE.md
    "Tokenisation rules"); a model that records none was trained with "first".

    ``"first"``: a word's first sub-token. ``"first-content"``: its first sub-token that is
    not a bare word-boundary piece ("▁"), when the word has a later sub-token. SentencePiece
    (Metaspace) vocabularies encode most CJK/Thai words as "▁" followed by the characters, so
    under "first" nearly every such word is read on the same content-free piece. WordPiece
    vocabularies have no such pieces: both rules agree there.
    """
    if rule not in WORD_TOKEN_RULES:
        raise ValueError(f"unknown word-token rule {rule!r}; use one of {WORD_TOKEN_RULES}")
    word_ids, tokens = encoding.word_ids, encoding.tokens
    out = [-1] * len(word_ids)
    prev = None
    for pos, w in enumerate(word_ids):
        if w is not None and w != prev:
            bare = rule == "first-content" and tokens[pos] == WORD_BOUNDARY_PIECE
            later = pos + 1 < len(word_ids) and word_ids[pos + 1] == w
            out[pos + 1 if bare and later else pos] = w
        prev = w
    return out


def context_offsets(encoding: Encoding) -> list[Offsets | None]:
    """Per token: its character offsets into the context, None for question/special tokens
    (only context tokens can start or end an answer)."""
    return [
        tuple(o) if seq == 1 else None  # type: ignore[misc]
        for o, seq in zip(encoding.offsets, encoding.sequence_ids, strict=True)
    ]


@dataclass(frozen=True)
class TokenizerInfo:
    # The pad id is not here on purpose: it is the bundle's (manifest v2) or, without one,
    # xmixup.core.special_tokens.pad_id_of — one rule.
    max_length: int


def literal_special_text(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of ``tokenizer`` on which user text can never produce a control token.

    Two ways a literal ``"<pad>"`` in a request becomes id 1 otherwise: the added-token matcher
    (switched off by ``encode_special_tokens``) and, for SentencePiece-style Unigram
    vocabularies such as XLM-R's, the special pieces themselves, which sit in the model's
    vocabulary with score 0 (the best possible) and win the segmentation. Those pieces are
    renamed with a trailing "▁": the Metaspace pre-tokenizer only ever puts "▁" at the start
    of a word, so no text can match them, while every score (and so the unknown-piece penalty
    derived from the lowest one) stays as it was. ``"<pad>"`` becomes ``"<", "pad", ">"``; the
    ids the post-processor adds (``<s>``, ``</s>``) and all other text are unaffected.
    Training and serving both encode through this copy, so they agree on such text too.
    """
    return _literal_from_json(tokenizer.to_str())


def _literal_from_json(text: str) -> Tokenizer:
    data = json.loads(text)
    specials = {t["content"] for t in data.get("added_tokens", []) if t.get("special")}
    model = data.get("model", {})
    if model.get("type") == "Unigram":
        for piece in model.get("vocab", []):
            if piece[0] in specials:
                piece[0] += "\u2581"
    literal = Tokenizer.from_str(json.dumps(data))
    literal.encode_special_tokens = True
    literal.no_padding()
    literal.no_truncation()
    return literal


class TokenizerCache:
    """Literal tokenizers by the content of their ``tokenizer.json``, for encoders that share.

    A 250k-piece Unigram tokenizer takes seconds to build and ~250 MB of memory; the service's
    models of one backbone share one (its registry passes one cache to every model's encoder).
    Entries live only while an encoder holds them, so a long-running service whose reloads bring
    new vocabularies does not keep the old ones.
    """

    def __init__(self) -> None:
        self._built: weakref.WeakValueDictionary[str, _LockedTokenizer] = (
            weakref.WeakValueDictionary()
        )

    def load(self, tokenizer_path: Path) -> _LockedTokenizer:
        text = Path(tokenizer_path).read_text(encoding="utf-8")
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = _LockedTokenizer(_literal_from_json(text))
        return built

    def __len__(self) -> int:
        return len(self._built)


class _LockedTokenizer:
    """One tokenizer whose truncation each call sets under a lock: ``tokenizers`` keeps
    truncation as mutable state, and one copy per configuration would cost a full tokenizer
    each (seconds, ~250 MB for a multilingual vocabulary)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.lock = threading.Lock()


class TokenizerMode:
    """A tokenizer in one fixed truncation configuration (``None``: no truncation)."""

    padding = None

    def __init__(self, shared: _LockedTokenizer, truncation: dict[str, Any] | None) -> None:
        self._shared = shared
        self._args = truncation
        with shared.lock:
            self._apply()
            self.truncation = shared.tokenizer.truncation  # as the library reports it

    def _apply(self) -> None:
        tokenizer = self._shared.tokenizer
        if self._args is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(**self._args)

    def encode(self, *args: Any, **kwargs: Any) -> Encoding:
        with self._shared.lock:
            self._apply()
            return self._shared.tokenizer.encode(*args, **kwargs)

    def encode_batch(
        self,
        items: Sequence[Any],
        *,
        is_pretokenized: bool = False,
        add_special_tokens: bool = True,
    ) -> list[Encoding]:
        """``Tokenizer.encode_batch``, but a few items are encoded one call each: the library
        hands even two sentences to its thread pool, whose start-up costs more than the work
        (2-4 sentences 1.5-2x slower on a 2-core host) and whose threads then compete with
        onnxruntime's for the cores — a tax on every small request. Same encodings either way."""
        kw = {"is_pretokenized": is_pretokenized, "add_special_tokens": add_special_tokens}
        with self._shared.lock:
            self._apply()
            tokenizer = self._shared.tokenizer
            if len(items) >= POOLED_FROM:
                return tokenizer.encode_batch(list(items), **kw)
            return [
                tokenizer.encode(*(item if isinstance(item, tuple) else (item,)), **kw)
                for item in items
            ]


class TextEncoder:
    """One tokenizer in the fixed configurations the rules need.

    ``plain`` (no truncation), ``truncating`` (longest-first) and, given a ``doc_stride``,
    ``windowing`` (context-only, with overflowing windows) are views of one literal copy of
    ``tokenizer`` (``literal_special_text``), each setting its truncation per call under a
    lock, so the service's threads cannot race on it. ``from_file`` with a ``TokenizerCache``
    shares that copy between encoders of the same ``tokenizer.json``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer | _LockedTokenizer,
        max_length: int,
        doc_stride: int | None = None,
        max_query_length: int | None = None,
    ) -> None:
        if isinstance(tokenizer, Tokenizer):
            tokenizer = _LockedTokenizer(literal_special_text(tokenizer))
        self.plain = TokenizerMode(tokenizer, None)
        self.max_query_length = max_query_length or max_length
        longest_first = {"max_length": max_length, "strategy": "longest_first"}
        self.truncating = TokenizerMode(tokenizer, longest_first)
        self.windowing: TokenizerMode | None = None
        if doc_stride is not None:
            # doc_stride is the overlap between consecutive context windows, as in HF run_qa.
            stride = effective_doc_stride(max_length, max_query_length, doc_stride)
            only_second = {"max_length": max_length, "stride": stride, "strategy": "only_second"}
            self.windowing = TokenizerMode(tokenizer, only_second)
        self.info = TokenizerInfo(max_length=max_length)

    @classmethod
    def from_file(
        cls,
        tokenizer_path: Path,
        max_length: int,
        doc_stride: int | None = None,
        max_query_length: int | None = None,
        *,
        cache: TokenizerCache | None = None,
    ) -> TextEncoder:
        """The encoder of a ``tokenizer.json`` (a bundle's or a backbone's)."""
        shared = (cache or TokenizerCache()).load(tokenizer_path)
        return cls(shared, max_length, doc_stride, max_query_length)

    @classmethod
    def for_bundle(cls, bundle: Bundle, cache: TokenizerCache | None = None) -> TextEncoder:
        """The encoder a bundle's manifest asks for (the service's and the Predictor's)."""
        m = bundle.manifest
        return cls.from_file(
            bundle.tokenizer_path, m.max_length, m.doc_stride, m.max_query_length, cache=cache
        )

    def _truncated(
        self, items: Sequence[object], truncate: Sequence[bool], pretokenized: bool
    ) -> tuple[list[Encoding], list[bool]]:
        """Encode ``items``; those over ``max_length`` are re-encoded truncated where allowed,
        the others keep their full (too long) encoding for the caller to refuse."""
        encodings = self.plain.encode_batch(list(items), is_pretokenized=pretokenized)
        limit = self.info.max_length
        over = [i for i, e in enumerate(encodings) if len(e.ids) > limit and truncate[i]]
        if over:
            redone = self.truncating.encode_batch(
                [items[i] for i in over], is_pretokenized=pretokenized
            )
            for i, enc in zip(over, redone, strict=True):
                encodings[i] = enc
        cut = set(over)
        return encodings, [i in cut for i in range(len(items))]

    def encode_texts(
        self, texts: Sequence[str | tuple[str, str]], truncate: Sequence[bool]
    ) -> tuple[list[Encoding], list[bool]]:
        """Encode strings or ``(text, pair)``; returns encodings and whether each was cut."""
        return self._truncated(texts, truncate, pretokenized=False)

    def encode_words(
        self, word_lists: Sequence[Sequence[str]], truncate: Sequence[bool]
    ) -> tuple[list[Encoding], list[bool]]:
        """Encode pre-split words; ``Encoding.word_ids`` maps tokens back to words."""
        return self._truncated([list(w) for w in word_lists], truncate, pretokenized=True)

    def cap_questions(self, questions: Sequence[str]) -> list[tuple[str, int]]:
        """Per question: the question cut to ``max_query_length`` sub-tokens (where the first
        token past the limit starts) and its full length in sub-tokens."""
        encodings = self.plain.encode_batch(list(questions), add_special_tokens=False)
        limit = self.max_query_length
        out = []
        for question, enc in zip(questions, encodings, strict=True):
            n = len(enc.ids)
            out.append((question if n <= limit else question[: enc.offsets[limit][0]], n))
        return out

    def encode_windows(
        self, questions: Sequence[str], contexts: Sequence[str]
    ) -> list[list[Encoding]]:
        """Per item: ``question`` + ``context`` as doc-stride windows over the context.

        Questions are encoded as given (cap them first). Raises the tokenizer's exception when
        a question leaves the context no room.
        """
        assert self.windowing is not None, "windowing needs doc_stride"
        pairs = list(zip(questions, contexts, strict=True))
        return [[first, *first.overflowing] for first in self.windowing.encode_batch(pairs)]
