"""``xmixup export`` and ``xmixup verify-bundle``.

Only argparse at module level: ``xmixup --help`` and ``xmixup serve`` must not import torch.
"""

from __future__ import annotations

import argparse

# `xmixup export`'s defaults: the CPU bundle chosen by bench/bundle_size.py on the evidence in
# results/export.json ("default_bundle"): a third of the fp32 bytes or less, at most 0.5 points
# lost on each task, the whole vocabulary. That is the fp32 graph with its matrix weights and
# word embeddings stored int8 (0.28 of the bytes; on trained SIB-200 / UD / XQuAD checkpoints
# -0.25 / -0.03 / +0.31 points), where dynamic int8 MatMuls lost up to 1.7 F1.
# `--embeddings fp32 --weights fp32` writes the exact graph, which is also what
# `export_bundle()` writes when not told otherwise.
CLI_PRECISION = "fp32"
CLI_EMBEDDINGS = "int8"
CLI_WEIGHTS = "int8"
# --precision int8 keeps the MatMuls fed by these ops fp32: every feed-forward down-projection,
# whose GELU input has the widest activation range (a trained SIB-200 classifier lost 1.15
# points with them int8, 0.41 without).
CLI_KEEP_FP32_AFTER = ("BiasGelu", "Gelu", "FastGelu")


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a checkpoint to a verified ONNX bundle",
        description=(
            "Trace the paired-input X-Mixup model into one ONNX graph, optimise it, optionally "
            "convert it to fp16 (CUDA) or int8 (CPU), check it against PyTorch and write a "
            "bundle directory (manifest.json, model.onnx, tokenizer.json)."
        ),
    )
    export.add_argument("--checkpoint", required=True, help="training output directory")
    export.add_argument(
        "--out", required=True, help="bundle directory to write (must be new/empty)"
    )
    export.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default=CLI_PRECISION,
        help=f"fp32, int8 (dynamic quantisation of the MatMuls: faster on CPU, less accurate) "
        f"or fp16 (CUDA serving); default {CLI_PRECISION}",
    )
    _add_size_options(export)
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    export.add_argument(
        "--verify-data",
        default=None,
        metavar="FILE.jsonl",
        help="real items (the task's JSONL) to check ONNX vs PyTorch on, besides generated ones",
    )
    export.add_argument("--name", default=None, help="model name (default: the --out dir name)")
    export.add_argument(
        "--no-optimize",
        action="store_true",
        help="skip onnxruntime transformer fusions (debugging)",
    )
    export.add_argument(
        "--force", action="store_true", help="overwrite a non-empty --out directory"
    )
    export.add_argument(
        "--data-license",
        default=None,
        metavar="TEXT",
        help="the training data's licence, for the model card (default: the Licence: line of "
        "a SOURCE.md beside the training file, else 'not recorded')",
    )
    export.add_argument(
        "--no-source-fallback",
        choices=["auto", "self", "unmixed"],
        default="auto",
        help="what a request without a translation gets: self (the target read against "
        "itself), unmixed (X-Mixup classifiers: the target with the mixing off) or auto "
        "(unmixed for classifiers trained with --no-source-rate or --unmixed-*, else self); default auto",
    )
    export.set_defaults(handler=_run_export)

    verify = subparsers.add_parser(
        "verify-bundle",
        help="check a bundle's manifest and checksums, load it with onnxruntime, show its card",
    )
    verify.add_argument("bundle", help="bundle directory")
    verify.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="provider to load it with"
    )
    verify.add_argument(
        "--no-load", action="store_true", help="checksums only; do not open an ORT session"
    )
    verify.set_defaults(handler=_run_verify)


