"""Checkpoint -> verified bundle: trace, optimise, convert, check against PyTorch, write.

One ONNX graph holds both streams, the mixup layer, the task head and the paper's inference
rule (`XMixupModel.predict`). Steps, each logged:

1. trace `predict` with the legacy TorchScript exporter (or dynamo, see `EXPORTERS`) with
   three independent dynamic axes: batch, target_length, source_length;
2. check the raw graph against PyTorch (fp32, max |Δ| <= 1e-4 or AtolError);
3. onnxruntime transformer fusions; a fused graph that breaks parity is dropped for the
   unfused one (said in the log and in manifest.export);
4. fp16 / int8 conversion, whose agreement figures go to manifest.parity;
5. write model.onnx + tokenizer.json into a staging directory, then manifest.json (with
   checksums), verify it with the same loader the service uses, and move it into place.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_export.parity import (
    FP32_ATOL,
    Feeds,
    ParityReport,
    check_fp32,
    generated_cases,
    run_parity,
)
from xmixup.core import bundle as bundle_mod
from xmixup.errors import UserError

if TYPE_CHECKING:
    import torch

    from training.modeling import XMixupModel

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
EXPORTERS = ("auto", "legacy", "dynamo")
TASK_OUTPUTS = bundle_mod.TASK_OUTPUTS
# Above this many parameter bytes the graph cannot be one protobuf (2 GiB hard limit).
EXTERNAL_DATA_BYTES = 1_800_000_000
AXES = {
    "target_input_ids": ("batch", "target_length"),
    "target_attention_mask": ("batch", "target_length"),
    "source_input_ids": ("batch", "source_length"),
    "source_attention_mask": ("batch", "source_length"),
}


class ExportError(UserError):
    """The exporter could not produce a usable graph."""


# ----------------------------------------------------------------------------- graph I/O
def graph_inputs(method: str) -> tuple[str, ...]:
    """The inputs a method's graph really takes (manifest.inputs; the service feeds these)."""
    if method == "xmixup":
        return bundle_mod.INPUT_NAMES
    if method == "translate-test":
        return ("source_input_ids", "source_attention_mask")
    return ("target_input_ids", "target_attention_mask")  # translate-train, zero-shot


def _wrapper(model: XMixupModel, inputs: Sequence[str], outputs: Sequence[str]) -> torch.nn.Module:
    """nn.Module whose positional forward(*inputs) returns predict()'s outputs as a tuple."""
    import torch

    class PredictGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        # Explicit positional parameters (not *args): torch.export matches dynamic_shapes
        # to the signature, one entry per graph input.
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
            t_last, s_last, lam, _, _ = self.model._mixed_streams(
                t_ids, t_mask.bool(), s_ids, s_mask.bool(), True, False
            )
            assert s_last is not None
            logits = self.model.head(t_last, t_mask.bool())
            if model.config.task == "qa":
                return logits[..., 0], logits[..., 1], lam, s_last
            return logits, lam, s_last

    return FullSource().eval()


def _example_inputs(inputs: Sequence[str], vocab_size: int, pad_id: int) -> tuple[Any, ...]:
    """Trace example: batch 2, target 7 vs source 11 tokens, row 1 padded on both streams.

    Unequal, non-trivial sizes keep the tracer from equating or specialising the axes
    (torch.export specialises size-1 dims; a trace with Lt == Ls could tie them)."""
    import torch

    (case,) = generated_cases(
        vocab_size, pad_id=pad_id, inputs=inputs, shapes=((2, 7, 11),), seed=1234
    )
    return tuple(torch.from_numpy(case[1][name]) for name in inputs)


