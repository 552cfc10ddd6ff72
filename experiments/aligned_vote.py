"""Does the English side tell a tagger anything? An inference-time vote through a word alignment.

    .venv/bin/python experiments/aligned_vote.py --runs artifacts/experiments/runs/tag \\
        --out results/tag-aligned-vote.json

X-Mixup's tagger scores the same with a translation, without one and with a human one
(docs/RESULTS.md). This measures whether the translation holds tagging information the target
stream lacks, in the most direct way a model can use it at inference: for every X-Mixup run
(``xmixup-seed*``), on the selection data (the runs' ``dev.jsonl``) at translation qualities
P = 0 and 0.15, the model's own source stream tags the English words, the tags are carried to
the target words through a mutual-argmax alignment of the two streams' states at one layer
(SimAlign's ArgMax, ``training/projection.py``), and an aligned target word's tag distribution
becomes ``(1 - w) · p_target + w · p_english``. ``w = 0`` is the served model; ``w = 1``
replaces its tag with the projected English one. A vote that never beats ``w = 0`` on dev says
the translation carries nothing this tagger can use, whatever the training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.projection import mutual_argmax, word_vectors  # noqa: E402
from xmixup.core.decode import softmax  # noqa: E402


def vote(
    p_target: np.ndarray, p_source: np.ndarray, pairs: list[tuple[int, int]], weight: float
) -> np.ndarray:
    """Per target word, its tag distribution moved by ``weight`` toward its aligned English
    word's; unaligned words keep their own."""
    out = p_target.copy()
    for t, s in pairs:
        out[t] = (1.0 - weight) * p_target[t] + weight * p_source[s]
    return out


def word_distributions(logits: np.ndarray, word_index: list[int], n_words: int) -> np.ndarray:
    """[n_words, tags] softmax on each word's read token (the served rule); NaN rows for
    words cut off by truncation."""
    probs = softmax(logits)
    out = np.full((n_words, logits.shape[-1]), np.nan)
    for pos, word in enumerate(word_index[: len(probs)]):
        if word >= 0:
            out[word] = probs[pos]
    return out


def _inputs(model: Any, tokenizer: Any, data: Path, p: float) -> dict[str, Any]:
    """The eval's features at source noise ``p`` (its noise model: same items, same edits),
    and both sides' word encodings."""
    from training.data.noise import SourceNoise
    from training.data.schema import read_jsonl
    from training.features import Featurizer, record_dict

    c = model.config
    records, _ = read_jsonl(str(data), "tag", labels=list(c.labels))
    recs = [record_dict(r) for r in records]
    noise = SourceNoise.for_records(records, "tag", p, seed=0) if p > 0 else None
    fz = Featurizer(
        task="tag",
        tokenizer=tokenizer,
        labels=list(c.labels),
        max_length=c.max_length,
        noise=noise,
        noise_replaces_source=noise is not None,
        use_bt=False,
        word_token=c.word_token,
    )
    sources = [list(fz._real_source(r)[0]["source_tokens"]) for r in recs]
    targets = [list(r["target_tokens"]) for r in recs]
    return {
        "recs": recs,
        "feats": fz(recs),
        "sources": sources,
        "s_enc": fz.encoder.encode_words(sources, [True] * len(recs))[0],
        "t_enc": fz.encoder.encode_words(targets, [True] * len(recs))[0],
    }