def _add_size_options(export: argparse.ArgumentParser) -> None:
    """How the bundle's bytes are stored: embeddings, weights, int8 exclusions, vocabulary."""
    export.add_argument(
        "--embeddings",
        choices=["fp32", "int8"],
        default=None,
        help=f"the word-embedding table: int8 with one scale per row (a quarter of the bytes) or "
        f"fp32; default {CLI_EMBEDDINGS}, fp32 with --precision fp16",
    )
    export.add_argument(
        "--weights",
        choices=["fp32", "int8"],
        default=None,
        help="with --precision fp32: store the matrix weights as int8, one scale per column "
        "(a quarter of their bytes), made fp32 again when the graph is opened: the size of "
        f"int8 at the accuracy and speed of fp32; default {CLI_WEIGHTS} with --precision fp32",
    )
    export.add_argument(
        "--int8-keep-fp32-after",
        default=",".join(CLI_KEEP_FP32_AFTER),
        metavar="OP,OP",
        help="with --precision int8: MatMuls whose input comes from these ops stay fp32 "
        f"(default {','.join(CLI_KEEP_FP32_AFTER)}: the feed-forward down-projections; '' "
        "quantises every MatMul)",
    )
    export.add_argument(
        "--vocab-scripts",
        default=None,
        metavar="LATIN,CYRILLIC,...",
        help="keep only the pieces written in these scripts (Unicode names; pieces without "
        "letters and special tokens are always kept); other text is segmented into kept "
        "pieces or read as <unk>",
    )
    export.add_argument(
        "--vocab-corpus",
        action="append",
        default=[],
        metavar="FILE",
        help="also keep every piece this JSONL or text file uses (repeatable)",
    )


def default_embeddings(precision: str) -> str:
    """The embeddings that go with a precision when none are asked for: fp16 graphs keep fp16
    embeddings; fp32 and int8 graphs get the default bundle's."""
    return "fp32" if precision == "fp16" else CLI_EMBEDDINGS


def default_weights(precision: str) -> str:
    """int8-stored weights belong to the fp32 graph (int8 and fp16 graphs have their own)."""
    return CLI_WEIGHTS if precision == "fp32" else "fp32"


def _run_export(args: argparse.Namespace) -> int:
    from model_export.onnx_export import export_bundle
    from model_export.quantize import QuantizeOptions

    keep = tuple(op.strip() for op in args.int8_keep_fp32_after.split(",") if op.strip())
    manifest = export_bundle(
        checkpoint=args.checkpoint,
        out=args.out,
        precision=args.precision,
        opset=args.opset,
        verify_data=args.verify_data,
        name=args.name,
        optimize=not args.no_optimize,
        force=args.force,
        data_license=args.data_license,
        embeddings=args.embeddings or default_embeddings(args.precision),
        weights=args.weights or default_weights(args.precision),
        vocab_scripts=[s.strip() for s in (args.vocab_scripts or "").split(",") if s.strip()],
        vocab_corpus=args.vocab_corpus,
        no_source_fallback=args.no_source_fallback,
        quantize_options=QuantizeOptions(keep_fp32_after=keep),
    )
    vocab = manifest.vocabulary
    size = sum(entry.size for entry in manifest.files.values())
    weights = manifest.export.get("weights") or {}
    stored = "int8-stored" if weights.get("matrices") else manifest.precision
    print(
        f"wrote bundle {args.out} ({manifest.task}, {manifest.precision} graph, {stored} "
        f"weights, {vocab.embedding_precision if vocab else 'fp32'} embeddings, "
        f"{vocab.size if vocab else '?'} pieces, {size / 1e6:.1f} MB)"
    )
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from xmixup.core.bundle import bundle_version, load_bundle

    bundle = load_bundle(args.bundle)
    manifest = bundle.manifest
    files = ", ".join(f"{name} ({entry.size} B)" for name, entry in manifest.files.items())
    print(f"{bundle.path}: format {manifest.format_version}, {manifest.name}, task {manifest.task}")
    print(f"  version {bundle_version(bundle.path)} (what the server reports in x-model-version)")
    print(f"  checksums ok: {files}")
    if not args.no_load:
        from xmixup.core.runner import Runner

        runner = Runner.for_bundle(bundle, args.device)
        print(f"  onnxruntime session ok on {runner.provider}; inputs {manifest.inputs}")
    if bundle.card_path is None:
        print("  no model card (README.md): exported before xmixup wrote one")
    else:
        print(f"  model card ({bundle.card_path.name}, checksum ok):\n")
        print(bundle.card_path.read_text(encoding="utf-8"))
    return 0
