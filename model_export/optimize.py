"""Transformer graph fusions with onnxruntime's own optimizer, and the fp16 conversion.

`onnxruntime.transformers.optimizer.optimize_model(model_type="bert")` pattern-matches the
encoder's sub-graphs into fused contrib ops (Attention, SkipLayerNormalization, BiasGelu, ...).
Which patterns match depends on how the graph was traced, so the report says which fusions
happened and which did not; the caller checks parity and falls back to the unfused graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The fused ops a BERT-family encoder can produce; a count of 0 means "did not fuse".
EXPECTED_FUSIONS = (
    "EmbedLayerNormalization",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "LayerNormalization",
)
# Kept in fp32 by the fp16 conversion: reductions and exp/log whose fp16 rounding is visible in
# the outputs (LayerNorm statistics, softmax normalisers, the λ gate's entropies and sigmoid).
FP16_BLOCKED_OPS = (
    "LayerNormalization",
    "SkipLayerNormalization",
    "EmbedLayerNormalization",
    "Softmax",
    "LogSoftmax",
    "Log",
    "Exp",
    "ReduceSum",
    "ReduceMean",
    "Sigmoid",
    "Div",
)


@dataclass
class OptimizeReport:
    """What the optimizer did: fused op counts, which expected fusions did not happen."""

    fused: dict[str, int] = field(default_factory=dict)
    not_fused: list[str] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fused": self.fused,
            "not_fused": self.not_fused,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "options": self.options,
        }


def count_ops(model: Any, op_type: str) -> int:
    """Nodes of `op_type` in an onnx ModelProto (top-level graph)."""
    return sum(1 for node in model.graph.node if node.op_type == op_type)


def optimize_graph(
    src: Path,
    dst: Path,
    *,
    num_heads: int,
    hidden_size: int,
    use_gpu: bool = False,
    embed_layer_norm: bool = True,
    float16: bool = False,
    external_data: bool = False,
) -> OptimizeReport:
    """Fuse `src` into `dst` with onnxruntime's BERT fusions (optionally then fp16).

    `embed_layer_norm=False` disables the EmbedLayerNormalization fusion, whose fused op also
    rewrites the attention mask input and is the fusion most likely to mis-fire on a graph with
    two streams sharing one embedding table.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = embed_layer_norm
    # GELU approximations change numerics beyond 1e-4 on some inputs; exact erf fusions only.
    options.enable_gelu_approximation = False
    before = onnx.load(str(src), load_external_data=False)
    nodes_before = len(before.graph.node)
    del before
    # opt_level=0: only the Python fusions (portable graph); the hardware-specific rewrites
    # happen in the serving session (xmixup.core.runner uses ORT_ENABLE_ALL).
    model = optimize_model(
        str(src),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
        use_gpu=use_gpu,
    )
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items()}
    fused = {k: v for k, v in stats.items() if v}
    not_fused = [k for k in EXPECTED_FUSIONS if not stats.get(k)]
    if float16:
        model.convert_float_to_float16(keep_io_types=True, op_block_list=list(FP16_BLOCKED_OPS))
    model.save_model_to_file(str(dst), use_external_data_format=external_data)
    report = OptimizeReport(
        fused=fused,
        not_fused=not_fused,
        nodes_before=nodes_before,
        nodes_after=len(model.model.graph.node),
        options={"embed_layer_norm": embed_layer_norm, "float16": float16, "use_gpu": use_gpu},
    )
    logger.info(
        "fusions: %s; not fused: %s; nodes %d -> %d",
        ", ".join(f"{k}×{v}" for k, v in fused.items()) or "none",
        ", ".join(not_fused) or "none",
        report.nodes_before,
        report.nodes_after,
    )
    return report


def convert_float16(src: Path, dst: Path, *, external_data: bool = False) -> None:
    """fp16 weights/compute with fp32 I/O and the numerically sensitive ops kept in fp32.

    Used when the fused graph was refused (parity) and the plain graph is converted instead.
    """
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True, op_block_list=list(FP16_BLOCKED_OPS))
    model.save_model_to_file(str(dst), use_external_data_format=external_data)
