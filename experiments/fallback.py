"""What a client that sends no translation gets: two fallbacks of a trained X-Mixup model.

    .venv/bin/python experiments/fallback.py --runs artifacts/experiments/runs/tag

For every ``xmixup-seed*`` run under ``--runs`` it evaluates, on the run's eval file, the
fallback with the mixing switched off (the target stream alone, ``eval-unmixed.json``) — the
serving path today (the target read against itself) is ``eval-no-source.json``, written by
``experiments/run.py``. The summary's ``no_source`` rows and this file's rows are what the
issue's "no worse than translate-train without a translation" is judged on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _both_streams_unmixed(model: Any, tokenizer: Any) -> Any:
    """Classification: the mean of both streams' softmaxes with the mixing off."""
    import torch

    from training.evaluate import TorchPredictor

    class BothStreamsUnmixed(TorchPredictor):
        def __call__(self, batch: dict) -> dict:
            t = {k: torch.as_tensor(v) for k, v in batch.items()}
            with torch.no_grad():  # source given (= the target): both streams run plain
                out = self.model(**t, mixup=False)
            p_t = torch.softmax(out.target_logits.float(), dim=-1)
            p_s = torch.softmax(out.source_logits.float(), dim=-1)
            res = {"probabilities": (p_t + p_s) / 2.0, "mixup_ratio": out.mixup_ratio}
            res |= {"target_probabilities": p_t, "source_probabilities": p_s}
            return {k: v.numpy() for k, v in res.items()}

    return BothStreamsUnmixed(model, tokenizer)


def evaluate_unmixed(run_dir: Path, data: Path, threads: int, both: bool = False) -> dict:
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
    predictor = (
        _both_streams_unmixed(model, tokenizer) if both else TorchPredictor(model, tokenizer)
    )
    return evaluate_records(predictor, [record_dict(r) for r in records], no_source=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="a task's runs folder (runs/<task>)")
    p.add_argument("--data", default=None, help="eval JSONL (default: ../../data/<task>/eval)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    runs = Path(args.runs)
    data = Path(args.data) if args.data else runs.parent.parent / "data" / runs.name / "eval.jsonl"
    variants = [("eval-unmixed.json", False)]
    if runs.name == "classify":
        variants.append(("eval-unmixed-both.json", True))
    for run_dir in sorted(runs.glob("xmixup-seed*")):
        for name, both in variants:
            target = run_dir / name
            if target.is_file():
                continue
            result = evaluate_unmixed(run_dir, data, args.threads, both)
            target.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{run_dir.name}: {name} {result['avg']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
