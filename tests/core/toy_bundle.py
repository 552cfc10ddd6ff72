"""A toy bundle without torch: a hand-built classify graph with the paired-input contract and a
word-level tokenizer whose special tokens sit at chosen ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from xmixup.core.bundle import file_sha256
from xmixup.core.vocab import INPUT_NAMES

# Ids away from 0 and 1 (the two old fallbacks), so a test can tell the rule from a default.
SPECIALS = {"<s>": 0, "</s>": 2, "<pad>": 3, "<unk>": 4, "<mask>": 5}
WORDS = ["hello", "world", "guten", "tag", "welt", "[PAD]"]


def toy_classify_graph(path: Path, num_labels: int = 3) -> None:
    """A hand-built graph with the classify bundle's I/O contract (no torch needed):
    probabilities = softmax(W · [sum(target mask), sum(source mask)]), mixup_ratio = 0.25."""
    b, lt, ls = "batch", "target_length", "source_length"
    inputs = [
        helper.make_tensor_value_info("target_input_ids", TensorProto.INT64, [b, lt]),
        helper.make_tensor_value_info("target_attention_mask", TensorProto.INT64, [b, lt]),
        helper.make_tensor_value_info("source_input_ids", TensorProto.INT64, [b, ls]),
        helper.make_tensor_value_info("source_attention_mask", TensorProto.INT64, [b, ls]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [b, num_labels]),
        helper.make_tensor_value_info("mixup_ratio", TensorProto.FLOAT, [b]),
    ]
    weight = np.arange(2 * num_labels, dtype=np.float32).reshape(2, num_labels) / 10
    nodes = [
        helper.make_node("Cast", ["target_attention_mask"], ["tm"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["source_attention_mask"], ["sm"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["tm", "axes1"], ["tl"], keepdims=1),
        helper.make_node("ReduceSum", ["sm", "axes1"], ["sl"], keepdims=1),
        helper.make_node("Concat", ["tl", "sl"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "W"], ["logit"]),
        helper.make_node("Softmax", ["logit"], ["probabilities"], axis=-1),
        helper.make_node("ReduceSum", ["tl", "axes1"], ["tl1"], keepdims=0),
        helper.make_node("Mul", ["tl1", "zero"], ["z"]),
        helper.make_node("Add", ["z", "quarter"], ["mixup_ratio"]),
        # keep the id inputs alive in the graph so ORT reports them as inputs
        helper.make_node("Shape", ["target_input_ids"], ["_s1"]),
        helper.make_node("Shape", ["source_input_ids"], ["_s2"]),
    ]
    inits = [
        helper.make_tensor("axes1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel().tolist()),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("quarter", TensorProto.FLOAT, [], [0.25]),
    ]
    graph = helper.make_graph(nodes, "toy", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def toy_fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "name": "toy-classify",
        "task": "classify",
        "labels": ["a", "b", "c"],
        "backbone": "tiny",
        "mixup_layer": 1,
        "lambda0": 0.5,
        "max_length": 64,
        "opset": 17,
        "precision": "fp32",
        "inputs": list(INPUT_NAMES),
        "outputs": ["probabilities", "mixup_ratio"],
    }
    fields.update(overrides)
    return fields


def toy_expected_probabilities(target_mask: np.ndarray, source_mask: np.ndarray) -> np.ndarray:
    """What the toy graph computes: softmax of the two streams' real lengths times W."""
    weight = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    lengths = np.stack([target_mask.sum(1), source_mask.sum(1)], axis=1).astype(np.float32)
    logits = lengths @ weight
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def toy_tokenizer(path: Path) -> None:
    """A word-level ``tokenizer.json``: specials at ``SPECIALS``, then ``WORDS``; whitespace split.
    ``[PAD]`` is an ordinary word here, a second pad spelling the rule must not prefer."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = dict(SPECIALS)
    vocab[WORDS[0]] = 1
    for word in WORDS[1:]:
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(SPECIALS))
    tokenizer.save(str(path))


def make_toy_bundle(out: Path, **overrides: object) -> Path:
    """A complete current-format bundle in ``out`` (written by ``write_manifest``)."""
    from xmixup.core.bundle import write_manifest

    out.mkdir(parents=True, exist_ok=True)
    toy_classify_graph(out / "model.onnx")
    toy_tokenizer(out / "tokenizer.json")
    write_manifest(out, toy_fields(**overrides))
    return out


def write_v1_manifest(out: Path, **overrides: object) -> None:
    """A format version 1 manifest written by hand, as xmixup before format 2 wrote it."""
    files = {
        name: {"sha256": file_sha256(out / name), "size": (out / name).stat().st_size}
        for name in ("model.onnx", "tokenizer.json")
    }
    raw = {
        "format_version": 1,
        **toy_fields(**overrides),
        "tag_scheme": None,
        "pair_input": False,
        "method": "xmixup",
        "doc_stride": None,
        "max_query_length": None,
        "max_answer_length": None,
        "files": files,
        "parity": {},
        "metrics": {},
        "export": {},
        "xmixup_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    (out / "manifest.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
