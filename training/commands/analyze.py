"""``xmixup analyze cka``: linear CKA between source and target representations per layer."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("analyze", help="representation analyses (cka)")
    sub = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    c = sub.add_parser(
        "cka",
        help="linear CKA of source vs target (mean-pooled) per layer (paper eq. 1 / Table 7)",
        description=(
            "Mean-pools every layer's states over real tokens for the source and the target "
            "stream of each item and reports linear CKA between the two per layer. --model "
            "may be an xmixup checkpoint or a plain backbone directory (the 'before' numbers)."
        ),
    )
    c.add_argument("--model", metavar="DIR", required=True, help="checkpoint or backbone directory")
    c.add_argument("--data", metavar="FILE", required=True, help="JSONL of the checkpoint's task")
    c.add_argument(
        "--task",
        choices=("classify", "tag", "qa"),
        default=None,
        help="task of --data (needed for a plain backbone)",
    )
    c.add_argument("--max-items", type=int, default=1000)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--out", metavar="FILE", default=None, help="write the JSON here")
    c.add_argument("--skip-bad", action="store_true")
    c.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from training.cka import cka_report, format_cka
    from training.evaluate import write_json

    res = cka_report(
        args.model,
        args.data,
        task=args.task,
        max_items=args.max_items,
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
    )
    print(format_cka(res))
    if args.out:
        write_json(res, args.out)
    return 0
