"""``xmixup data``: convert public data sets into the JSONL format, or check a JSONL file.

Only argparse at module level (``xmixup --help`` must not import datasets/torch); the
converters are imported by the handler.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from training.commands import DefaultsHelpFormatter

FORMAT_TASK = {
    "sib200": "classify",
    "xnli": "classify",
    "pawsx": "classify",
    "conllu": "tag",
    "squad": "qa",
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data",
        help="convert public data sets to xmixup JSONL (or --check a JSONL file)",
        description=(
            "Convert a public data set into the xmixup JSONL format (training/data/README.md): "
            "sib200, xnli, pawsx (classify), conllu (tag; a PUD folder = parallel by sent_id, a "
            "single file = English-only), squad (qa; XQuAD/MLQA folder aligned by question id, "
            "a single file = target is its own source). Writes OUT and OUT.stats.json. "
            "With --check FILE, validate an existing JSONL file instead."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--task", required=True, choices=["classify", "tag", "qa"])
    p.add_argument("--format", choices=sorted(FORMAT_TASK), help="input format")
    p.add_argument(
        "--input",
        help="the format's folder or file, or a data root holding it (training/data/README.md)",
    )
    p.add_argument(
        "--source", help="English file parallel to a single --input file (conllu, squad)"
    )
    p.add_argument("--langs", help="comma-separated target languages (default: all but en)")
    p.add_argument(
        "--split",
        help="sib200: train|dev|test (default train); xnli/pawsx: train|eval row halves; "
        "conllu/squad: train|eval by hash of sentence id / article title (default: all)",
    )
    p.add_argument("--rows", help="xnli/pawsx: row range A:B (0-based, B excluded)")
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=0.5,
        help="share of sentence ids / articles on the eval side of a hash split",
    )
    p.add_argument("--limit", type=int, help="at most N items per language (seeded sample)")
    p.add_argument("--seed", type=int, default=0, help="seed of --limit and --noise")
    p.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="source-noise probability P (training/data/noise.py); 0 = none",
    )
    p.add_argument(
        "--noise-mode",
        choices=["bt", "replace"],
        default="bt",
        help="bt: write noisy source as source_bt*; replace: degrade the source itself "
        "(an evaluation set with a worse translate-test source)",
    )
    p.add_argument("--out", help="output JSONL file")
    p.add_argument("--check", metavar="FILE", help="validate FILE instead of converting")
    p.add_argument("--skip-bad", action="store_true", help="with --check: skip and count bad lines")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from xmixup.errors import UserError

    if args.check:
        return _check(args)
    if not args.format or not args.input or not args.out:
        raise UserError(
            "--format, --input and --out are required to convert",
            "e.g. xmixup data --task classify --format sib200 --input DATA_ROOT "
            "--langs de,fr --out train.jsonl",
        )
    if FORMAT_TASK[args.format] != args.task:
        raise UserError(
            f"format {args.format} gives {FORMAT_TASK[args.format]} data, not {args.task}",
            f"use --task {FORMAT_TASK[args.format]}",
        )
    result = convert(args)
    if args.noise:
        _add_noise(result, args.noise, args.seed, args.noise_mode)
    stats_path = result.write(
        args.out,
        extra_stats={
            "args": {k: v for k, v in vars(args).items() if k != "handler"},
        },
    )
    print(result.summary())
    print(f"wrote {args.out} and {stats_path}")
    if not result.records:
        print("warning: no items were written", file=sys.stderr)
    return 0


def convert(args: argparse.Namespace) -> Any:
    """Dispatch to the converter of ``args.format``; returns a ConvertResult."""
    from training.data.classification import convert_row_aligned, convert_sib200
    from training.data.conllu import convert_conllu
    from training.data.convert import parse_langs
    from training.data.squad import convert_squad
    from xmixup.errors import UserError

    langs = parse_langs(args.langs)
    if args.rows and args.format not in ("xnli", "pawsx"):
        raise UserError(f"--rows applies to xnli/pawsx, not {args.format}", "use --split")
    if args.source and args.format not in ("conllu", "squad"):
        raise UserError(f"--source applies to conllu/squad, not {args.format}")
    if args.format == "sib200":
        result = convert_sib200(args.input, langs=langs, split=args.split or "train")
    elif args.format in ("xnli", "pawsx"):
        result = convert_row_aligned(
            args.format, args.input, langs=langs, rows=args.rows, split=args.split
        )
    elif args.format == "conllu":
        result = convert_conllu(
            args.input,
            source_path=args.source,
            langs=langs,
            split=args.split,
            eval_fraction=args.eval_fraction,
        )
    else:
        result = convert_squad(
            args.input,
            source_path=args.source,
            langs=langs,
            split=args.split,
            eval_fraction=args.eval_fraction,
        )
    result.limit_per_lang(args.limit, args.seed)
    return result


def _add_noise(result: Any, p: float, seed: int, mode: str) -> None:
    from training.data.noise import SourceNoise

    noise = SourceNoise.for_records(result.records, result.task, p, seed)
    noisy = [noise.apply(r, result.task) for r in result.records]
    if mode == "replace":
        # Move the noisy fields into the source slots: the set then evaluates a
        # translate-test source of degraded quality.
        moves = {
            "classify": {"source_bt": "source", "source_bt_pair": "source_pair"},
            "tag": {"source_bt_tokens": "source_tokens", "source_bt_tags": "source_tags"},
            "qa": {
                "source_bt_question": "source_question",
                "source_bt_context": "source_context",
                "source_bt_answers": "source_answers",
            },
        }[result.task]
        for r in noisy:
            for bt, src in moves.items():
                if bt in r:
                    r[src] = r.pop(bt)
    result.records = noisy
    result.notes.append(f"source noise p={p} seed={seed} mode={mode}")


def _check(args: argparse.Namespace) -> int:
    from training.data.schema import read_jsonl

    _, report = read_jsonl(Path(args.check), args.task, skip_bad=args.skip_bad)
    print(report.summary())
    for err in report.errors[:20]:
        print(f"  {err}")
    print(json.dumps({"records": report.n_records, "skipped": report.n_skipped}))
    return 0
