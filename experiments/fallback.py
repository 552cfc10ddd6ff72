"""What a client that sends no translation gets: two fallbacks of a trained X-Mixup model.

    .venv/bin/python experiments/fallback.py --runs artifacts/experiments/runs/tag

For every ``xmixup-seed*`` run under ``--runs`` it evaluates, on the run's eval file, the
fallback with the mixing switched off (the target stream alone, ``eval-unmixed.json``), and on
the selection data beside it (``dev.jsonl``, ``eval-dev-unmixed.json``), where the choice
between the two fallbacks is made — the serving path today (the target read against itself) is
``eval-no-source.json`` / ``eval-dev-no-source.json``, written by ``experiments/run.py``.
The summary's ``no_source`` rows and this file's rows are what the issue's "no worse than
translate-train without a translation" is judged on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def evaluate_unmixed(run_dir: Path, data: Path, threads: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from training.data.schema import read_jsonl
    from training.evaluate import TorchPredictor, evaluate_records
    from training.features import record_dict
    from training.modeling import XMixupModel

    torch.set_num_threads(threads)
    model = XMixupModel.from_pretrained(run_dir / "model").eval()
    model.mixup = False  # the target stream alone: no cross-attention to any source
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "model"))
    labels = list(model.config.labels) or None
    records, _ = read_jsonl(str(data), model.config.task, labels=labels)
    return evaluate_records(
        TorchPredictor(model, tokenizer), [record_dict(r) for r in records], no_source=True
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="a task's runs folder (runs/<task>)")
    p.add_argument("--data", default=None, help="eval JSONL (default: ../../data/<task>/eval)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    runs = Path(args.runs)
    folder = runs.parent.parent / "data" / runs.name
    files = {"eval-unmixed.json": Path(args.data) if args.data else folder / "eval.jsonl"}
    if (folder / "dev.jsonl").is_file():
        files["eval-dev-unmixed.json"] = folder / "dev.jsonl"
    for run_dir in sorted(runs.glob("xmixup-seed*")):
        for name, data in files.items():
            target = run_dir / name
            if target.is_file():
                continue
            result = evaluate_unmixed(run_dir, data, args.threads)
            target.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{run_dir.name}: {name} {result['avg']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
