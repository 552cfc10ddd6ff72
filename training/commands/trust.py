"""``xmixup trust``: fit the translation-trust head on an existing X-Mixup checkpoint."""

from __future__ import annotations

import argparse

from training.commands import DefaultsHelpFormatter


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trust",
        help="fit the translation-trust head of an X-Mixup checkpoint (rewrites it in place)",
        description=(
            "Fits a logistic regression on the source stream's pooled state at the mixup layer "
            "that tells a training item's own English source from the same source degraded by "
            "the noise model (P = 0.3), and stores it in the checkpoint (weights and config "
            "rewritten in place). The task predictions do not change; predict, export and the "
            "service then report translation_trust per item."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--model", metavar="CKPT", required=True, help="X-Mixup checkpoint directory")
    p.add_argument("--data", metavar="FILE", required=True, help="training JSONL (with sources)")
    p.add_argument("--items", type=int, default=2000, help="records drawn for the fit")
    p.add_argument("--seed", type=int, default=0, help="draw and noise seed")
    p.add_argument("--skip-bad", action="store_true", help="skip and count invalid JSONL lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from transformers import AutoTokenizer

    from training.data.schema import read_jsonl
    from training.modeling import XMixupModel
    from training.trust import fit_trust_head
    from xmixup.errors import UserError

    if args.items < 2:
        raise UserError(f"--items must be at least 2, got {args.items}")
    model = XMixupModel.from_pretrained(args.model)
    config = model.config
    records, _ = read_jsonl(
        args.data, config.task, skip_bad=args.skip_bad, labels=config.labels or None
    )
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    summary = fit_trust_head(
        model, tokenizer, records, config.task, n_items=args.items, seed=args.seed
    )
    model.save_pretrained(args.model)
    print(json.dumps(summary, sort_keys=True))
    return 0
