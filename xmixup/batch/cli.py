"""``xmixup predict``. Only argparse at module level (``xmixup --help`` stays fast)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="score a JSONL or Parquet file with a bundle (streaming, resumable, multi-process)",
        description=(
            "Score every record of a file in the training data format (JSONL, or Parquet with "
            "pyarrow) with a bundle and write one JSON line per record: its id, lang and line "
            "number and the result the HTTP service answers for it. Labels and other fields "
            "are ignored. Streams (constant memory), shows items/s, and resumes after an "
            "interrupt (--resume) without scoring again what was written."
        ),
    )
    p.add_argument("--model", required=True, type=Path, help="bundle directory")
    p.add_argument("--input", required=True, type=Path, help="JSONL or .parquet file")
    p.add_argument(
        "--output",
        required=True,
        type=Path,
        help="JSONL file to write (with --ray: a directory of JSONL or Parquet files)",
    )
    p.add_argument(
        "--workers", type=_positive, default=1, help="processes (Ray: actors), each one model"
    )
    p.add_argument("--threads", type=_positive, default=None, help="onnxruntime threads per worker")
    p.add_argument("--chunk-size", type=_positive, default=256, help="records per work unit")
    p.add_argument("--batch-size", type=_positive, default=32, help="rows per model batch")
    p.add_argument("--top-k", type=_positive, default=1, help="answers per item (QA)")
    p.add_argument(
        "--no-truncate",
        action="store_true",
        help="refuse over-long records (reported as bad lines) instead of truncating them",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="report bad lines and go on (default: stop at the first, keeping what was written)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted --output")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--ray",
        action="store_true",
        help="run as a Ray Data job (local Ray, or the cluster RAY_ADDRESS names); "
        "needs the ray extra",
    )
    p.add_argument(
        "--output-format",
        choices=["jsonl", "parquet"],
        default="jsonl",
        help="with --ray: the files written into --output",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from xmixup.batch.run import PredictOptions, describe, score_file

    opts = PredictOptions(
        model=args.model,
        input=args.input,
        output=args.output,
        workers=args.workers,
        threads=args.threads,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        top_k=args.top_k,
        truncate=not args.no_truncate,
        skip_bad=args.skip_bad,
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        progress=not args.no_progress,
    )
    if args.ray:
        from xmixup.batch.ray_job import score_with_ray

        lines = score_with_ray(opts, output_format=args.output_format)
    else:
        lines = describe(score_file(opts))
    for line in lines:
        print(line)
    return 0
