"""``xmixup project-tags``: label a tagging file's target words with the aligned English tags."""

from __future__ import annotations

import argparse

from training.commands import DefaultsHelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "project-tags",
        help="give the target words of a tagging file the English tags of their aligned words",
        description=(
            "Aligns every item's target words to its English source words (mutual argmax of "
            "the backbone's contextual word vectors, SimAlign-style) and writes the file again "
            "with target_tag_probs: a one-hot row of the aligned English word's gold tag, a "
            "zero row (not trained on) for unaligned words. Train on the output with "
            "--target-labels pseudo; `xmixup train --target-labels projected` does the same "
            "inside one run."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--data", metavar="FILE", required=True, help="tagging JSONL with source_tags")
    p.add_argument("--out", metavar="FILE", required=True, help="output JSONL")
    p.add_argument("--backbone", default=None, help="encoder directory (default: e5-small)")
    p.add_argument("--layer", type=int, default=None, help="hidden layer (default: half depth)")
    p.add_argument("--num-threads", type=int, default=None, help="torch threads")
    p.add_argument("--skip-bad", action="store_true", help="skip and count invalid JSONL lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from training.backbone import resolve_backbone
    from training.data.schema import collect_labels, read_jsonl, write_jsonl
    from training.features import record_dict
    from training.projection import project_tags

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    records, _ = read_jsonl(args.data, "tag", skip_bad=args.skip_bad)
    recs = [record_dict(r) for r in records]
    out, stats = project_tags(
        recs, resolve_backbone(args.backbone), collect_labels(records), layer=args.layer
    )
    write_jsonl(out, args.out)
    print(json.dumps(stats, sort_keys=True))
    return 0
