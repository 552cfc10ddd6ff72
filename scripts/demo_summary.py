"""`<out>/summary.json`: per task its bundle, eval metric and build times, written once every
task is built and printed as the demo's closing table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from demo_console import colour, fmt_s, rel, say
from demo_files import atomic_write
from demo_plan import ROOT, TaskPlan, repo_path
from demo_session import Demo


def summary_entry(
    demo: Demo,
    plan: TaskPlan,
    bundle: Path,
    res: dict[str, Any],
    train_s: float,
    export_s: float,
) -> dict[str, Any]:
    """One task's line of summary.json from its bundle and evaluation result."""
    return {
        "bundle": repo_path(bundle),
        **bundle_facts(bundle),
        "metric": res["metric"],
        "value": float(res["avg"]),
        "per_lang": res.get("per_lang", {}),
        "lambda_mean": res.get("lambda", {}).get("mean"),
        "steps": demo.steps_for(plan),
        "seconds": round(train_s + export_s, 1),
        "train_seconds": round(train_s, 1),
        "export_seconds": round(export_s, 1),
        "data": f"examples/data/{plan.data}",
    }


def bundle_facts(bundle: Path) -> dict[str, Any]:
    """Size and precision of a built bundle (what the summary prints beside its metric)."""
    path = bundle / "manifest.json"
    if not path.is_file():
        return {
            "bundle_bytes": None,
            "precision": None,
            "weight_storage": None,
            "embedding_precision": None,
        }
    manifest = json.loads(path.read_text())
    vocabulary = manifest.get("vocabulary") or {}
    stored = (manifest.get("export", {}).get("weights") or {}).get("matrices")
    return {
        "bundle_bytes": sum(int(f["size"]) for f in manifest["files"].values()),
        "precision": manifest["precision"],
        # int8: the fp32 graph's matrices stored int8 (fp32 once loaded)
        "weight_storage": "int8" if stored else manifest["precision"],
        "embedding_precision": vocabulary.get("embedding_precision", "fp32"),
    }


def write_summary(demo: Demo, summary: dict[str, Any]) -> Path:
    path = demo.out / "summary.json"
    atomic_write(path, json.dumps(summary, indent=2) + "\n")
    return path


def print_summary(path: Path, summary: dict[str, Any], built_s: float) -> None:
    say()
    say(colour("1", f"Summary ({rel(path)}), built in {fmt_s(built_s)}:"))
    for task, s in summary.items():
        say(
            f"  {task:<9} {s['metric']:<9} {s['value']:6.1f}   bundle {rel(ROOT / s['bundle'])}"
            f" ({(s['bundle_bytes'] or 0) / 1e6:.0f} MB, {s['precision']} graph, "
            f"{s['weight_storage']} weights, {s['embedding_precision']} embeddings)"
            f"   (train+export {fmt_s(s['seconds'])})"
        )
    say()
