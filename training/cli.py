"""Training-side subcommands: backbone, data, train, evaluate, trust, analyze.

One module per command under ``training/commands/``; each exposes ``add_parser(subparsers)``
and imports torch only inside its handler.
"""

from __future__ import annotations

import argparse
import importlib

COMMANDS = ("backbone", "data", "project-tags", "train", "evaluate", "trust", "analyze")


def register(subparsers: argparse._SubParsersAction) -> None:
    for name in COMMANDS:
        module_name = f"training.commands.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not shipped in this build
                continue
            raise
        module.add_parser(subparsers)