def export_onnx(
    model: XMixupModel,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "legacy",
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    module: torch.nn.Module | None = None,
) -> str:
    """Trace `model.predict` (or `module`) into `path`; returns the exporter actually used.

    "legacy" (TorchScript tracing) is the default because onnxruntime's BERT fusions match its
    op patterns (measured: dynamo graphs fuse no Attention / EmbedLayerNorm); "dynamo" is kept
    as an option; "auto" tries legacy, then dynamo if legacy raises.
    """
    import torch

    config = model.config
    inputs = tuple(inputs or graph_inputs(config.method))
    outputs = tuple(outputs or TASK_OUTPUTS[config.task])
    module = module if module is not None else _wrapper(model, inputs, outputs)
    enc_cfg: Any = model.encoder.config
    example = _example_inputs(inputs, int(enc_cfg.vocab_size), int(enc_cfg.pad_token_id or 0))
    order = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    errors: list[str] = []
    for kind in order:
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(False), torch.no_grad():
                if kind == "legacy":
                    dynamic_axes: dict[str, dict[int, str]] = {
                        name: dict(enumerate(AXES[name])) for name in inputs
                    }
                    for name in outputs:
                        if name == "probabilities" or name == "mixup_ratio":
                            dynamic_axes[name] = {0: "batch"}
                        elif name.startswith("source"):
                            dynamic_axes[name] = {0: "batch", 1: "source_length"}
                        else:
                            dynamic_axes[name] = {0: "batch", 1: "target_length"}
                    torch.onnx.export(
                        module,
                        example,
                        str(path),
                        input_names=list(inputs),
                        output_names=list(outputs),
                        dynamic_axes=dynamic_axes,
                        opset_version=opset,
                        do_constant_folding=True,
                        dynamo=False,
                    )
                else:
                    # Ranges must match the guards torch.export derives: lengths >= 2
                    # (sizes 0/1 are specialised; <s></s> makes 2 the real minimum) and at
                    # most the position table.
                    max_len = max_sequence_length(enc_cfg)
                    dims = {
                        "batch": torch.export.Dim("batch", min=1, max=65536),
                        "target_length": torch.export.Dim("target_length", min=2, max=max_len),
                        "source_length": torch.export.Dim("source_length", min=2, max=max_len),
                    }
                    dynamic_shapes = tuple(
                        {0: dims[AXES[name][0]], 1: dims[AXES[name][1]]} for name in inputs
                    )
                    program = torch.onnx.export(
                        module,
                        example,
                        input_names=list(inputs),
                        output_names=list(outputs),
                        dynamic_shapes=dynamic_shapes,
                        opset_version=opset,
                        dynamo=True,
                        verbose=False,
                    )
                    assert program is not None
                    program.save(str(path))
        except Exception as exc:  # exporter internals raise anything; keep the reason
            errors.append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            logger.warning("%s exporter failed: %s", kind, errors[-1])
            continue
        logger.info("exported with the %s exporter in %.1fs", kind, time.perf_counter() - t0)
        check_dynamic_axes(path, inputs)
        return kind
    raise ExportError(
        "torch.onnx.export failed: " + " | ".join(errors),
        "try --opset 17, or report the model (config.json) with this message",
    )


