"""What an invocation does per task: its data files and its jobs (the pseudo-label regime)."""

from __future__ import annotations

import argparse
import json
import shlex
from collections import defaultdict
from pathlib import Path

from experiments.jobs import Job, run_cli
from experiments.tasks import TASKS, available_langs


def build_data(
    task: str,
    root: Path,
    out: Path,
    *,
    limit: int | None,
    eval_limit: int | None,
    dev_limit: int | None,
    log: Path,
    project_tags: bool = False,
    backbone: str | None = None,
) -> dict[str, str]:
    """``xmixup data`` for one task: train (trained langs incl. en), train-en, eval, dev; with
    ``project_tags`` (tagging) also train-projected, the target words labelled through the
    alignment once for every run (``xmixup project-tags``)."""
    spec = TASKS[task]
    folder = str(root / spec.sub)
    have = available_langs(task, root)
    missing = [lang for lang in (*spec.unseen, *spec.seen_eval, "en") if lang not in have]
    if missing:
        raise SystemExit(f"{task}: {folder} lacks language(s) {', '.join(missing)}")
    train_langs = [lang for lang in have if lang not in spec.unseen]
    eval_langs = [*spec.unseen, *spec.seen_eval]
    dev_folder = str(root / spec.selection_sub)
    if not Path(dev_folder).is_dir():
        raise SystemExit(f"{task}: the selection data's folder {dev_folder} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "train": (folder, train_langs, spec.train_split, limit),
        "train-en": (folder, ["en"], spec.train_split, limit),
        "eval": (folder, eval_langs, spec.eval_split, eval_limit),
        # Model selection (ablations, defaults) reads this, never the eval file: items that
        # share no parallel group with the eval split (tasks.py says which, per task).
        "dev": (dev_folder, list(spec.selection_langs), spec.dev_split, dev_limit),
    }
    paths = {}
    for name, (src, langs, split, lim) in files.items():
        path = out / f"{name}.jsonl"
        paths[name] = str(path)
        if path.is_file() and Path(f"{path}.stats.json").is_file():
            continue
        argv = ["data", "--task", task, "--format", spec.fmt, "--input", src, "--seed", "0"]
        argv += ["--langs", ",".join(langs), "--split", split, "--out", str(path)]
        if lim:
            argv += ["--limit", str(lim)]
        run_cli(argv, log)
    if project_tags and task == "tag":
        projected = out / "train-projected.jsonl"
        paths["train-projected"] = str(projected)
        if not projected.is_file():
            tmp = projected.with_suffix(".part")
            argv = ["project-tags", "--data", paths["train"], "--out", str(tmp)]
            run_cli(argv + (["--backbone", backbone] if backbone else []), log)
            tmp.replace(projected)
    # CKA on a language-balanced sample of the eval file (the file is grouped by language).
    cka = out / "cka.jsonl"
    paths["cka"] = str(cka)
    by_lang: dict[str, list[str]] = defaultdict(list)
    for line in Path(paths["eval"]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            by_lang[json.loads(line)["lang"]].append(line)
    rows = [line for group in zip(*by_lang.values(), strict=False) for line in group]
    cka.write_text("\n".join(rows) + "\n", encoding="utf-8")
    paths["train_langs"] = ",".join(train_langs)
    return paths


def plan_jobs(args: argparse.Namespace, task: str, data: dict[str, str]) -> list[Job]:
    spec = TASKS[task]
    max_len = args.max_length or spec.max_length
    common = ["--max-steps", str(args.steps), "--batch-size", str(args.batch_size)]
    common += ["--max-length", str(max_len), "--num-threads", "1", "--no-progress"]
    common += ["--select", "last", "--save-steps", str(args.steps)]
    if args.freeze_embeddings:
        common.append("--freeze-embeddings")
    common += shlex.split(args.train_args)
    noise = [p for p in args.noise_levels if p > 0]
    # Ablations of the method itself (layer, alpha, sampling): extra flags for xmixup runs only,
    # so the baselines stay the same runs (pair with a separate --out/--summary/--report).
    xmixup_extra = shlex.split(args.xmixup_args)
    jobs = []
    run_root = Path(args.out) / "runs" / task
    train_key = "train-projected" if "train-projected" in data else "train"
    for method in spec.methods:
        if method not in args.methods:
            continue
        for seed in args.seeds:  # every method: its seed spread sits beside every gap
            evals: dict[str, list[str]] = {"main": [], "dev": ["--data", data["dev"]]}
            if method == "xmixup":
                evals["no-source"] = ["--no-source"]
                # the no-translation fallback is a served path: its choices are made on dev too
                evals["dev-no-source"] = ["--data", data["dev"], "--no-source"]
            if method in ("xmixup", "translate-test"):
                for p in noise:
                    evals[f"noise-{p:g}"] = ["--source-noise", str(p)]
                    evals[f"dev-noise-{p:g}"] = ["--data", data["dev"], "--source-noise", str(p)]
            english_only = method in ("zero-shot", "translate-test")
            extra = xmixup_extra if method == "xmixup" else []
            if task == "tag" and args.tag_labels == "pseudo" and not english_only:
                # The users' regime: no target tags; the target side learns from the English-only
                # teacher's soft labels (the reference code's UDPOS/PANX set-up).
                extra = [*extra, "--target-labels", "pseudo", "--teacher", teacher_dir(args, task)]
            elif task == "tag" and args.tag_labels == "projected" and not english_only:
                # Also the users' regime: the English gold tags, carried over by an alignment
                # (computed once in build_data, trained as soft labels).
                extra = [*extra, "--target-labels", "pseudo"]
            elif task == "tag" and not english_only:
                extra = [*extra, "--target-labels", "gold"]
            jobs.append(
                Job(
                    kind="run",
                    task=task,
                    method=method,
                    seed=seed,
                    out=str(run_root / f"{method}-seed{seed}"),
                    train=data["train-en" if english_only else train_key],
                    eval=data["eval"],
                    cka_data=data["cka"],
                    train_args=list(common) + extra,
                    evals=evals,
                    cka=method in ("xmixup", "translate-train"),
                    backbone=args.backbone,
                    resume=args.resume,
                    cka_items=args.cka_items,
                )
            )
    jobs.append(
        Job(
            kind="cka-before",
            task=task,
            method="backbone",
            seed=0,
            out=str(run_root / "cka-before"),
            cka_data=data["cka"],
            backbone=args.backbone,
            resume=args.resume,
            cka_items=args.cka_items,
        )
    )
    return jobs


def teacher_dir(args: argparse.Namespace, task: str) -> str:
    """The tagging teacher: --teacher, else this invocation's first zero-shot run."""
    if args.teacher:
        return str(Path(args.teacher).resolve())
    return str(
        Path(args.out).resolve() / "runs" / task / f"zero-shot-seed{args.seeds[0]}" / "model"
    )


def is_teacher(job: Job, args: argparse.Namespace) -> bool:
    """Jobs that others wait for: the zero-shot tagger whose labels the pseudo regime trains on."""
    return (
        job.task == "tag"
        and args.tag_labels == "pseudo"
        and not args.teacher
        and job.kind == "run"
        and job.method == "zero-shot"
    )
