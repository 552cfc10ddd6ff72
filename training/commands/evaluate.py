"""``xmixup evaluate``: per-language metrics of a checkpoint (PyTorch) or bundle (onnxruntime)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint or bundle on a JSONL file, per language",
        description=(
            "Accuracy (classification, POS), seqeval entity F1 (BIO tags) or SQuAD EM/F1 with "
            "MLQA normalisation (QA), per language and averaged over languages, plus lambda "
            "statistics. A directory with manifest.json is run with onnxruntime, else loaded "
            "as a PyTorch checkpoint."
        ),
    )
    p.add_argument("--model", metavar="DIR", required=True, help="checkpoint or bundle directory")
    p.add_argument("--data", metavar="FILE", required=True, help="JSONL with gold labels")
    p.add_argument("--no-source", action="store_true", help="feed the target as its own source")
    p.add_argument(
        "--source-noise",
        type=float,
        default=0.0,
        metavar="P",
        help="replace the source by its seeded noisy version (robustness sweep)",
    )
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", default=None, help="write the metrics JSON here")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--skip-bad", action="store_true", help="skip and count invalid JSONL lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from xmixup.errors import UserError

    if not 0.0 <= args.source_noise <= 1.0:
        raise UserError(f"--source-noise {args.source_noise} is not a probability in [0, 1]")
    if args.no_source and args.source_noise > 0:
        raise UserError("--no-source and --source-noise exclude each other", "pick one")
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    from training.data.noise import SourceNoise
    from training.data.schema import read_jsonl
    from training.evaluate import evaluate_records, format_table, load_predictor, write_json

    predictor = load_predictor(args.model, args.num_threads)
    info = predictor.info
    records, report = read_jsonl(
        args.data, info.task, skip_bad=args.skip_bad, labels=info.labels or None
    )
    noise = (
        SourceNoise.for_records(records, info.task, args.source_noise, seed=args.noise_seed)
        if args.source_noise > 0
        else None
    )
    res = evaluate_records(
        predictor, records, no_source=args.no_source, noise=noise, batch_size=args.batch_size
    )
    res["model"] = str(args.model)
    res["data"] = str(args.data)
    res["skipped_lines"] = report.n_skipped
    print(format_table(res))
    if args.out:
        write_json(res, args.out)
    return 0