def max_sequence_length(enc_cfg: Any) -> int:
    """Longest input the position table allows (RoBERTa/XLM-R offset positions by pad+1)."""
    positions = int(enc_cfg.max_position_embeddings)
    if getattr(enc_cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= int(enc_cfg.pad_token_id or 0) + 1
    return positions


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


# ----------------------------------------------------------------------------- runners
def torch_runner(model: XMixupModel, inputs: Sequence[str], outputs: Sequence[str]) -> Any:
    import torch

    wrapper = _wrapper(model, inputs, outputs)

    def run(feeds: Feeds) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = wrapper(*(torch.from_numpy(feeds[name]) for name in inputs))
        return {name: t.float().numpy() for name, t in zip(outputs, result, strict=True)}

    return run


def ort_runner(path: Path, outputs: Sequence[str], *, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(feeds: Feeds) -> dict[str, np.ndarray]:
        values = session.run(list(outputs), feeds)
        return dict(zip(outputs, (np.asarray(v) for v in values), strict=True))

    return run


def real_cases(
    verify_data: Path,
    model: XMixupModel,
    checkpoint: Path,
    inputs: Sequence[str],
    *,
    limit: int = 256,
    batch_size: int = 8,
) -> list[tuple[str, Feeds]]:
    """Real JSONL items featurised exactly as training/evaluation do (training.features),
    padded per batch like the evaluator, at most `limit` items (export time stays bounded)."""
    from transformers import AutoTokenizer

    from training.collate import Collator
    from training.data.schema import read_jsonl
    from training.features import Featurizer

    config = model.config
    labels = list(config.labels) if config.task in ("classify", "tag") else None
    records, _ = read_jsonl(verify_data, config.task, labels=labels)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    featurizer = Featurizer(
        task=config.task,
        tokenizer=tokenizer,
        labels=list(config.labels),
        max_length=int(config.max_length or 128),
        doc_stride=config.doc_stride,
        max_query_length=config.max_query_length,
        use_bt=False,
    )
    feats = featurizer(records[:limit])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 1
    collate = Collator(config.task, int(pad_id))
    cases: list[tuple[str, Feeds]] = []
    for start in range(0, len(feats), batch_size):
        batch = collate(feats[start : start + batch_size])
        feeds = {name: batch[name].numpy().astype(np.int64) for name in inputs}
        cases.append((f"{verify_data.name}[{start}:{start + batch_size}]", feeds))
    logger.info(
        "--verify-data: %d features from %s in %d batches", len(feats), verify_data, len(cases)
    )
    return cases


# ----------------------------------------------------------------------------- bundle
@dataclass
class ExportResult:
    path: Path
    manifest: bundle_mod.Manifest
    log: dict[str, Any] = field(default_factory=dict)


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory", "choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(
            f"--out {out} is not empty", "pass a new directory, or --force to replace it"
        )


def _save_final(src: Path, dst: Path, external: bool) -> None:
    """Copy the chosen graph into the bundle; > 2 GB weights go to model.onnx.data."""
    import onnx

    model = onnx.load(str(src))
    if external:
        onnx.save_model(
            model,
            str(dst),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=dst.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(dst))


def export_bundle(checkpoint: str | Path, out: str | Path, **options: Any) -> bundle_mod.Manifest:
    """`xmixup export`: the whole pipeline; returns the written bundle's manifest.

    Takes the keyword options of :func:`export_bundle_result`.
    """
    return export_bundle_result(checkpoint, out, **options).manifest


def export_bundle_result(
    checkpoint: str | Path,
    out: str | Path,
    *,
    precision: str = "fp32",
    opset: int | None = None,
    verify_data: str | Path | None = None,
    name: str | None = None,
    optimize: bool = True,
    force: bool = False,
    exporter: str = "legacy",
    quantize_options: Any = None,
) -> ExportResult:
    import torch

    from model_export.optimize import convert_float16, count_ops, optimize_graph
    from model_export.quantize import QuantizeOptions, quantize_int8
    from training.modeling import XMixupModel

    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"unknown precision {precision!r}", "use fp32, fp16 or int8")
    if exporter not in EXPORTERS:
        raise UserError(f"unknown exporter {exporter!r}", f"use one of {', '.join(EXPORTERS)}")
    checkpoint, out = Path(checkpoint), Path(out)
    opset = int(opset or DEFAULT_OPSET)
    if not 14 <= opset <= 23:
        raise UserError(f"--opset {opset} is not supported", "use an opset between 14 and 23")
    if verify_data is not None and not Path(verify_data).is_file():
        raise UserError(f"--verify-data {verify_data} does not exist", "pass a JSONL file")
    _prepare_out(out, force)
    t_start = time.perf_counter()

    model = XMixupModel.from_pretrained(checkpoint)
    model.eval()
    config = model.config
    enc_cfg: Any = model.encoder.config
    inputs = graph_inputs(config.method)
    outputs = TASK_OUTPUTS[config.task]
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    external = param_bytes > EXTERNAL_DATA_BYTES
    log: dict[str, Any] = {"exporter": None, "opset": opset, "external_data": external}

    out.parent.mkdir(parents=True, exist_ok=True)
    # no_grad as a context, never torch.set_grad_enabled(False): the exporter is also called
    # in-process (tests, the demo) and must not switch autograd off for its caller.
    with (
        torch.no_grad(),
        tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp_name,
    ):
        tmp = Path(tmp_name)
        raw = tmp / "raw.onnx"
        log["exporter"] = export_onnx(model, raw, opset=opset, exporter=exporter)

        # -- cases: generated (batch 1 and 3, unequal lengths, padding) + real items
        cases = generated_cases(
            int(enc_cfg.vocab_size),
            pad_id=int(enc_cfg.pad_token_id or 0),
            inputs=inputs,
        )
        real: list[tuple[str, Feeds]] = []
        if verify_data is not None:
            real = real_cases(Path(verify_data), model, checkpoint, inputs)
            log["verify_data"] = {"path": str(verify_data), "batches": len(real)}
        all_cases = cases + real
        reference = torch_runner(model, inputs, outputs)
        cached: dict[int, dict[str, np.ndarray]] = {}

        def torch_fn(feeds: Feeds) -> dict[str, np.ndarray]:
            key = id(feeds)  # each case's reference is computed once for all variants
            if key not in cached:
                cached[key] = reference(feeds)
            return cached[key]

        def parity(path: Path) -> ParityReport:
            return run_parity(
                config.task,
                all_cases,
                torch_fn,
                ort_runner(path, outputs),
                max_answer_length=config.max_answer_length,
            )

        raw_report = parity(raw)
        check_fp32(raw_report, FP32_ATOL)  # the plain trace must be exact: else AtolError
        chosen, chosen_report = raw, raw_report
        log["matmul_nodes"] = count_ops(_load_light(raw), "MatMul")

        # -- fusions
        if optimize:
            fused_path = tmp / "fused.onnx"
            attempts: list[dict[str, Any]] = []
            for embed_ln in (True, False):
                opt = optimize_graph(
                    raw,
                    fused_path,
                    num_heads=int(enc_cfg.num_attention_heads),
                    hidden_size=int(enc_cfg.hidden_size),
                    embed_layer_norm=embed_ln,
                    external_data=external,
                )
                report = parity(fused_path)
                worst = max(p.max_abs for p in report.outputs.values())
                attempts.append({**opt.as_dict(), "max_abs": worst})
                if worst <= FP32_ATOL:
                    chosen, chosen_report = fused_path, report
                    break
                logger.warning(
                    "fused graph (embed_layer_norm=%s) breaks parity (max |Δ| %.2e); %s",
                    embed_ln,
                    worst,
                    "retrying without EmbedLayerNormalization" if embed_ln else "using unfused",
                )
            log["optimize"] = {"attempts": attempts, "used_fused": chosen != raw}
        fp32_parity = chosen_report.as_dict()
        log["fp32_parity"] = fp32_parity

        # -- precision
        final, parity_out = chosen, {"fp32": fp32_parity, "atol": FP32_ATOL}
        if precision == "int8":
            final = tmp / "int8.onnx"
            qopts = quantize_options or QuantizeOptions()
            qrep = quantize_int8(chosen, final, qopts, external_data=external)
            log["quantize"] = qrep.as_dict()
            parity_out["int8"] = parity(final).as_dict()
        elif precision == "fp16":
            final = tmp / "fp16.onnx"
            if chosen != raw:
                optimize_graph(
                    raw,
                    final,
                    num_heads=int(enc_cfg.num_attention_heads),
                    hidden_size=int(enc_cfg.hidden_size),
                    embed_layer_norm=bool(
                        log["optimize"]["attempts"][-1]["options"]["embed_layer_norm"]
                    ),
                    float16=True,
                    use_gpu=True,
                    external_data=external,
                )
            else:
                convert_float16(raw, final, external_data=external)
            parity_out["fp16"] = _lossy_parity(parity, final)
        if precision != "fp32":
            agreement = parity_out[precision]
            logger.info("%s agreement vs PyTorch: %s", precision, json.dumps(agreement)[:400])

        # -- the bundle, staged then moved into place
        stage = tmp / "bundle"
        stage.mkdir()
        _save_final(final, stage / bundle_mod.MODEL_NAME, external)
        shutil.copyfile(checkpoint / "tokenizer.json", stage / bundle_mod.TOKENIZER_NAME)
        log["seconds"] = round(time.perf_counter() - t_start, 1)
        log["source_stream"] = _source_stream_work(model)
        fields = {
            "name": name or out.name,
            "task": config.task,
            "labels": list(config.labels),
            "tag_scheme": config.tag_scheme,
            "pair_input": bool(config.pair_input),
            "method": config.method,
            "backbone": _backbone_name(config.backbone),
            "mixup_layer": int(config.mixup_layer or 0),
            "lambda0": float(config.lambda0),
            "max_length": int(config.max_length or 0),
            "opset": opset,
            "precision": precision,
            "inputs": list(inputs),
            "outputs": list(outputs),
            "parity": parity_out,
            "metrics": _checkpoint_metrics(checkpoint),
            "export": log,
        }
        if config.task == "qa":
            fields.update(
                doc_stride=config.doc_stride,
                max_query_length=config.max_query_length,
                max_answer_length=config.max_answer_length,
            )
        bundle_mod.write_manifest(stage, fields)
        # The service's own code path: checksums + session + I/O names.
        loaded = bundle_mod.load_bundle(stage)
        loaded.create_session("cpu")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(stage), str(out))
    manifest = bundle_mod.read_manifest(out)
    logger.info("bundle %s written in %.1fs", out, time.perf_counter() - t_start)
    return ExportResult(path=out, manifest=manifest, log=log)


