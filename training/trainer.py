"""``train()``: one X-Mixup (or baseline) training run, from options to output directory.

The run has four phases: resolve the inputs (backbone, records, labels, target labels), build
the model (task defaults filled in, lower layers frozen) and its features, fit with
``XMixupTrainer`` (``training/xmixup_trainer.py``), and finalise: checkpoint averaging or
best-checkpoint selection (on the target or on the English side of the dev file), the final
evaluation, and the output directory (checkpoint + training_args.json + metrics.json).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from training.collate import Collator
from training.data.schema import collect_labels, count_langs
from training.evaluate import TorchPredictor, eval_view, evaluate_records, format_table, write_json
from training.features import Featurizer, record_dict, source_only
from training.freeze import freeze
from training.options import TrainOptions
from training.pseudo_labels import TARGET_LOSS_METHODS, resolve_target_labels
from training.run_checkpoints import average_checkpoints, checkpoint_dirs, refuse_unasked_resume
from training.sampling import SamplingPlan, plan_for
from training.schedule import Schedule, make_schedule, training_arguments, world_size
from training.threads import ThreadsFromFile
from training.trust import fit_trust_head
from training.xmixup_trainer import FeatureDataset, StepTimer, XMixupTrainer
from xmixup.core.special_tokens import pad_id_of

log = logging.getLogger(__name__)

GATE_LR_FACTOR = 100.0  # the gate's learning rate / the encoder's, when --gate-lr is not given
BIO_TAG = re.compile(r"^(O|[BI]-.+)$")


@dataclass
class _Inputs:
    """What the options resolve to before anything is built."""

    backbone: Path
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]] | None
    labels: list[str]
    target_label_mode: str


@dataclass
class _Features:
    """The featurised training set and what produced it."""

    fit_records: list[dict[str, Any]]
    features: list[dict[str, Any]]
    plan: SamplingPlan


@dataclass
class _Fit:
    """The fitted trainer (its state, trajectories) and what the fit cost."""

    trainer: XMixupTrainer
    timer: StepTimer
    training_loss: float
    seconds: float
    averaged: list[str]


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train one model; returns the metrics written to ``<out>/metrics.json``."""
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    ckpt_root = Path(opts.out) / "checkpoints"
    opts.check()
    refuse_unasked_resume(ckpt_root, opts.resume)
    inputs = _resolve_inputs(opts)
    model, tokenizer = _build_model(opts, inputs)
    opts = opts.with_task_defaults(model.config.mixup_layer)
    freeze(model, opts.freeze_embeddings, opts.freeze_layers, opts.frozen_cache_mb)
    feats = _featurise(opts, inputs, model.config, tokenizer)
    schedule = make_schedule(opts, len(feats.features), has_eval=bool(inputs.eval))
    fit = _fit(opts, inputs, feats, schedule, model, tokenizer, ckpt_root)
    if not fit.trainer.is_world_process_zero():
        return {}
    return _finalise(opts, inputs, feats, schedule, fit, model, tokenizer)


# ----------------------------------------------------------------------------- phase 1: inputs


def _resolve_inputs(opts: TrainOptions) -> _Inputs:
    from training.backbone import resolve_backbone

    backbone = resolve_backbone(opts.backbone)
    train_recs = _read(opts.train, opts.task, opts.skip_bad)
    labels = collect_labels(train_recs)
    eval_recs = _read(opts.eval, opts.task, opts.skip_bad, labels or None) if opts.eval else None
    train_recs, target_label_mode = resolve_target_labels(
        train_recs,
        labels,
        task=opts.task,
        method=opts.method,
        requested=opts.target_labels,
        teacher=opts.teacher,
        backbone=str(backbone),
    )
    return _Inputs(backbone, train_recs, eval_recs, labels, target_label_mode)


def _read(
    path: str, task: str, skip_bad: bool, labels: list[str] | None = None
) -> list[dict[str, Any]]:
    from training.data.schema import read_jsonl

    records, report = read_jsonl(path, task, skip_bad=skip_bad, labels=labels)
    log.info(report.summary())
    return [record_dict(r) for r in records]


def infer_tag_scheme(labels: list[str]) -> str | None:
    """'BIO' when every tag is O / B-x / I-x and some entity tag exists (NER), else None (POS)."""
    if labels and all(BIO_TAG.match(t) for t in labels) and any(t != "O" for t in labels):
        return "BIO"
    return None


# ----------------------------------------------------------------------------- phase 2: model