def score_run(
    model_dir: Path, data: Path, p: float, layers: list[int], weights: list[float]
) -> dict[str, Any]:
    """Per (layer, weight): the run's accuracy with the vote, and the aligned share of words."""
    import torch
    from transformers import AutoTokenizer

    from training.collate import Collator
    from training.metrics import word_accuracy_by_lang
    from training.modeling import XMixupModel
    from xmixup.core.featurize import word_tokens
    from xmixup.core.vocab import INPUT_NAMES

    model = XMixupModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    c = model.config
    labels = list(c.labels)
    d = _inputs(model, tokenizer, data, p)
    recs, feats, sources, s_enc, t_enc = (
        d[k] for k in ("recs", "feats", "sources", "s_enc", "t_enc")
    )
    collate = Collator("tag", int(tokenizer.pad_token_id))
    preds: dict[tuple[int, float], list[list[str]]] = {(a, w): [] for a in layers for w in weights}
    golds: list[list[str]] = []
    aligned = {layer: 0 for layer in layers}
    for start in range(0, len(feats), 32):
        batch = collate(feats[start : start + 32])
        with torch.no_grad():
            out = model(**{k: batch[k] for k in INPUT_NAMES}, output_hidden_states=True)
        for row in range(len(batch["target_input_ids"])):
            i = start + row
            nt, ns = len(recs[i]["target_tokens"]), len(sources[i])
            tl = int(batch["target_attention_mask"][row].sum())
            sl = int(batch["source_attention_mask"][row].sum())
            t_idx = word_tokens(t_enc[i], c.word_token)
            p_t = word_distributions(out.target_logits[row, :tl].numpy(), t_idx, nt)
            s_idx = word_tokens(s_enc[i], c.word_token)
            p_s = word_distributions(out.source_logits[row, :sl].numpy(), s_idx, ns)
            n = int((~np.isnan(p_t[:, 0])).sum())  # truncation cuts the last words
            golds.append(list(recs[i]["target_tags"][:n]))
            for layer in layers:
                tv = word_vectors(
                    out.target_hidden_states[layer][row, :tl].numpy(), t_enc[i].word_ids, nt
                )
                sv = word_vectors(
                    out.source_hidden_states[layer][row, :sl].numpy(), s_enc[i].word_ids, ns
                )
                pairs = [
                    (t, s) for t, s in mutual_argmax(tv, sv) if t < n and not np.isnan(p_s[s, 0])
                ]
                aligned[layer] += len(pairs)
                for w in weights:
                    q = vote(p_t[:n], p_s, pairs, w)
                    preds[(layer, w)].append([labels[int(k)] for k in q.argmax(axis=1)])
    langs = [r["lang"] for r in recs]
    words = sum(len(g) for g in golds)
    return {
        f"layer{layer}-w{w}": {
            "avg": word_accuracy_by_lang(langs, preds[(layer, w)], golds)["avg"],
            "aligned_share": aligned[layer] / max(words, 1),
        }
        for layer, w in preds
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a tagging runs folder (runs/tag)")
    ap.add_argument("--data", default=None, help="JSONL (default: ../../data/tag/dev.jsonl)")
    ap.add_argument("--noise-levels", default="0,0.15")
    ap.add_argument("--layers", default="3,6,8", help="hidden-state indices (0: embeddings)")
    ap.add_argument("--weights", default="0,0.3,0.5,0.7,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON results (default: print only)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    data = Path(args.data) if args.data else runs.parent.parent / "data" / "tag" / "dev.jsonl"
    layers = [int(x) for x in args.layers.split(",")]
    weights = [float(x) for x in args.weights.split(",")]
    per_run: dict[str, dict[str, Any]] = {}
    for run_dir in sorted(runs.glob("xmixup-seed*")):
        for p in (float(x) for x in args.noise_levels.split(",")):
            per_run.setdefault(run_dir.name, {})[str(p)] = score_run(
                run_dir / "model", data, p, layers, weights
            )
            print(f"{run_dir.name} P={p}: done", flush=True)
    table = summarize(per_run)
    for p, rows in table.items():
        print(f"\nP = {p} ({data.name})  variant: mean ± seed spread, change vs w = 0")
        for name, row in rows.items():
            print(f"  {name:14s} {row['avg']:6.2f} ± {row['seed_std']:.2f}  {row['change']:+.2f}")
    if args.out:
        result = {"data": str(data), "runs": str(runs), "per_run": per_run, "table": table}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def summarize(per_run: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """P -> variant -> mean over runs, seed spread (std) and change against the served w = 0."""
    table: dict[str, dict[str, Any]] = {}
    for p in next(iter(per_run.values())):
        rows = {}
        for name in per_run[next(iter(per_run))][p]:
            vals = [per_run[r][p][name]["avg"] for r in per_run]
            rows[name] = {"avg": float(np.mean(vals)), "seed_std": float(np.std(vals))}
        served = next(v["avg"] for k, v in rows.items() if k.endswith("-w0.0"))
        for row in rows.values():
            row["change"] = row["avg"] - served
        table[p] = rows
    return table


if __name__ == "__main__":
    sys.exit(main())
