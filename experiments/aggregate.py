"""Per-task summaries from the runs' JSON files: means over seeds, sweeps, CKA, cost."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from experiments.tasks import TASKS


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _mean_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Average {"avg", "per_lang"} blocks over seeds; keep the per-seed averages."""
    langs = list(blocks[0]["per_lang"])
    avgs = [float(b["avg"]) for b in blocks]
    return {
        "avg": statistics.fmean(avgs),
        "per_lang": {
            lang: statistics.fmean(float(b["per_lang"][lang]) for b in blocks) for lang in langs
        },
        "seed_avgs": avgs,
        "seed_std": statistics.pstdev(avgs) if len(avgs) > 1 else 0.0,
    }


def subset_avg(per_lang: dict[str, float], langs: list[str]) -> float | None:
    vals = [per_lang[lang] for lang in langs if lang in per_lang]
    return statistics.fmean(vals) if vals else None


def task_budget(args: argparse.Namespace, task: str, command: str) -> dict[str, Any]:
    """What one task's numbers cost to produce: the knobs of the invocation that trained it."""
    return {
        "command": command,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length or TASKS[task].max_length,
        "freeze_embeddings": args.freeze_embeddings,
        "seeds": args.seeds,
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "noise_levels": args.noise_levels,
        "train_args": args.train_args,
        "xmixup_args": args.xmixup_args,
        "tag_labels": args.tag_labels if task == "tag" else None,
        "teacher": args.teacher if task == "tag" else None,
        "dev_limit": TASKS[task].selection_limit(args.dev_limit),
        "dev_data": f"{TASKS[task].selection_sub} ({TASKS[task].dev_split})",
        "jobs": args.jobs,
    }


def write_budget(args: argparse.Namespace, task: str, command: str) -> None:
    # Tasks are often trained by separate invocations with different budgets (QA costs several
    # times a classification step), so each task keeps its own record next to its runs.
    path = Path(args.out) / "runs" / task / "budget.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(task_budget(args, task, command), indent=2) + "\n")


def read_budget(args: argparse.Namespace, task: str, command: str) -> dict[str, Any]:
    return read_json(Path(args.out) / "runs" / task / "budget.json") or task_budget(
        args, task, command
    )


# The headline regime: a machine translation of realistic quality (the seeded noise model at
# P = 0.15) for every method that reads a translation at inference; P = 0 (a human
# translation) is an oracle and sits under "oracle_clean".
HEADLINE_P = 0.15


def _describe(e: dict[str, Any], spec: Any, mains: list[tuple[Path, dict[str, Any]]]) -> None:
    first = mains[0][1]
    e["metric"] = first["metric"]
    e["unseen"] = [lang for lang in spec.unseen if lang in e["per_lang"]]
    e["seen"] = [lang for lang in spec.seen_eval if lang in e["per_lang"]]
    e["unseen_avg"] = subset_avg(e["per_lang"], e["unseen"])
    e["seen_avg"] = subset_avg(e["per_lang"], e["seen"])
    e["seeds"] = [int(d.name.rsplit("seed", 1)[1]) for d, _ in mains]
    e["items_per_lang"] = first.get("n", {})
    lam = [m["lambda"] for _, m in mains]
    e["lambda"] = {k: statistics.fmean(x[k] for x in lam) for k in lam[0]}
    e["lambda_per_seed"] = lam
    if "em" in first:
        e["em"] = _mean_block([m["em"] for _, m in mains])
    streams = [m.get("streams") for _, m in mains]
    if all(streams):
        for name in ("target", "source"):
            e[f"{name}_stream"] = _mean_block([s[name] for s in streams])


def _seed_files(dirs: list[Path], name: str) -> list[dict[str, Any]] | None:
    """The same eval file of every seed, or None when one is missing."""
    found = [read_json(d / name) for d in dirs]
    return found if all(found) else None


