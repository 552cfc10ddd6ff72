"""Special tokens and the pad id: one rule, read from the tokenizer itself.

Training, evaluation, the exporter and the service all pad with the id this module finds, so
a batch padded in one place is padded the same everywhere. A bundle of format version 2 records
the result in its manifest; for older bundles and for checkpoints the rule runs on their
``tokenizer.json``. Only ``tokenizers`` is needed, imported when a file is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from xmixup.errors import UserError

# How each role is spelled in the tokenizer families the project meets: sentencepiece
# (XLM-R, multilingual-e5) and WordPiece (BERT). The first spelling the vocabulary has wins.
ROLE_SPELLINGS: dict[str, tuple[str, ...]] = {
    "bos": ("<s>", "[CLS]"),
    "eos": ("</s>", "[SEP]"),
    "unk": ("<unk>", "[UNK]"),
    "pad": ("<pad>", "[PAD]", "<PAD>"),
    "mask": ("<mask>", "[MASK]"),
}
# A vocabulary without a pad token is padded with 0: padded positions are masked out, so any id
# works, and 0 is what bundles of format version 1 have always been served with.
FALLBACK_PAD_ID = 0


class SpecialToken(BaseModel):
    """One special token: its string and its id in the vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=1)
    id: int = Field(ge=0)


class SpecialTokens(BaseModel):
    """The roles a tokenizer fills; a role its vocabulary lacks is ``None``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bos: SpecialToken | None = None
    eos: SpecialToken | None = None
    unk: SpecialToken | None = None
    pad: SpecialToken | None = None
    mask: SpecialToken | None = None

    @property
    def pad_id(self) -> int:
        """The id rows are right-padded with."""
        return self.pad.id if self.pad is not None else FALLBACK_PAD_ID


class _Vocabulary(Protocol):
    def token_to_id(self, token: str) -> int | None: ...


def special_tokens_of(tokenizer: Any) -> SpecialTokens:
    """The special tokens of a ``tokenizers.Tokenizer``, or of a transformers fast tokenizer
    (its ``backend_tokenizer``, i.e. the checkpoint's ``tokenizer.json``, is what is read)."""
    vocabulary: _Vocabulary = getattr(tokenizer, "backend_tokenizer", tokenizer)
    found: dict[str, SpecialToken] = {}
    for role, spellings in ROLE_SPELLINGS.items():
        for token in spellings:
            token_id = vocabulary.token_to_id(token)
            if token_id is not None:
                found[role] = SpecialToken(token=token, id=token_id)
                break
    return SpecialTokens(**found)


def pad_id_of(tokenizer: Any) -> int:
    """The pad id of a tokenizer (see :func:`special_tokens_of`); where no manifest says it."""
    return special_tokens_of(tokenizer).pad_id


def read_special_tokens(tokenizer_json: str | Path) -> SpecialTokens:
    """The special tokens of a ``tokenizer.json`` file."""
    from tokenizers import Tokenizer  # lazy: reading a manifest must not need it

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise UserError(
            f"{tokenizer_json}: not a tokenizer file the tokenizers library can read ({exc})",
            "copy the checkpoint's tokenizer.json (written by its fast tokenizer) unchanged",
        ) from None
    return special_tokens_of(tokenizer)