def _lossy_parity(parity: Any, path: Path) -> dict[str, Any]:
    """fp16 agreement on this host; CPU onnxruntime lacks some fp16 kernels, which is
    reported rather than failed (fp16 bundles are meant for CUDA)."""
    try:
        return dict(parity(path).as_dict())
    except Exception as exc:  # ORT NOT_IMPLEMENTED for an fp16 kernel on CPU
        logger.warning("fp16 graph cannot run on this host's CPU provider: %s", exc)
        return {"skipped": f"not runnable on CPUExecutionProvider: {str(exc)[:200]}"}


def _load_light(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False)


def _source_stream_work(model: XMixupModel) -> dict[str, Any]:
    """How much of the source stream the graph runs (tag/QA stop at the mixup layer)."""
    config = model.config
    layers = model.num_layers
    if config.method != "xmixup":
        return {"source_layers": 0, "target_layers": layers}
    full = config.task == "classify"
    # Counted in sublayers (attention, FFN): the source runs the mixup layer's attention only.
    source_sublayers = 2 * layers if full else 2 * (config.mixup_layer or 1) - 1
    total_full = 4 * layers
    used = 2 * layers + source_sublayers
    return {
        "source_layers_full": full,
        "source_sublayers": source_sublayers,
        "encoder_sublayers_run": used,
        "encoder_sublayers_if_full_source": total_full,
        "encoder_work_saved": round(1 - used / total_full, 4),
    }


def _backbone_name(backbone: str) -> str:
    return Path(backbone).name if backbone else "unknown"


def _checkpoint_metrics(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        logger.warning("%s is not valid JSON; manifest.metrics left empty", path)
        return {}
    return data if isinstance(data, dict) else {"value": data}
