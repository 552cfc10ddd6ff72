"""Checkpoint -> verified bundle, as named steps driven by `export_bundle_result`.

One ONNX graph holds both streams, the mixup layer, the task head and the paper's inference
rule (`XMixupModel.predict`). The steps, each filling its record of the typed `ExportLog`:

1. `load_checkpoint` — the model, its graph inputs/outputs, whether weights go external;
2. `trace` — `predict` through the TorchScript exporter (model_export.trace);
3. `verify_fp32` — the raw graph against PyTorch (fp32, max |Δ| <= 1e-4 or AtolError);
4. `optimise` — onnxruntime transformer fusions; a fused graph that breaks parity is dropped
   for the unfused one (said in the log and in manifest.export);
5. `convert_precision` — fp16 / int8, whose agreement figures go to manifest.parity;
6. `write_bundle` — model.onnx + tokenizer.json + the model card README.md
   (model_export.model_card) into a staging directory, then manifest.json (with checksums), verified with the same loader the service uses; `publish` moves it into
   place, so a failed export leaves nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_export.compact import WEIGHT_MIN_ELEMENTS
from model_export.export_log import (
    ExportLog,
    FusionAttempt,
    OptimizeRecord,
    VerifyDataRecord,
)
from model_export.manifest_fields import (
    manifest_fields,
    resolve_no_source_fallback,
    source_stream_work,
)
from model_export.model_card import write_model_card
from model_export.options import ExportOptions
from model_export.parity import FP32_ATOL, Feeds, ParityReport, check_fp32, generated_cases
from model_export.quantize import QuantizeOptions
from model_export.shrink import Shrunk, shrink
from model_export.trace import DEFAULT_OPSET, export_onnx, graph_inputs
from model_export.verifier import LoadedModel, Verifier
from model_export.verify_data import real_cases
from xmixup.core import bundle as bundle_mod
from xmixup.core.manifest import MODEL_NAME, TOKENIZER_NAME, Manifest
from xmixup.core.runner import Runner
from xmixup.core.special_tokens import read_special_tokens
from xmixup.core.vocab import graph_outputs

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# Above this many parameter bytes the graph cannot be one protobuf (2 GiB hard limit).
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class ExportResult:
    path: Path
    manifest: Manifest
    log: ExportLog


# ----------------------------------------------------------------------------- steps
def load_checkpoint(checkpoint: Path) -> LoadedModel:
    from training.modeling import XMixupModel

    model = XMixupModel.from_pretrained(checkpoint)
    model.eval()
    config = model.config
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return LoadedModel(
        model=model,
        inputs=graph_inputs(config.method),
        outputs=graph_outputs(config.task, model.trust is not None, config.method),
        external=param_bytes > EXTERNAL_DATA_BYTES,
    )


def trace(loaded: LoadedModel, work: Path, opset: int) -> Path:
    raw = work / "raw.onnx"
    export_onnx(loaded.model, raw, opset=opset, inputs=loaded.inputs, outputs=loaded.outputs)
    return raw


def parity_cases(
    loaded: LoadedModel, options: ExportOptions, log: ExportLog
) -> list[tuple[str, Feeds]]:
    """Generated cases (batch 1 and 3, unequal lengths, padding) + the real items, if any."""
    enc_cfg = loaded.encoder_config
    cases = generated_cases(
        int(enc_cfg.vocab_size),
        pad_id=read_special_tokens(options.checkpoint / "tokenizer.json").pad_id,
        inputs=loaded.inputs,
    )
    if options.verify_data is not None:
        real = real_cases(options.verify_data, loaded.model, options.checkpoint, loaded.inputs)
        log.verify_data = VerifyDataRecord(path=str(options.verify_data), batches=len(real))
        cases += real
    return cases


def verify_fp32(raw: Path, verifier: Verifier, log: ExportLog) -> ParityReport:
    """The plain trace must be exact: else AtolError naming the output."""
    report = verifier.report(raw)
    check_fp32(report, FP32_ATOL)
    log.matmul_nodes = _count_matmuls(raw)
    return report


def optimise(
    raw: Path,
    work: Path,
    loaded: LoadedModel,
    verifier: Verifier,
    log: ExportLog,
    *,
    plain_embeddings: bool = False,
) -> tuple[Path, ParityReport] | None:
    """The fused graph and its parity, or None when every fusion attempt breaks parity.
    ``plain_embeddings``: never fuse the embedding lookups (int8 embeddings rewrite them)."""
    from model_export.optimize import optimize_graph

    enc_cfg = loaded.encoder_config
    fused = work / "fused.onnx"
    record = log.optimize = OptimizeRecord()
    for embed_ln in (False,) if plain_embeddings else (True, False):
        opt = optimize_graph(
            raw,
            fused,
            num_heads=int(enc_cfg.num_attention_heads),
            hidden_size=int(enc_cfg.hidden_size),
            embed_layer_norm=embed_ln,
            external_data=loaded.external,
        )
        report = verifier.report(fused)
        worst = max(p.max_abs for p in report.outputs.values())
        record.attempts.append(FusionAttempt(report=opt, max_abs=worst))
        if worst <= FP32_ATOL:
            record.used_fused = True
            return fused, report
        logger.warning(
            "fused graph (embed_layer_norm=%s) breaks parity (max |Δ| %.2e); %s",
            embed_ln,
            worst,
            "retrying without EmbedLayerNormalization" if embed_ln else "using unfused",
        )
    return None


def convert_precision(
    chosen: Path,
    raw: Path,
    work: Path,
    loaded: LoadedModel,
    options: ExportOptions,
    verifier: Verifier,
    log: ExportLog,
) -> tuple[Path, dict[str, Any] | None]:
    """The graph to ship and, for fp16/int8, its agreement figures vs PyTorch."""
    from model_export.optimize import convert_float16, optimize_graph
    from model_export.quantize import quantize_int8

    if options.precision == "fp32":
        return chosen, None
    if options.precision == "int8":
        final = work / "int8.onnx"
        log.quantize = quantize_int8(chosen, final, options.quantize, external_data=loaded.external)
        figures = verifier.report(final).as_dict()
    else:
        final = work / "fp16.onnx"
        if log.optimize is not None and log.optimize.used_fused:
            enc_cfg = loaded.encoder_config
            optimize_graph(
                raw,
                final,
                num_heads=int(enc_cfg.num_attention_heads),
                hidden_size=int(enc_cfg.hidden_size),
                embed_layer_norm=log.optimize.embed_layer_norm,
                float16=True,
                use_gpu=True,
                external_data=loaded.external,
            )
        else:
            convert_float16(raw, final, external_data=loaded.external)
        figures = _lossy_parity(verifier, final)
    logger.info("%s agreement vs PyTorch: %s", options.precision, json.dumps(figures)[:400])
    return final, figures


def write_bundle(
    shrunk: Shrunk,
    stage: Path,
    loaded: LoadedModel,
    options: ExportOptions,
    parity: dict[str, Any],
    log: ExportLog,
) -> None:
    """model.onnx, tokenizer.json, README.md (the model card) and manifest.json into `stage`,
    then load it as served."""
    stage.mkdir()
    _save_final(shrunk.graph, stage / MODEL_NAME, loaded.external)
    shutil.copyfile(shrunk.tokenizer, stage / TOKENIZER_NAME)
    fields = manifest_fields(
        loaded.model,
        options.checkpoint,
        name=options.name or options.out.name,
        opset=options.opset,
        precision=options.precision,
        inputs=loaded.inputs,
        outputs=loaded.outputs,
        parity=parity,
        export=log.as_dict(),
        vocabulary=shrunk.vocabulary,
        no_source_fallback=options.no_source_fallback,
    )
    # Before the manifest: the card is checksummed with the other files.
    write_model_card(
        stage,
        fields,
        options.checkpoint,
        layers=loaded.model.num_layers,
        licence=options.data_license,
    )
    bundle_mod.write_manifest(stage, fields)
    # The service's own code path: checksums + session + I/O names.
    Runner.for_bundle(bundle_mod.load_bundle(stage), "cpu")


def publish(stage: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(stage), str(out))


# ----------------------------------------------------------------------------- pipeline
def export_bundle(checkpoint: str | Path, out: str | Path, **options: Any) -> Manifest:
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
    quantize_options: QuantizeOptions | None = None,
    data_license: str | None = None,
    embeddings: str = "fp32",
    weights: str = "fp32",
    weights_min_elements: int = WEIGHT_MIN_ELEMENTS,
    vocab_scripts: Sequence[str] = (),
    vocab_corpus: Sequence[str | Path] = (),
    no_source_fallback: str = "auto",
) -> ExportResult:
    import torch

    options = ExportOptions(
        checkpoint=Path(checkpoint),
        out=Path(out),
        precision=precision,
        opset=int(opset or DEFAULT_OPSET),
        verify_data=Path(verify_data) if verify_data is not None else None,
        name=name,
        optimize=optimize,
        force=force,
        quantize=quantize_options or QuantizeOptions(),
        data_license=data_license,
        embeddings=embeddings,
        weights=weights,
        weights_min_elements=weights_min_elements,
        vocab_scripts=tuple(vocab_scripts),
        vocab_corpus=tuple(Path(p) for p in vocab_corpus),
        no_source_fallback=no_source_fallback,
    )
    options.check()
    t_start = time.perf_counter()
    loaded = load_checkpoint(options.checkpoint)
    options.no_source_fallback = resolve_no_source_fallback(
        options.no_source_fallback, loaded.model, options.checkpoint
    )
    log = ExportLog(opset=options.opset, external_data=loaded.external)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    # no_grad as a context, never torch.set_grad_enabled(False): the exporter is also called
    # in-process (tests, the demo) and must not switch autograd off for its caller.
    with (
        torch.no_grad(),
        tempfile.TemporaryDirectory(prefix=f".{options.out.name}.", dir=options.out.parent) as tmp,
    ):
        work = Path(tmp)
        raw = trace(loaded, work, options.opset)
        verifier = Verifier(loaded, parity_cases(loaded, options, log))
        chosen, report = raw, verify_fp32(raw, verifier, log)
        plain = options.embeddings == "int8"
        fused = (
            optimise(raw, work, loaded, verifier, log, plain_embeddings=plain)
            if options.optimize
            else None
        )
        if fused is not None:
            chosen, report = fused
        log.fp32_parity = report
        final, lossy = convert_precision(chosen, raw, work, loaded, options, verifier, log)
        parity: dict[str, Any] = {"fp32": report.as_dict(), "atol": FP32_ATOL}
        if lossy is not None:
            parity[options.precision] = lossy
        shrunk = shrink(final, work, loaded, options, verifier, log)
        if shrunk.parity is not None:  # the shipped graph, when it differs from `final`
            parity["bundle"] = shrunk.parity
        log.seconds = round(time.perf_counter() - t_start, 1)
        log.source_stream = source_stream_work(loaded.model)
        write_bundle(shrunk, work / "bundle", loaded, options, parity, log)
        publish(work / "bundle", options.out)
    manifest = bundle_mod.read_manifest(options.out)
    logger.info("bundle %s written in %.1fs", options.out, time.perf_counter() - t_start)
    return ExportResult(path=options.out, manifest=manifest, log=log)


# ----------------------------------------------------------------------------- helpers
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


def _lossy_parity(verifier: Verifier, path: Path) -> dict[str, Any]:
    """fp16 agreement on this host; CPU onnxruntime lacks some fp16 kernels, which is
    reported rather than failed (fp16 bundles are meant for CUDA)."""
    try:
        return dict(verifier.report(path).as_dict())
    except Exception as exc:  # ORT NOT_IMPLEMENTED for an fp16 kernel on CPU
        logger.warning("fp16 graph cannot run on this host's CPU provider: %s", exc)
        return {"skipped": f"not runnable on CPUExecutionProvider: {str(exc)[:200]}"}


def _count_matmuls(path: Path) -> int:
    import onnx

    from model_export.optimize import count_ops

    return count_ops(onnx.load(str(path), load_external_data=False), "MatMul")
