"""The levers table: every X-Mixup ablation beside the default run it departs from.

    .venv/bin/python experiments/levers.py          # results/levers.json + docs/RESULTS.md block

Each lever is one ``results/ablation-*.json`` that ``experiments/run.py`` wrote (``--methods
xmixup``, 2 seeds, its own ``--summary``) and the key of ``results/summary.json`` holding the
default it changes (the run with the same budget and recipe). Per row: the score at the headline
translation quality (P = 0.15) with its seed spread, the change against that default, the gap to
translate-train on the same budget, the score with no translation and with a human one (does the
model read the source at all?), dev (where choices are made) and λ. A lever whose file is absent
is listed as not run, with the arguments that run it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from experiments.report import _f, write_report  # noqa: E402

BEGIN, END = "<!-- levers:begin -->", "<!-- levers:end -->"


@dataclass(frozen=True)
class Lever:
    task: str
    name: str  # results/ablation-<name>.json
    what: str  # the change, for the table
    args: str  # what `experiments/run.py` was given on top of the default's command
    default: str  # the results/summary.json key of the run it departs from


T = "--teacher <the headline's zero-shot seed-1 model>"  # the tagging teacher of `tag`
TAG_FULL = "tag_full_finetune"
QA8 = "qa_layer8"


def _x(args: str, extra: str = "") -> str:
    return f'--xmixup-args "{args}"' + (f" {extra}" if extra else "")


LEVERS = (
    Lever(
        "classify", "cls-nosrc05", "no-source rate 0.05", _x("--no-source-rate 0.05"), "classify"
    ),
    Lever("classify", "cls-nosrc10", "no-source rate 0.1", _x("--no-source-rate 0.1"), "classify"),
    Lever("classify", "cls-nosrc", "no-source rate 0.2", _x("--no-source-rate 0.2"), "classify"),
    Lever("classify", "cls-selfmix10", "self-mix rate 0.1", _x("--self-mix-rate 0.1"), "classify"),
    Lever(
        "classify",
        "cls-unmixed",
        "mixing-off path trained beside the mix (weight 1, distilled 1)",
        _x("--unmixed-weight 1 --unmixed-distill 1"),
        "classify",
    ),
    Lever(
        "classify",
        "cls-unmixed25",
        "mixing-off path trained beside the mix (weight 0.25, distilled 0.25)",
        _x("--unmixed-weight 0.25 --unmixed-distill 0.25"),
        "classify",
    ),
    Lever(
        "classify",
        "cls-distill1",
        "mixing-off path distilled from the mixed stream only (weight 0, distilled 1)",
        _x("--unmixed-distill 1"),
        "classify",
    ),
    Lever(
        "classify",
        "cls-distill3",
        "mixing-off path distilled from the mixed stream only (weight 0, distilled 3)",
        _x("--unmixed-distill 3"),
        "classify",
    ),
    Lever("classify", "cls-selfmix", "self-mix rate 0.2", _x("--self-mix-rate 0.2"), "classify"),
    Lever(
        "classify",
        "cls-selfmix-copies",
        "self-mix 0.2, as added copies",
        _x("--self-mix-rate 0.2 --self-mix-copies"),
        "classify",
    ),
    Lever(
        "classify",
        "cls-selfmix-late",
        "self-mix 0.4 from step 150 of 300 (0.2's dose, second half)",
        _x("--self-mix-rate 0.4 --self-mix-from 150"),
        "classify",
    ),
    Lever(
        "classify",
        "cls-selfmix-early",
        "self-mix 0.4 until step 150 of 300 (0.2's dose, first half)",
        _x("--self-mix-rate 0.4 --self-mix-until 150"),
        "classify",
    ),
    Lever(
        "classify",
        "cls-600",
        "twice the budget (600 steps), translate-train re-run beside it",
        "--steps 600 --methods xmixup,translate-train",
        "classify",
    ),
    Lever(
        "classify",
        "cls-600-nosrc",
        "no-source rate 0.2 at 600 steps, translate-train's 600-step runs beside it",
        "--steps 600 --methods xmixup,translate-train " + _x("--no-source-rate 0.2"),
        "classify",
    ),
    Lever("tag", "tag-l6", "mixup layer 6 of 12 (default 4)", _x("--mixup-layer 6"), TAG_FULL),
    Lever("tag", "tag-l8", "mixup layer 8 of 12 (default 4)", _x("--mixup-layer 8"), TAG_FULL),
    Lever(
        "tag",
        "tag-projected",
        "projected tags, not a teacher's",
        "--tag-labels projected",
        TAG_FULL,
    ),
    Lever(
        "tag",
        "tag-proj-l0",
        "projected tags, not a teacher's (translate-train re-run on them)",
        "--tag-labels projected --methods xmixup,translate-train",
        "tag",
    ),
    Lever("tag", "tag-a04", "α 0.4 (default 0.8)", _x("--alpha 0.4", T), "tag"),
    Lever("tag", "tag-lambda0-1", "λ0 1.0 (default 0.5)", _x("--lambda0 1.0", T), "tag"),
    Lever(
        "tag", "tag-cw0", "consistency weight 0 (default 1)", _x("--consistency-weight 0", T), "tag"
    ),
    Lever(
        "tag",
        "tag-ss",
        "noisy scheduled sampling (P 0.3, k 40)",
        _x("--source-noise 0.3 --sampling-k 40", T),
        "tag",
    ),
    # Measured against QA's earlier default (the mix at layer 8, layers 1-7 fixed). QA fixes the
    # layers below its mixup layer, so moving the mix also trains more layers.
    Lever("qa", "qa-alpha0", "α 0 (default 0.2)", _x("--alpha 0"), QA8),
    Lever("qa", "qa-cw0", "consistency weight 0 (default 1)", _x("--consistency-weight 0"), QA8),
    Lever(
        "qa",
        "qa-l6",
        "mixup layer 6 of 12, 1–5 fixed (now the default)",
        _x("--mixup-layer 6"),
        QA8,
    ),
    # Against the default since: the mix at layer 6, layers 1-5 fixed.
    Lever(
        "qa",
        "qa-l8f5",
        "mixup layer 8 of 12, 1–5 fixed (the default's trained depth)",
        _x("--mixup-layer 8", '--train-args "--freeze-layers 5 --lr 5e-4"'),
        "qa",
    ),
    Lever("qa", "qa-l4", "mixup layer 4 of 12, 1–3 fixed", _x("--mixup-layer 4"), "qa"),
    Lever("qa", "qa-lambda0-025", "λ0 0.25 (default 0.5)", _x("--lambda0 0.25"), "qa"),
    Lever(
        "qa",
        "qa-ss",
        "noisy scheduled sampling (P 0.3, k 40)",
        _x("--source-noise 0.3 --sampling-k 40"),
        "qa",
    ),
)


def _signed(x: float) -> str:
    """A signed change; '0.0' (neither '+0.0' nor '-0.0') for one that rounds to nothing."""
    return "0.0" if round(x, 1) == 0 else f"{x:+.1f}"


def _avg(block: Any) -> float | None:
    return float(block["avg"]) if isinstance(block, dict) and "avg" in block else None


def _scores(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "avg": float(entry["avg"]),
        "seed_avgs": [float(v) for v in entry.get("seed_avgs", [])],
        "seed_std": float(entry.get("seed_std", 0.0)),
        "no_translation": _avg(entry.get("no_source")),
        "no_translation_unmixed": _avg(entry.get("no_source_unmixed")),
        "human_translation": _avg(entry.get("oracle_clean")),
        "mixed_stream": _avg(entry.get("target_stream")),
        "dev": _avg(entry.get("dev")),
        "lambda": (entry.get("lambda") or {}).get("mean"),
    }


def _fallbacks(row: dict[str, Any]) -> str:
    """Both no-translation answers (target read against itself / mixing off) when measured."""
    unmixed = row.get("no_translation_unmixed")
    return _f(row["no_translation"]) + ("" if unmixed is None else f" / {_f(unmixed)}")


def lever_rows(results: Path) -> dict[str, list[dict[str, Any]]]:
    """Per task: each default run, then the levers that change it (run or not)."""
    summary = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    out: dict[str, list[dict[str, Any]]] = {}
    for key in dict.fromkeys(lever.default for lever in LEVERS):
        base = summary[key]
        levers = [lever for lever in LEVERS if lever.default == key]
        first = {"lever": f"default (`{key}`)", "default": key, "run": True}
        first.update(_scores(base["xmixup"]))
        first["vs_translate_train"] = first["avg"] - float(base["translate-train"]["avg"])
        rows = out.setdefault(levers[0].task, [])
        rows.append(first)
        rows.extend(_lever_row(lever, base, results) for lever in levers)
    return out


def _lever_row(lever: Lever, base: dict[str, Any], results: Path) -> dict[str, Any]:
    path = results / f"ablation-{lever.name}.json"
    row: dict[str, Any] = {"lever": lever.what, "default": lever.default, "args": lever.args}
    if not path.is_file():
        return {**row, "run": False}
    entries = json.loads(path.read_text(encoding="utf-8"))[lever.task]
    scores = _scores(entries["xmixup"])
    # A lever that changes the baseline's data or budget too (projected tags, steps) ran its own
    # translate-train.
    tt = entries.get("translate-train") or base["translate-train"]
    change = scores["avg"] - float(base["xmixup"]["avg"])
    spreads = scores["seed_std"] + float(base["xmixup"].get("seed_std", 0.0))
    return {
        **row,
        "run": True,
        "file": path.name,
        **scores,
        "change": change,
        "beyond_spread": abs(change) > spreads,
        "vs_translate_train": scores["avg"] - float(tt["avg"]),
    }


def render(rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| task | lever | @ P = 0.15 (seeds) | change | vs translate-train | no translation: "
        "self / mixing off | human translation | mixed stream | dev | λ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, task_rows in rows.items():
        for r in task_rows:
            if r.get("run") is False:
                lines.append(f"| {task} | {r['lever']} | not run: `{r['args']}` | | | | | | | |")
                continue
            seeds = " / ".join(f"{v:.1f}" for v in r["seed_avgs"])
            score = f"{r['avg']:.1f} ± {r['seed_std']:.1f} ({seeds})"
            change = ""
            if "change" in r:
                change = _signed(r["change"]) + ("" if r["beyond_spread"] else " (within)")
            lam = "–" if r["lambda"] is None else f"{r['lambda']:.2f}"
            lines.append(
                f"| {task} | {r['lever']} | {score} | {change} "
                f"| {_signed(r['vs_translate_train'])} | {_fallbacks(r)} "
                f"| {_f(r['human_translation'])} | {_f(r['mixed_stream'])} | {_f(r['dev'])} "
                f"| {lam} |"
            )
    lines += [
        "",
        "Generated by `experiments/levers.py` from `results/ablation-*.json` and "
        "`results/summary.json` (also `results/levers.json`). A default row is the run its "
        "levers change (`tag_full_finetune`: every layer at 5e-5, the recipe of the earlier "
        "tagging levers; `qa_layer8`: QA's earlier default, the mix at layer 8 with layers 1-7 "
        "fixed, whose runs were not kept for QA's selection data since, MLQA's dev set: its dev "
        'is blank). "(within)": the change is no larger than the two runs\' seed spreads '
        "added; vs translate-train: on the same budget and target labels.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=REPO / "results")
    p.add_argument("--report", type=Path, default=REPO / "docs" / "RESULTS.md")
    p.add_argument("--out", type=Path, default=None, help="default: <results>/levers.json")
    args = p.parse_args(argv)
    rows = lever_rows(args.results)
    out = args.out or args.results / "levers.json"
    out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    table = render(rows)
    write_report(args.report, table, begin=BEGIN, end=END)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