def _build_model(opts: TrainOptions, inputs: _Inputs) -> tuple[Any, Any]:
    """(XMixupModel on the backbone, seeded with --seed, nothing frozen yet; its tokenizer)."""
    from transformers import AutoTokenizer

    from training.config import XMixupConfig
    from training.modeling import XMixupModel

    task = opts.task
    config = XMixupConfig(
        task=task,
        labels=inputs.labels,
        method=opts.method,
        mixup_layer=opts.mixup_layer,
        lambda0=opts.lambda0,
        gate=opts.gate,
        tag_scheme=infer_tag_scheme(inputs.labels) if task == "tag" else None,
        pair_input=task == "classify" and any(r.get("target_pair") for r in inputs.train),
        pooling=opts.pooling,
        max_length=opts.max_length,
        backbone=str(inputs.backbone),
        word_token=opts.word_token,
    )
    max_len = int(config.max_length or 0)  # resolved by XMixupConfig (128, QA 384)
    if task == "qa" and config.max_query_length + 8 > max_len:
        # a short --max-length leaves no context after a 64-token question: cap it, not refuse
        config.max_query_length = max(4, max_len // 2)
    torch.manual_seed(opts.seed)
    model = XMixupModel.from_backbone(inputs.backbone, config)
    tokenizer = AutoTokenizer.from_pretrained(str(inputs.backbone))
    return model, tokenizer


_BT_KEY = {"classify": "source_bt", "tag": "source_bt_tokens", "qa": "source_bt_context"}


def _featurise(opts: TrainOptions, inputs: _Inputs, config: Any, tokenizer: Any) -> _Features:
    """The scheduled-sampling plan and the training features of the method's records."""
    from training.data.noise import SourceNoise

    task, method, recs = opts.task, opts.method, inputs.train
    plan = plan_for(opts, has_bt=any(r.get(_BT_KEY[task]) for r in recs))
    fit_recs = recs if method in TARGET_LOSS_METHODS else [source_only(r, task) for r in recs]
    noise = (
        SourceNoise.for_records(recs, task, opts.source_noise, seed=opts.seed)
        if method == "xmixup" and opts.source_noise > 0
        else None
    )
    featurizer = Featurizer(
        task=task,
        tokenizer=tokenizer,
        labels=inputs.labels,
        max_length=int(config.max_length),
        doc_stride=config.doc_stride,
        max_query_length=config.max_query_length,
        noise=noise,
        use_bt=method == "xmixup",
        target_label_mode=inputs.target_label_mode,
        word_token=config.word_token,
    )
    t0 = time.perf_counter()
    feats = featurizer(fit_recs)
    secs = time.perf_counter() - t0
    log.info(
        "featurised %d training items -> %d features in %.1fs", len(fit_recs), len(feats), secs
    )
    log.info(
        plan.describe() if method == "xmixup" else f"method {method}: no source stream in training"
    )
    return _Features(fit_recs, feats, plan)


# ----------------------------------------------------------------------------- phase 3: fit


def _gate_lr(opts: TrainOptions) -> float:
    return opts.gate_lr if opts.gate_lr is not None else opts.lr * GATE_LR_FACTOR


def _fit(
    opts: TrainOptions,
    inputs: _Inputs,
    feats: _Features,
    schedule: Schedule,
    model: Any,
    tokenizer: Any,
    ckpt_root: Path,
) -> _Fit:
    """Run the HF loop (resuming when asked), then average the last checkpoints when asked."""
    has_eval = bool(inputs.eval)
    pad_id = pad_id_of(tokenizer)
    timer = StepTimer()
    trainer = XMixupTrainer(
        model=model,
        args=training_arguments(opts, schedule, ckpt_root, has_eval),
        train_dataset=FeatureDataset(feats.features),
        # The Trainer insists on an eval dataset for step evaluation; ours reads eval_records.
        eval_dataset=FeatureDataset([{}]) if has_eval else None,
        data_collator=Collator(opts.task, pad_id),
        callbacks=[timer, ThreadsFromFile(opts.threads_file)] if opts.threads_file else [timer],
        xm_model=model,
        plan=feats.plan,
        alpha=opts.alpha,
        target_label_mode=inputs.target_label_mode,
        consistency_weight=opts.consistency_weight,
        unmixed_weight=opts.unmixed_weight,
        unmixed_distill=opts.unmixed_distill,
        gate_lr=_gate_lr(opts),
        eval_records=eval_view(inputs.eval, opts.task, opts.select_on) if inputs.eval else None,
        tokenizer=tokenizer,
        eval_batch_size=opts.eval_batch_size,
        group_by_length=opts.group_by_length,
    )
    resume = bool(opts.resume and checkpoint_dirs(ckpt_root))
    if opts.resume and not resume:
        log.warning("--resume: no checkpoint in %s, starting from scratch", ckpt_root)
    t_train = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - t_train
    averaged: list[str] = []
    if opts.average_checkpoints:
        dirs = checkpoint_dirs(ckpt_root)[-opts.average_checkpoints :]
        if len(dirs) < opts.average_checkpoints:
            log.warning(
                "--average-checkpoints %d: only %d checkpoint(s) saved; averaging those",
                opts.average_checkpoints,
                len(dirs),
            )
        average_checkpoints(model, dirs)
        averaged = [d.name for d in dirs]
    return _Fit(trainer, timer, result.training_loss, seconds, averaged)


# ----------------------------------------------------------------------------- phase 4: finalise


def _finalise(
    opts: TrainOptions,
    inputs: _Inputs,
    feats: _Features,
    schedule: Schedule,
    fit: _Fit,
    model: Any,
    tokenizer: Any,
) -> dict[str, Any]:
    """Final evaluation, the checkpoint, training_args.json and metrics.json (rank 0 only)."""
    out_dir = Path(opts.out)
    model.eval()
    final_eval: dict[str, Any] | None = None
    if inputs.eval:
        final_eval = evaluate_records(
            TorchPredictor(model, tokenizer), inputs.eval, batch_size=opts.eval_batch_size
        )
        print(format_table(final_eval))
    if opts.method == "xmixup" and not opts.no_trust_head:  # after the eval: metrics unchanged
        fit_trust_head(model, tokenizer, inputs.train, opts.task, seed=opts.seed)
    model.save_pretrained(out_dir, tokenizer_dir=inputs.backbone)
    metrics = _metrics(opts, inputs, feats, schedule, fit, final_eval)
    write_json(_training_args(opts, inputs, feats, schedule, model), out_dir / "training_args.json")
    write_json(metrics, out_dir / "metrics.json")
    print(metrics["summary"])
    return metrics


def _metrics(
    opts: TrainOptions,
    inputs: _Inputs,
    feats: _Features,
    schedule: Schedule,
    fit: _Fit,
    final_eval: dict[str, Any] | None,
) -> dict[str, Any]:
    state = fit.trainer.state
    best = state.best_model_checkpoint
    lam_keys = ("step", "lambda_mean", "lambda_std", "p_real", "real_source")
    metrics: dict[str, Any] = {
        "task": opts.task,
        "method": opts.method,
        "metric": final_eval["metric"] if final_eval else None,
        "eval": final_eval,
        "selection": {
            "select": schedule.select,
            "select_on": opts.select_on,
            "best_step": int(best.rsplit("-", 1)[-1]) if best else None,
            "best_metric": state.best_metric,
            "averaged_checkpoints": fit.averaged,
            "history": fit.trainer.eval_history,
        },
        "train": {
            "steps": state.global_step,
            "epochs": state.epoch,
            "examples": len(feats.fit_records),
            "languages": count_langs(feats.fit_records),  # the model card's languages seen
            "features": len(feats.features),
            "world_size": world_size(),
            "train_seconds": round(fit.seconds, 3),
            "final_loss": fit.training_loss,
            "step_time": fit.timer.summary(),
            "sampling": feats.plan.describe() if opts.method == "xmixup" else "no source stream",
            "target_labels": inputs.target_label_mode if opts.task == "tag" else None,
            "lambda_trajectory": [
                {k: t[k] for k in lam_keys if k in t} for t in fit.trainer.trajectory
            ],
            "loss_trajectory": fit.trainer.trajectory,
        },
    }
    if final_eval:
        metrics["lambda"] = final_eval["lambda"]
    metrics["summary"] = summary_line(metrics)
    return metrics


def _training_args(
    opts: TrainOptions, inputs: _Inputs, feats: _Features, schedule: Schedule, model: Any
) -> dict[str, Any]:
    """The options as given, what they resolved to, and the model config."""
    return {
        "options": asdict(opts),
        "resolved": {
            "backbone": str(inputs.backbone),
            "alpha": opts.alpha,
            "gate_lr": _gate_lr(opts),
            "sampling_k": feats.plan.k,
            "sampling": feats.plan.describe(),
            "mixup_layer": model.config.mixup_layer,
            "total_steps": schedule.total_steps,
            "eval_steps": schedule.eval_steps,
            "save_steps": schedule.save_steps,
            "select": schedule.select,
            "target_labels": inputs.target_label_mode if opts.task == "tag" else None,
            "world_size": world_size(),
            "torch": torch.__version__,
        },
        "config": model.config.to_dict(),
    }


def summary_line(metrics: dict[str, Any]) -> str:
    """One human-readable line: what was trained, how long, how good, what λ did."""
    t = metrics["train"]
    parts = [
        f"{metrics['task']}/{metrics['method']}: {t['steps']} steps in {t['train_seconds']:.0f}s"
    ]
    if t["step_time"]:
        parts.append(f"{t['step_time']['median_s']:.3f}s/step")
    ev = metrics.get("eval")
    if ev:
        parts.append(f"eval {ev['metric']} avg {ev['avg']:.2f} over {len(ev['per_lang'])} lang(s)")
        lam = ev["lambda"]
        if metrics["method"] == "xmixup":
            parts.append(
                f"lambda {lam['mean']:.3f}±{lam['std']:.3f} [{lam['min']:.3f}, {lam['max']:.3f}]"
            )
    sel = metrics["selection"]
    if sel["best_step"] is not None and sel["select"] == "best":
        parts.append(f"best step {sel['best_step']} (on {sel['select_on']} dev)")
    if sel["averaged_checkpoints"]:
        parts.append(f"averaged {len(sel['averaged_checkpoints'])} checkpoints")
    return "; ".join(parts)
