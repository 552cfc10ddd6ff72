"""int8 dynamic quantisation for CPU serving (onnxruntime.quantization.quantize_dynamic).

Weights are quantised offline, activations per batch at run time, so no calibration data is
needed. Defaults were chosen by measurement (bench/export.py, see the export log / README):

- weight type QInt8 with uint8 activations (U8S8): the combination onnxruntime's x86 kernels
  run on VNNI (AVX512-VNNI / AVX-VNNI) dot-product instructions; `reduce_range` is only needed
  on CPUs without VNNI and costs accuracy, so it is off.
- only MatMul (and fused Attention) are quantised: the embedding Gather stays fp32 (int8
  embeddings save memory but not time, and hurt rare-token rows most), and so do the
  activation x activation matmuls (MatMulConstBOnly, the default for dynamic mode).
- nodes on the λ gate's path and the task head stay fp32: they are a sliver of the FLOPs, and
  their error feeds λ and the logits directly.
- `keep_fp32_after` keeps the MatMuls fed by the given ops fp32. `xmixup export --precision
  int8` passes the GELU ops, so it keeps every feed-forward down-projection fp32: on a trained
  SIB-200 classifier int8 MatMuls + int8 embeddings lost 1.14 points, with the
  down-projections kept fp32 0.41
  (bench/bundle_size.py, results/export.json `bundle_options`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Node-name patterns (legacy exporter names nodes by module path, e.g. "/head/dense/MatMul").
DEFAULT_EXCLUDE_PATTERNS = (r"gate", r"(^|/)head(_\d+)?/", r"classifier", r"qa_outputs")


@dataclass
class QuantizeOptions:
    # Per-channel weight scales: same speed as per-tensor, and on a trained SIB-200 classifier
    # it kept accuracy (87.75 vs fp32 87.91) where per-tensor lost 1.8 points (bench/export.py).
    per_channel: bool = True
    reduce_range: bool = False
    weight_type: str = "QInt8"  # or "QUInt8"
    op_types: tuple[str, ...] = ("MatMul", "Attention")
    exclude_patterns: tuple[str, ...] = DEFAULT_EXCLUDE_PATTERNS
    # MatMuls fed by these ops stay fp32, found by graph structure (the optimiser renames nodes,
    # so a layer's role is not in its name): ("BiasGelu", "Gelu", "FastGelu") keeps every
    # feed-forward down-projection fp32, whose GELU input has the widest activation range.
    keep_fp32_after: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "weight_type": self.weight_type,
            "op_types": list(self.op_types),
            "exclude_patterns": list(self.exclude_patterns),
            "keep_fp32_after": list(self.keep_fp32_after),
        }


@dataclass
class QuantizeReport:
    options: dict[str, Any]
    excluded_nodes: list[str] = field(default_factory=list)
    quantized_ops: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "excluded_nodes": self.excluded_nodes,
            "quantized_ops": self.quantized_ops,
        }


def sensitive_nodes(model: Any, patterns: Sequence[str], op_types: Sequence[str]) -> list[str]:
    """Names of quantisable nodes (`op_types`) whose name matches one of `patterns`."""
    compiled = [re.compile(p) for p in patterns]
    names: list[str] = []
    for node in model.graph.node:
        if not any(c.search(node.name) for c in compiled):
            continue
        if node.op_type in op_types:
            names.append(node.name)
        elif node.op_type == "Gemm" and "MatMul" in op_types:
            # The quantizer rewrites Gemm (the 2-D classification head) as "<name>_MatMul"
            # + Add before matching nodes_to_exclude, so both names are listed.
            names += [node.name, f"{node.name}_MatMul"]
    return names


def nodes_fed_by(model: Any, producer_ops: Sequence[str], op_types: Sequence[str]) -> list[str]:
    """Names of quantisable nodes (`op_types`) whose first input is an output of a node of
    one of `producer_ops`."""
    if not producer_ops:
        return []
    made_by = {out: node.op_type for node in model.graph.node for out in node.output}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in op_types and node.input and made_by.get(node.input[0]) in producer_ops
    ]


def quantize_int8(
    src: Path,
    dst: Path,
    options: QuantizeOptions | None = None,
    *,
    external_data: bool = False,
) -> QuantizeReport:
    """Dynamically quantise `src` (an fp32, usually fused, graph) into `dst`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = options or QuantizeOptions()
    model = onnx.load(str(src), load_external_data=False)
    excluded = sensitive_nodes(model, options.exclude_patterns, options.op_types)
    excluded += nodes_fed_by(model, options.keep_fp32_after, options.op_types)
    del model
    quantize_dynamic(
        model_input=str(src),
        model_output=str(dst),
        op_types_to_quantize=list(options.op_types),
        per_channel=options.per_channel,
        reduce_range=options.reduce_range,
        weight_type=getattr(QuantType, options.weight_type),
        nodes_to_exclude=excluded,
        use_external_data_format=external_data,
        # Fused contrib ops (SkipLayerNormalization, ...) have no ONNX shape inference; their
        # outputs are fp32, which the quantizer must be told instead of failing.
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    out = onnx.load(str(dst), load_external_data=False)
    counts: dict[str, int] = {}
    for node in out.graph.node:
        if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    logger.info(
        "int8: quantised %s; kept fp32: %d sensitive node(s) %s",
        counts or "nothing",
        len(excluded),
        excluded[:6],
    )
    return QuantizeReport(options=options.as_dict(), excluded_nodes=excluded, quantized_ops=counts)
