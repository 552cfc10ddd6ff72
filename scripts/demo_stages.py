"""The build stages of `make demo`: backbone, data check, then per task train → export →
evaluate. Each stage prints its line, reuses its stamped outputs when its inputs are unchanged,
and otherwise runs the matching `xmixup` command into scratch space before renaming."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from demo_console import rel
from demo_files import file_digest, install_dir, stage_key
from demo_plan import COMMON_TRAIN, DATA, PLANS, DemoError, TaskPlan
from demo_session import Demo


def stage_backbone(demo: Demo) -> Path:
    what = "materialising the backbone"
    if demo.backbone_arg:
        what = f"checking the backbone {demo.backbone_arg}"
    stage = demo.begin(what, "backbone")
    from training.backbone import resolve_backbone

    path = Path(resolve_backbone(demo.backbone_arg)).resolve()
    demo.done(stage, str(path))
    return path


def stage_data(demo: Demo) -> dict[str, str]:
    files = {
        f"{p.data}/{split}": DATA / p.data / f"{split}.jsonl"
        for p in PLANS
        for split in ("train", "eval")
    }
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise DemoError(
            f"demo data missing: {', '.join(missing)}; restore examples/data/ from git "
            "(git checkout -- examples/data) or rebuild it from the public sets with "
            "examples/data/build.sh DATA_ROOT (the data root layout: training/data/README.md)"
        )
    digests = {name: file_digest(path) for name, path in files.items()}
    what = "checking the demo data (SIB-200, UD PUD, XQuAD samples in examples/data/)"
    stage = demo.begin(what, "data")
    key = stage_key(stage="data", digests=digests)
    counts = {name: sum(1 for _ in path.open(encoding="utf-8")) for name, path in files.items()}
    note = ", ".join(
        f"{n} {counts[f'{n}/train']}+{counts[f'{n}/eval']}" for n in ("sib200", "pud", "xquad")
    )
    if demo.stamp_ok("data", key):
        demo.reused(stage, note + " train+eval items")
        return digests
    from training.data.schema import read_jsonl  # validates every line (file:line:field errors)

    for plan in PLANS:
        for split in ("train", "eval"):
            read_jsonl(files[f"{plan.data}/{split}"], plan.task)
    demo.write_stamp("data", key)
    demo.done(stage, note + " train+eval items, all valid")
    return digests


def frozen_layers(demo: Demo, plan: TaskPlan, backbone: Path) -> int:
    """Every layer below the task's mixup layer, unless DEMO_FREEZE=0: both X-Mixup streams are
    the plain encoder there, so the demo trains only the mix and the layers above it (a step
    costs ~0.7x), which its few hundred steps cannot move much anyway."""
    from training.config import default_mixup_layer  # after demo.py put the repo on sys.path

    if not demo.freeze:
        return 0
    try:
        n_layers = int(json.loads((backbone / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError) as exc:
        raise DemoError(f"{rel(backbone / 'config.json')}: no num_hidden_layers ({exc})") from None
    return default_mixup_layer(plan.task, n_layers) - 1


def stage_train(
    demo: Demo,
    plan: TaskPlan,
    backbone: Path,
    backbone_id: str,
    digests: dict[str, str],
    threads: int | None,
    threads_file: Path | None = None,
) -> tuple[Path, str, float]:
    """Train ``plan``'s model (or reuse the last one trained with these arguments). The child
    starts with ``threads`` and re-reads ``threads_file`` before every step."""
    steps = demo.steps_for(plan)
    what = f"training the {plan.task} model: {plan.title}, {steps} steps"
    stage = demo.begin(what, f"train-{plan.task}")
    ckpt = demo.out / "checkpoints" / plan.task
    args = [
        "train",
        "--task",
        plan.task,
        "--train",
        str(DATA / plan.data / "train.jsonl"),
        "--backbone",
        str(backbone),
        "--max-steps",
        str(steps),
        "--batch-size",
        str(plan.batch_size),
        "--max-length",
        str(plan.max_length),
        "--lr",
        plan.lr,
        *COMMON_TRAIN,
    ]
    # always given: DEMO_FREEZE=0 must mean 0 even where the task default fixes layers (QA)
    args += ["--freeze-layers", str(frozen_layers(demo, plan, backbone))]
    if plan.group_by_length:
        args.append("--group-by-length")
    # Thread counts change speed, not the model: they are not part of the stage's key.
    key = stage_key(
        stage="train", args=args, backbone=backbone_id, data=digests[f"{plan.data}/train"]
    )
    if threads:
        args += ["--num-threads", str(threads)]
    if threads_file is not None:
        args += ["--threads-file", str(threads_file)]
    stamp = demo.stamp_ok(f"train-{plan.task}", key, ckpt / "config.json")
    if stamp:
        demo.reused(stage)
        return ckpt, key, float(stamp.get("seconds", 0.0))
    tmp = demo.fresh_tmp(f"checkpoint-{plan.task}")
    demo.xmixup([*args, "--out", str(tmp)], f"train-{plan.task}")
    install_dir(tmp, ckpt)
    took = demo.done(stage)
    demo.write_stamp(f"train-{plan.task}", key, seconds=round(took, 1))
    return ckpt, key, took


def stage_export(demo: Demo, plan: TaskPlan, ckpt: Path, train_key: str) -> tuple[Path, str, float]:
    what = f"exporting the {plan.task} bundle (ONNX, parity-checked against PyTorch)"
    stage = demo.begin(what, f"export-{plan.task}")
    bundle = demo.out / "bundles" / plan.task
    key = stage_key(stage="export", train=train_key)
    stamp = demo.stamp_ok(f"export-{plan.task}", key, bundle / "manifest.json")
    if stamp:
        demo.reused(stage, rel(bundle))
        return bundle, key, float(stamp.get("seconds", 0.0))
    tmp = demo.fresh_tmp(f"bundle-{plan.task}")
    # --name is the directory's final name: the service names models after their directory.
    demo.xmixup(
        ["export", "--checkpoint", str(ckpt), "--out", str(tmp), "--name", plan.task],
        f"export-{plan.task}",
    )
    install_dir(tmp, bundle)
    took = demo.done(stage, rel(bundle))
    demo.write_stamp(f"export-{plan.task}", key, seconds=round(took, 1))
    return bundle, key, took


def stage_evaluate(
    demo: Demo,
    plan: TaskPlan,
    bundle: Path,
    export_key: str,
    digests: dict[str, str],
    threads: int | None,
) -> dict[str, Any]:
    what = f"evaluating the {plan.task} bundle on {plan.data}/eval.jsonl (onnxruntime)"
    stage = demo.begin(what, f"eval-{plan.task}")
    out = demo.out / "eval" / f"{plan.task}.json"
    key = stage_key(stage="evaluate", export=export_key, data=digests[f"{plan.data}/eval"])
    if demo.stamp_ok(f"eval-{plan.task}", key, out):
        res = json.loads(out.read_text())
        demo.reused(stage, _metric_note(res))
        return res
    tmp = demo.fresh_tmp(f"eval-{plan.task}.json")
    args = [
        "evaluate",
        "--model",
        str(bundle),
        "--data",
        str(DATA / plan.data / "eval.jsonl"),
        "--out",
        str(tmp),
    ]
    if threads:
        args += ["--num-threads", str(threads)]
    demo.xmixup(args, f"eval-{plan.task}")
    res = json.loads(tmp.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    demo.write_stamp(f"eval-{plan.task}", key)
    demo.done(stage, _metric_note(res))
    return res


def _metric_note(res: dict[str, Any]) -> str:
    langs = ", ".join(f"{k} {v:.1f}" for k, v in sorted(res.get("per_lang", {}).items()))
    lam = res.get("lambda", {}).get("mean")
    lam_note = f"; mean λ {lam:.2f}" if isinstance(lam, (int, float)) else ""
    return f"{res['metric']} {res['avg']:.1f} ({langs}){lam_note}"