def _sweep(dirs: list[Path], levels: list[float]) -> dict[str, Any]:
    sweep = {}
    for p in levels:
        evs = _seed_files(dirs, "eval-main.json" if p == 0 else f"eval-noise-{p:g}.json")
        if not evs:
            continue
        point = {
            "avg": statistics.fmean(float(x["avg"]) for x in evs),
            "lambda_mean": statistics.fmean(x["lambda"]["mean"] for x in evs),
            "lambda_std": statistics.fmean(x["lambda"]["std"] for x in evs),
            "seed_std": _mean_block(evs)["seed_std"],
        }
        if all(x.get("streams") for x in evs):
            point["target_stream_avg"] = statistics.fmean(
                x["streams"]["target"]["avg"] for x in evs
            )
        sweep[f"{p:g}"] = point
    return sweep


def _dev(dirs: list[Path], levels: list[float]) -> dict[str, Any] | None:
    devs = _seed_files(dirs, "eval-dev.json")
    if not devs:
        return None
    out = _mean_block(devs)
    for p in levels:
        noisy = _seed_files(dirs, f"eval-dev-noise-{p:g}.json") if p > 0 else None
        if noisy:
            out[f"noise_{p:g}"] = _mean_block(noisy)
    own = _seed_files(dirs, "eval-dev-no-source.json")
    if own:
        out["no_source"] = _mean_block(own)
    unmixed = _seed_files(dirs, "eval-dev-unmixed.json")  # experiments/fallback.py
    if unmixed:
        out["no_source_unmixed"] = _mean_block(unmixed)
    return out


def _cka(dirs: list[Path], before: dict[str, Any] | None) -> dict[str, Any] | None:
    ckas = _seed_files(dirs, "cka.json")
    if not ckas or not before:
        return None
    out = {
        "before": before["plain"]["per_layer"],
        "before_mean": before["plain"]["mean"],
        "after": _mean_layers([c["plain"]["per_layer"] for c in ckas]),
        "after_mean": statistics.fmean(c["plain"]["mean"] for c in ckas),
    }
    if all("mixed" in c for c in ckas):
        out["after_mixed"] = _mean_layers([c["mixed"]["per_layer"] for c in ckas])
        out["after_mixed_mean"] = statistics.fmean(c["mixed"]["mean"] for c in ckas)
    return out


def _cost(e: dict[str, Any], dirs: list[Path]) -> None:
    trains = [read_json(d / "model" / "metrics.json") for d in dirs]
    times = [t["train"]["step_time"].get("median_s") for t in trains if t]
    if times and all(times):
        e["step_time_s"] = statistics.fmean(times)
        e["train_seconds"] = statistics.fmean(t["train"]["train_seconds"] for t in trains)
        e["steps"] = trains[0]["train"]["steps"]


def _trust(dirs: list[Path]) -> dict[str, Any] | None:
    """The translation-trust signal per seed: how well it tells a P = 0.3 source from the
    clean one on the same eval items, and the metric on the most-trusted 80 % vs the rest."""
    from training.trust_metrics import auroc, trusted_split

    clean = _seed_files(dirs, "eval-main.json")
    noisy = _seed_files(dirs, "eval-noise-0.3.json")
    if not clean or not noisy or not all("trust_per_item" in x for x in clean + noisy):
        return None
    headline = _seed_files(dirs, f"eval-noise-{HEADLINE_P:g}.json")
    per_seed = []
    for c, n in zip(clean, noisy, strict=True):
        mixed = trusted_split(
            c["trust_per_item"] + n["trust_per_item"], c["score_per_item"] + n["score_per_item"]
        )
        seed = {
            "auroc": auroc(c["trust_per_item"], n["trust_per_item"]),
            "split_clean_and_p0.3": mixed,
        }
        per_seed.append(seed)
    out: dict[str, Any] = {
        "auroc": statistics.fmean(s["auroc"] for s in per_seed),
        "auroc_per_seed": [s["auroc"] for s in per_seed],
        "goal": 0.85,
        "split_clean_and_p0.3": _mean_split([s["split_clean_and_p0.3"] for s in per_seed]),
    }
    if headline and all("trust_per_item" in h for h in headline):
        out[f"split_p{HEADLINE_P:g}"] = _mean_split(
            [trusted_split(h["trust_per_item"], h["score_per_item"]) for h in headline]
        )
    return out


