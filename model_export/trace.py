"""`XMixupModel.predict` as one ONNX graph: the traced module, its inputs and dynamic axes.

The legacy TorchScript exporter is the only one used: onnxruntime's BERT fusions match its op
patterns (measured: graphs from the dynamo exporter fuse no Attention / EmbedLayerNorm).
The graph has three independent dynamic axes: batch, target_length, source_length.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_export.parity import Feeds, generated_cases
from xmixup.core.vocab import INPUT_NAMES, SOURCE_PROBS_OUTPUT, TRUST_OUTPUT, graph_outputs
from xmixup.errors import UserError

if TYPE_CHECKING:
    import torch

    from training.modeling import XMixupModel

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
AXES = {
    "target_input_ids": ("batch", "target_length"),
    "target_attention_mask": ("batch", "target_length"),
    "source_input_ids": ("batch", "source_length"),
    "source_attention_mask": ("batch", "source_length"),
}


class ExportError(UserError):
    """The exporter could not produce a usable graph."""


def graph_inputs(method: str) -> tuple[str, ...]:
    """The inputs a method's graph really takes (manifest.inputs; the service feeds these)."""
    if method == "xmixup":
        return INPUT_NAMES
    if method == "translate-test":
        return ("source_input_ids", "source_attention_mask")
    return ("target_input_ids", "target_attention_mask")  # translate-train, zero-shot


def predict_module(
    model: XMixupModel, inputs: Sequence[str], outputs: Sequence[str]
) -> torch.nn.Module:
    """nn.Module whose positional forward(*inputs) returns predict()'s outputs as a tuple."""
    import torch

    class PredictGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            ids_a: torch.Tensor,
            mask_a: torch.Tensor,
            ids_b: torch.Tensor | None = None,
            mask_b: torch.Tensor | None = None,
        ) -> tuple[torch.Tensor, ...]:
            given = [t for t in (ids_a, mask_a, ids_b, mask_b) if t is not None]
            feeds = dict(zip(inputs, given, strict=True))
            if "target_input_ids" not in feeds:  # translate-test: the source is the only stream
                feeds["target_input_ids"] = feeds["source_input_ids"]
                feeds["target_attention_mask"] = feeds["source_attention_mask"]
            result = self.model.predict(
                feeds["target_input_ids"],
                feeds["target_attention_mask"],
                feeds.get("source_input_ids"),
                feeds.get("source_attention_mask"),
            )
            return tuple(result[name] for name in outputs)

    return PredictGraph().eval()


def full_source_module(model: XMixupModel) -> torch.nn.Module:
    """A measurement-only variant of a tag/QA graph that runs the source stream to the top
    (what a naive export of both streams would compute), to quantify what stopping the
    source at the mixup layer saves. Outputs: the task outputs + the source's last state."""
    import torch

    class FullSource(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            t_ids: torch.Tensor,
            t_mask: torch.Tensor,
            s_ids: torch.Tensor,
            s_mask: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            # XMixupModel._mixed_streams with source_full=True: the training-time path.
            mixed = self.model._mixed_streams(
                t_ids, t_mask.bool(), s_ids, s_mask.bool(), True, False
            )
            assert mixed.source is not None
            logits = self.model.head(mixed.target, t_mask.bool())
            if model.config.task == "qa":
                return logits[..., 0], logits[..., 1], mixed.ratio, mixed.source
            return logits, mixed.ratio, mixed.source

    return FullSource().eval()


def torch_runner(
    model: XMixupModel, inputs: Sequence[str], outputs: Sequence[str]
) -> Callable[[Feeds], dict[str, np.ndarray]]:
    """The PyTorch reference the graph is checked against: the same module that is traced."""
    import torch

    module = predict_module(model, inputs, outputs)

    def run(feeds: Feeds) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = module(*(torch.from_numpy(feeds[name]) for name in inputs))
        return {name: t.float().numpy() for name, t in zip(outputs, result, strict=True)}

    return run


def _example_inputs(inputs: Sequence[str], vocab_size: int, pad_id: int) -> tuple[Any, ...]:
    """Trace example: batch 2, target 7 vs source 11 tokens, row 1 padded on both streams.

    Unequal, non-trivial sizes keep the tracer from equating or specialising the axes
    (a trace with Lt == Ls could tie them)."""
    import torch

    (case,) = generated_cases(
        vocab_size, pad_id=pad_id, inputs=inputs, shapes=((2, 7, 11),), seed=1234
    )
    return tuple(torch.from_numpy(case[1][name]) for name in inputs)


def _dynamic_axes(inputs: Sequence[str], outputs: Sequence[str]) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {name: dict(enumerate(AXES[name])) for name in inputs}
    for name in outputs:
        if name in ("probabilities", SOURCE_PROBS_OUTPUT, "mixup_ratio", TRUST_OUTPUT):
            axes[name] = {0: "batch"}
        elif name.startswith("source"):
            axes[name] = {0: "batch", 1: "source_length"}
        else:
            axes[name] = {0: "batch", 1: "target_length"}
    return axes


def export_onnx(
    model: XMixupModel,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    module: torch.nn.Module | None = None,
) -> None:
    """Trace `model.predict` (or `module`) into `path` and check its dynamic axes."""
    import torch

    config = model.config
    inputs = tuple(inputs or graph_inputs(config.method))
    outputs = tuple(outputs or graph_outputs(config.task, model.trust is not None, config.method))
    module = module if module is not None else predict_module(model, inputs, outputs)
    enc_cfg: Any = model.encoder.config
    example = _example_inputs(inputs, int(enc_cfg.vocab_size), int(enc_cfg.pad_token_id or 0))
    t0 = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_axes=_dynamic_axes(inputs, outputs),
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:  # exporter internals raise anything; keep the reason
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        raise ExportError(
            f"torch.onnx.export failed: {reason}",
            "try --opset 17, or report the model (config.json) with this message",
        ) from exc
    logger.info("traced the graph in %.1fs", time.perf_counter() - t0)
    check_dynamic_axes(path, inputs)


def check_dynamic_axes(path: Path, inputs: Sequence[str]) -> None:
    """The graph's inputs must have symbolic (not fixed) batch and length dims, and the two
    streams' length dims must be different symbols (independent lengths)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims: dict[str, list[str]] = {}
    for value in model.graph.input:
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = [d.dim_param or str(d.dim_value) for d in shape]
    got = sorted(dims)
    if got != sorted(inputs):
        raise ExportError(f"exported graph takes inputs {got}, expected {sorted(inputs)}")
    for name, shape in dims.items():
        if len(shape) != 2 or any(not d or d.isdigit() for d in shape):
            raise ExportError(f"graph input {name!r} has fixed shape {shape}; expected dynamic")
    both = "target_input_ids" in dims and "source_input_ids" in dims
    if both and dims["target_input_ids"][1] == dims["source_input_ids"][1]:
        raise ExportError("target and source lengths were traced as one axis")
