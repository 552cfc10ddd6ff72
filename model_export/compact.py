"""Smaller graphs: int8 embedding rows and one copy of each repeated weight.

- ``quantize_embedding_rows``: the word-embedding table (384 of multilingual-e5-small's 470 MB)
  as int8 with one fp32 scale per row (symmetric, scale = max |row| / 127). Each lookup
  ``Gather(table, ids)`` becomes ``Gather(table_q, ids)`` → Cast → × ``Gather(scales, ids)``:
  only the rows a batch reads are dequantised. Per row, because a table's rows differ in
  norm by an order of magnitude (rare pieces are small) and one scale for all of them
  (onnxruntime's dynamic Gather quantisation, per tensor) spends most of the 8 bits on the
  largest rows. onnxruntime's quantiser has no per-row Gather mode, hence this rewrite.
  The lookups must be plain Gathers: the exporter skips the EmbedLayerNormalization fusion
  when the embeddings are quantised.
- ``dedupe_initializers``: the fused graph holds the attention weights once per stream
  (the fusion concatenates Q, K and V for each Attention node it makes); onnx-ir's
  deduplication pass keeps one copy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from xmixup.errors import UserError

logger = logging.getLogger(__name__)

WORD_EMBEDDING_SUFFIX = "word_embeddings.weight"


def word_embedding_name(model: Any) -> str:
    """The word-embedding initializer of an exported XMixupModel graph."""
    names = [i.name for i in model.graph.initializer if i.name.endswith(WORD_EMBEDDING_SUFFIX)]
    if len(names) != 1:
        raise UserError(
            f"expected one '*{WORD_EMBEDDING_SUFFIX}' initializer in the graph, found {names}",
            "export with --embeddings fp32 and without vocabulary trimming; report the model",
        )
    return names[0]


def quantize_embedding_rows(src: Path, dst: Path) -> dict[str, Any]:
    """Rewrite every lookup of the word-embedding table into its int8 per-row form."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    table = word_embedding_name(model)
    index = next(i for i, init in enumerate(graph.initializer) if init.name == table)
    weights = numpy_helper.to_array(graph.initializer[index]).astype(np.float32)
    scales = np.abs(weights).max(axis=1) / 127.0
    scales[scales == 0] = 1.0  # an all-zero row stays zero at any scale
    quantized = np.clip(np.rint(weights / scales[:, None]), -127, 127).astype(np.int8)
    consumers = [n for n in graph.node if table in n.input]
    if any(n.op_type != "Gather" or list(n.input).index(table) != 0 for n in consumers):
        raise UserError(
            f"{table} is read by {sorted({n.op_type for n in consumers})}, not only by Gather",
            "int8 embeddings need the graph without the EmbedLayerNormalization fusion",
        )
    del graph.initializer[index]
    graph.initializer.extend(
        [
            numpy_helper.from_array(quantized, f"{table}_int8"),
            numpy_helper.from_array(scales.astype(np.float32), f"{table}_scale"),
            numpy_helper.from_array(np.asarray([-1], np.int64), f"{table}_last_axis"),
        ]
    )
    rewritten: list[Any] = []
    for node in graph.node:
        if node.op_type != "Gather" or node.input[0] != table:
            rewritten.append(node)
            continue
        ids, out, p = node.input[1], node.output[0], f"{table}_q{len(rewritten)}"
        rewritten += [
            helper.make_node("Gather", [f"{table}_int8", ids], [f"{p}_rows"], name=f"{p}_rows"),
            helper.make_node("Gather", [f"{table}_scale", ids], [f"{p}_s"], name=f"{p}_s"),
            helper.make_node("Cast", [f"{p}_rows"], [f"{p}_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", [f"{p}_s", f"{table}_last_axis"], [f"{p}_s1"]),
            helper.make_node("Mul", [f"{p}_f", f"{p}_s1"], [out], name=f"{p}_dequant"),
        ]
    del graph.node[:]
    graph.node.extend(rewritten)
    onnx.save_model(model, str(dst))
    error = float(np.abs(quantized.astype(np.float32) * scales[:, None] - weights).max())
    logger.info(
        "int8 embeddings: %s %s, %d lookups, max |Δ| %.2e",
        table,
        weights.shape,
        len(consumers),
        error,
    )
    return {
        "table": table,
        "rows": int(weights.shape[0]),
        "scheme": "int8, symmetric, one scale per row",
        "lookups": len(consumers),
        "max_abs_error": error,
    }


# Matrices below this many elements stay fp32 (biases, the λ gate): they are a sliver of the
# bytes and feed λ and the logits directly.
WEIGHT_MIN_ELEMENTS = 65536
WEIGHT_READERS = ("MatMul", "Attention", "Gemm")


def store_weights_int8(
    src: Path, dst: Path, min_elements: int = WEIGHT_MIN_ELEMENTS
) -> dict[str, Any]:
    """Store every large matrix weight as int8 with one scale per column, dequantised by a
    Cast and a Mul on initializers only.

    Weight-only: the activations stay fp32, which is where dynamic int8 loses accuracy (on a
    trained XQuAD reader 1.7 F1). onnxruntime's constant folding turns Cast and Mul into the
    fp32 matrix when the session opens, so the bundle is small on disk and the graph runs at
    fp32 speed: a per-column int8 matrix folded at load needs no special kernel and keeps the
    fused Attention and MatMul kernels of the fp32 graph.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    readers: set[str] = set()
    for node in graph.node:
        if node.op_type in WEIGHT_READERS and len(node.input) > 1:
            readers.add(node.input[1])
    kept, stored, dequant = [], 0, []
    error = 0.0
    for init in graph.initializer:
        if (
            init.name not in readers
            or init.data_type != TensorProto.FLOAT
            or len(init.dims) != 2
            or init.dims[0] * init.dims[1] < min_elements
        ):
            kept.append(init)
            continue
        weights = numpy_helper.to_array(init).astype(np.float32)
        scales = np.abs(weights).max(axis=0) / 127.0
        scales[scales == 0] = 1.0
        quantized = np.clip(np.rint(weights / scales), -127, 127).astype(np.int8)
        error = max(error, float(np.abs(quantized * scales - weights).max()))
        name = init.name
        kept += [
            numpy_helper.from_array(quantized, f"{name}_int8"),
            numpy_helper.from_array(scales.astype(np.float32), f"{name}_scale"),
        ]
        # the dequantised matrix takes the initializer's name: its readers are unchanged
        dequant += [
            helper.make_node("Cast", [f"{name}_int8"], [f"{name}_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"{name}_f", f"{name}_scale"], [name], name=f"{name}_dq"),
        ]
        stored += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(dequant + nodes)
    onnx.save_model(model, str(dst))
    logger.info("int8-stored weights: %d matrices, max |Δ| %.2e", stored, error)
    return {
        "matrices": stored,
        "scheme": "int8, symmetric, one scale per column; fp32 once the session opens",
        "min_elements": min_elements,
        "max_abs_error": error,
    }


def dedupe_initializers(src: Path, dst: Path) -> dict[str, int]:
    """One copy of each initializer that is repeated byte for byte (onnx-ir's pass)."""
    import onnx_ir as ir
    from onnx_ir.passes.common import DeduplicateHashedInitializersPass

    def total_bytes(model: ir.Model) -> int:
        values = model.graph.initializers.values()
        return sum(int(v.const_value.nbytes) for v in values if v.const_value is not None)

    model = ir.load(str(src))
    before = len(model.graph.initializers)
    size_before = total_bytes(model)
    DeduplicateHashedInitializersPass()(model)
    size_after = total_bytes(model)
    ir.save(model, str(dst))
    return {
        "initializers_removed": before - len(model.graph.initializers),
        "bytes_saved": int(size_before - size_after),
    }
