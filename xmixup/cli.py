"""The ``xmixup`` console script.

Each package contributes its subcommands through a ``register(subparsers)`` function in its
own ``cli.py``. Those modules import only argparse at module level, so ``xmixup serve`` never
imports torch and ``xmixup --help`` stays fast; the heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from xmixup import __version__
from xmixup.errors import UserError
from xmixup.memory import keep_freed_memory

COMMAND_MODULES = ("training.cli", "model_export.cli", "service.cli", "xmixup.batch.cli")
# One-shot commands that copy large tensors and models over and over (xmixup/memory.py); the
# long-running ones (serve, predict) give their peaks back instead.
HEAVY_COMMANDS = frozenset(
    {"backbone", "train", "evaluate", "trust", "analyze", "project-tags", "export"}
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmixup",
        description=(
            "Cross-lingual NLU with X-Mixup: materialise a backbone, convert data, train, "
            "evaluate, export ONNX bundles and serve them over HTTP."
        ),
    )
    parser.add_argument("--version", action="version", version=f"xmixup {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an extra not installed (e.g. serve-only images)
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command in HEAVY_COMMANDS:
        keep_freed_memory()
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"xmixup {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xmixup {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