def _mean_split(splits: list[dict[str, Any]]) -> dict[str, Any]:
    # Scores are fractions per item (accuracy 0/1, word accuracy, F1 in [0, 1]): as points.
    return {
        "trusted_80": 100 * statistics.fmean(s["trusted"] for s in splits),
        "rest_20": 100 * statistics.fmean(s["rest"] for s in splits),
        "n_trusted": splits[0]["n_trusted"],
        "n_rest": splits[0]["n_rest"],
    }


def method_entry(
    args: argparse.Namespace, task: str, method: str, before: dict[str, Any] | None
) -> dict[str, Any] | None:
    """One method's block: the headline regime on top, the other regimes under their keys."""
    spec = TASKS[task]
    root = Path(args.out) / "runs" / task
    mains = [(d, read_json(d / "eval-main.json")) for d in sorted(root.glob(f"{method}-seed*"))]
    mains = [(d, m) for d, m in mains if m]
    if not mains:
        return None
    dirs = [d for d, _ in mains]
    headline = _seed_files(dirs, f"eval-noise-{HEADLINE_P:g}.json")
    evals = headline or [m for _, m in mains]
    e: dict[str, Any] = _mean_block(evals)
    _describe(e, spec, [(d, m) for d, m in zip(dirs, evals, strict=True)])
    e["regime"] = {
        "source_at_inference": (
            f"machine-translation surrogate (noise P = {HEADLINE_P:g})"
            if headline
            else "none (the method reads no translation at inference)"
        ),
        "target_labels": _target_labels(args, task, method),
    }
    if headline:
        e["oracle_clean"] = _mean_block([m for _, m in mains])
    for key, value in (
        ("dev", _dev(dirs, args.noise_levels)),
        ("sweep", _sweep(dirs, args.noise_levels)),
        ("cka", _cka(dirs, before)),
    ):
        if value:
            e[key] = value
    nos = _seed_files(dirs, "eval-no-source.json")
    if nos:
        e["no_source"] = _mean_block(nos)
        e["no_source"]["lambda"] = statistics.fmean(n["lambda"]["mean"] for n in nos)
    trust = _trust(dirs)
    if trust:
        e["trust_auroc"] = trust["auroc"]  # clean vs P = 0.3 source, mean over seeds
        e["trust"] = trust
    unmixed = _seed_files(dirs, "eval-unmixed.json")  # experiments/fallback.py
    if unmixed:
        e["no_source_unmixed"] = _mean_block(unmixed)
    _cost(e, dirs)
    return e


def _target_labels(args: argparse.Namespace, task: str, method: str) -> str:
    if method in ("zero-shot", "translate-test"):
        return "none (English gold only)"
    if task == "tag":
        budget = read_json(Path(args.out) / "runs" / task / "budget.json") or {}
        mode = budget.get("tag_labels") or args.tag_labels
        return {
            "pseudo": "teacher pseudo-labels",
            "projected": "English tags projected through a word alignment",
        }.get(mode, "gold target tags (oracle)")
    return "gold target labels (translate-train data)"


def aggregate(args: argparse.Namespace, tasks: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for task in tasks:
        before = read_json(Path(args.out) / "runs" / task / "cka-before" / "cka.json")
        entries = {}
        for method in TASKS[task].methods:
            e = method_entry(args, task, method, before)
            if e is not None:
                entries[method] = e
        if "xmixup" in entries and "translate-train" in entries:
            xm, tt = entries["xmixup"], entries["translate-train"]
            if xm.get("step_time_s") and tt.get("step_time_s"):
                xm["cost"] = {
                    "step_time_s": xm["step_time_s"],
                    "translate_train_step_time_s": tt["step_time_s"],
                    "ratio_vs_translate_train": xm["step_time_s"] / tt["step_time_s"],
                    "goal": 2.2,
                }
        if entries:
            summary[task] = entries
    return summary


def _mean_layers(rows: list[list[float]]) -> list[float]:
    return [statistics.fmean(v) for v in zip(*rows, strict=True)]
