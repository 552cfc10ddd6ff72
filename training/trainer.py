"""X-Mixup training on top of the Hugging Face Trainer.

The HF Trainer supplies the loop, AdamW + linear schedule, checkpoints, resuming, progress
bars and DDP (``torchrun --nproc_per_node N``; gloo on CPU). This module adds:
- ``XMixupTrainer.compute_loss``: per-step scheduled sampling (``training/sampling.py``) and
  the X-Mixup / baseline losses (``training/losses.py``);
- optimizer groups: λ's gate gets its own, larger learning rate (at the encoder's rate the
  gate never moves: a CPU trial saw λ = 0.475 ± 0.01 for every input);
- evaluation through ``training/evaluate.py`` (the same code ``xmixup evaluate`` runs), model
  selection on the target or on the English (source) side of the dev file;
- a λ / loss-part trajectory in the logs, step timing, checkpoint averaging, and the output
  directory: the final checkpoint + training_args.json + metrics.json.
"""

from __future__ import annotations

import logging
import math
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from training.collate import Collator
from training.data.schema import collect_labels
from training.evaluate import TorchPredictor, eval_view, evaluate_records, format_table, write_json
from training.features import Featurizer, record_dict, source_only
from training.losses import target_only_loss, xmixup_loss
from training.sampling import SamplingPlan, make_plan
from xmixup.errors import UserError

log = logging.getLogger(__name__)

# Paper / reference scripts: α per task (Table 10).
DEFAULT_ALPHA = {"classify": 0.4, "tag": 0.8, "qa": 0.2}
# The gate's learning rate relative to the encoder's when --gate-lr is not given.
GATE_LR_FACTOR = 100.0
BIO_TAG = re.compile(r"^(O|[BI]-.+)$")


@dataclass
class TrainOptions:
    """Everything ``xmixup train`` takes (CLI flags map one to one)."""

    task: str
    method: str
    train: str
    out: str
    eval: str | None = None
    backbone: str | None = None
    max_steps: int | None = None
    epochs: float = 3.0
    batch_size: int = 16
    max_length: int | None = None
    lr: float = 5e-5
    gate_lr: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 1
    mixup_layer: int | None = None
    alpha: float | None = None
    lambda0: float = 0.5
    gate: str = "normalized"
    freeze_embeddings: bool = False
    source_noise: float = 0.0
    sampling_k: float | None = None
    target_labels: str | None = None
    teacher: str | None = None
    select: str | None = None
    select_on: str = "target"
    average_checkpoints: int = 0
    eval_steps: int | None = None
    save_steps: int | None = None
    logging_steps: int | None = None
    resume: bool = False
    skip_bad: bool = False
    num_threads: int | None = None
    eval_batch_size: int = 32
    disable_tqdm: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- callbacks


class StepTimer(TrainerCallback):
    """Wall time of every optimisation step (forward + backward + optimizer), for cost reports."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t0)

    def summary(self) -> dict[str, float]:
        # The first steps pay allocator / thread-pool warm-up; skip them when there is room.
        t = self.times[2:] if len(self.times) > 5 else self.times
        if not t:
            return {}
        return {"median_s": statistics.median(t), "mean_s": statistics.fmean(t), "steps": len(t)}


# ----------------------------------------------------------------------------- trainer


class XMixupTrainer(Trainer):
    """HF Trainer with the X-Mixup loss, per-step scheduled sampling and our evaluation."""

    def __init__(
        self,
        *args: Any,
        xm_model: Any,
        plan: SamplingPlan,
        alpha: float,
        target_label_mode: str,
        gate_lr: float,
        eval_records: list[dict[str, Any]] | None,
        tokenizer: Any,
        eval_batch_size: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.xm = xm_model
        self.task = xm_model.config.task
        self.method = xm_model.config.method
        self.plan = plan
        self.alpha = alpha
        self.target_label_mode = target_label_mode
        self.gate_lr = gate_lr
        self.eval_records = eval_records
        self.xm_tokenizer = tokenizer
        self.xm_eval_batch_size = eval_batch_size
        self._window: dict[str, list[float]] = {}
        self.trajectory: list[dict[str, float]] = []
        self.eval_history: list[dict[str, Any]] = []

    # -------------------------------------------------------------- optimizer
    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """AdamW with weight decay on weights, none on biases/LayerNorm/gate; gate at gate_lr."""
        if self.optimizer is None:
            opt_model: Any = self.model if model is None else model
            gate_ids = {id(p) for p in self.xm.gate_parameters()}
            decay = set(self.get_decay_parameter_names(opt_model))
            named = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
            groups = [
                {
                    "params": [p for n, p in named if id(p) not in gate_ids and n in decay],
                    "weight_decay": self.args.weight_decay,
                },
                {
                    "params": [p for n, p in named if id(p) not in gate_ids and n not in decay],
                    "weight_decay": 0.0,
                },
                {
                    "params": [p for _, p in named if id(p) in gate_ids],
                    "weight_decay": 0.0,
                    "lr": self.gate_lr,
                },
            ]
            groups = [g for g in groups if g["params"]]
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    # -------------------------------------------------------------- loss
    def _note(self, **values: float) -> None:
        for k, v in values.items():
            self._window.setdefault(k, []).append(float(v))

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        t_ids, t_mask = inputs["target_input_ids"], inputs["target_attention_mask"]
        if self.method != "xmixup":
            out = model(target_input_ids=t_ids, target_attention_mask=t_mask)
            # translate-test trains its source stream on English fed as the target.
            logits = out.target_logits if out.target_logits is not None else out.source_logits
            if self.task == "qa":
                logits = (logits[..., 0], logits[..., 1])
            parts = target_only_loss(
                self.task, logits, inputs, target_label_mode=self.target_label_mode
            )
            self._note(loss_task_target=parts.task_target)
            return (parts.total, out) if return_outputs else parts.total

        step = self.state.global_step
        use_real = self.plan.use_real(step) if model.training else True
        prefix = "source" if use_real else "alt_source"
        s_ids, s_mask = inputs[f"{prefix}_input_ids"], inputs[f"{prefix}_attention_mask"]
        is_real = inputs["source_is_original"] if use_real else inputs["alt_is_real"]
        batch = dict(inputs)
        batch["source_attention_mask"] = s_mask
        if self.task == "tag" and not use_real:
            # Stand-in sources have other lengths; their label rows are unused (weight 0) and
            # items that kept their real source are aligned position by position.
            batch["source_labels"] = _fit_width(inputs["source_labels"], s_ids.shape[1], -100)
        out = model(
            target_input_ids=t_ids,
            target_attention_mask=t_mask,
            source_input_ids=s_ids,
            source_attention_mask=s_mask,
        )
        source_ok = is_real & inputs["source_has_labels"]
        out_view = _QAView(out) if self.task == "qa" else out
        parts = xmixup_loss(
            self.task,
            out_view,
            batch,
            source_ok,
            alpha=self.alpha,
            target_label_mode=self.target_label_mode,
        )
        lam = out.mixup_ratio.detach().float()
        self._note(
            lambda_mean=float(lam.mean()),
            lambda_std=float(lam.std()) if lam.numel() > 1 else 0.0,
            p_real=self.plan.p_real_at(step),
            real_source=float(use_real),
            loss_task_source=parts.task_source,
            loss_task_target=parts.task_target,
            loss_mse=parts.mse,
            loss_kl=parts.kl,
        )
        return (parts.total, out) if return_outputs else parts.total

    # -------------------------------------------------------------- logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._window:
            summary = {k: _nanmean(v) for k, v in self._window.items()}
            logs.update({k: round(v, 6) for k, v in summary.items() if not math.isnan(v)})
            self.trajectory.append({"step": self.state.global_step, **summary})
            self._window = {}
        super().log(logs, start_time)

    # -------------------------------------------------------------- evaluation
    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Score the live model on the eval records with ``training/evaluate.py``.

        Every DDP rank evaluates the whole (small) dev set itself: best-checkpoint selection
        needs the metric on every rank, and this avoids any collective in evaluation.
        """
        if not self.eval_records:
            return {}
        predictor = TorchPredictor(self.xm, self.xm_tokenizer)
        res = evaluate_records(predictor, self.eval_records, batch_size=self.xm_eval_batch_size)
        metrics = {
            f"{metric_key_prefix}_score": res["avg"],
            f"{metric_key_prefix}_lambda_mean": res["lambda"]["mean"],
            f"{metric_key_prefix}_lambda_std": res["lambda"]["std"],
        }
        if "em" in res:
            metrics[f"{metric_key_prefix}_em"] = res["em"]["avg"]
        for lang, v in res["per_lang"].items():
            metrics[f"{metric_key_prefix}_{lang}"] = v
        self.eval_history.append(
            {"step": self.state.global_step, "score": res["avg"], "lambda": res["lambda"]}
        )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics


class _QAView:
    """An XMixupOutput whose QA logits are (start, end) pairs, as losses.py expects."""

    def __init__(self, out: Any) -> None:
        self.target_logits = (out.target_logits[..., 0], out.target_logits[..., 1])
        self.source_logits = (out.source_logits[..., 0], out.source_logits[..., 1])
        self.source_last_hidden = out.source_last_hidden
        self.target_last_hidden = out.target_last_hidden


def _fit_width(t: torch.Tensor, width: int, fill: int) -> torch.Tensor:
    if t.shape[1] >= width:
        return t[:, :width]
    pad = torch.full((t.shape[0], width - t.shape[1]), fill, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


class FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, feats: list[dict[str, Any]]) -> None:
        self.feats = feats

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.feats[i]


# ----------------------------------------------------------------------------- helpers


def infer_tag_scheme(labels: list[str]) -> str | None:
    """'BIO' when every tag is O / B-x / I-x and some entity tag exists (NER), else None (POS)."""
    if labels and all(BIO_TAG.match(t) for t in labels) and any(t != "O" for t in labels):
        return "BIO"
    return None


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def checkpoint_dirs(root: Path) -> list[Path]:
    """HF ``checkpoint-<step>`` directories under root, oldest first."""
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def average_checkpoints(model: Any, dirs: list[Path]) -> None:
    """Load the element-wise mean of the checkpoints' weights into ``model`` ("Free Lunch")."""
    from safetensors.torch import load_file

    total: dict[str, torch.Tensor] = {}
    for d in dirs:
        state = load_file(str(d / "model.safetensors"))
        for k, v in state.items():
            total[k] = total[k] + v.double() if k in total else v.double()
    own = model.state_dict()
    avg = {k: (v / len(dirs)).to(own[k].dtype) for k, v in total.items()}
    model.load_state_dict(avg, strict=True)


def pseudo_label_with_teacher(
    records: list[dict[str, Any]], teacher_dir: str, labels: list[str], batch_size: int = 32
) -> list[dict[str, Any]]:
    """Per-word label distributions on the target words from a (zero-shot) teacher checkpoint.

    The source stream's predictions cannot be aligned to target words, so pseudo-labels come
    from a model that tags the target directly (the reference used such translate-train
    logits). Words the teacher never saw (truncated) get a uniform row.
    """
    from training.evaluate import load_predictor

    teacher = load_predictor(teacher_dir)
    if teacher.info.task != "tag":
        raise UserError(f"--teacher {teacher_dir} is a {teacher.info.task!r} model, not 'tag'")
    info = teacher.info
    # A teacher trained on English alone may never have seen a rare tag (SYM, X) that some
    # target language has: its distribution is placed into the student's label columns, with
    # zero mass on the tags it does not know.
    unknown = [t for t in info.labels if t not in labels]
    if unknown:
        raise UserError(
            f"--teacher predicts tag(s) {unknown} that the training data does not have "
            f"(training labels: {labels})",
            "train the teacher on a subset of the student's tag set",
        )
    columns = np.array([labels.index(t) for t in info.labels])
    # The teacher tags the target words alone (fed as their own source). Tags are not needed
    # to tag: every word gets a placeholder label the featuriser accepts.
    recs = []
    for r in records:
        placeholder = [info.labels[0]] * len(r["target_tokens"])
        recs.append(
            dict(
                r,
                source_tokens=r["target_tokens"],
                source_tags=placeholder,
                target_tags=placeholder,
                source_bt_tokens=None,
            )
        )
    feat = Featurizer("tag", teacher.tokenizer, labels=[*info.labels], max_length=info.max_length)
    feats = feat(recs)
    collate = Collator("tag", teacher.pad_id)
    out = []
    for i in range(0, len(feats), batch_size):
        chunk = feats[i : i + batch_size]
        b = collate(chunk)
        res = teacher(
            {
                k: b[k].numpy()
                for k in (
                    "target_input_ids",
                    "target_attention_mask",
                    "source_input_ids",
                    "source_attention_mask",
                )
            }
        )
        for row, f in enumerate(chunk):
            logits = res["logits"][row]
            z = logits - logits.max(axis=-1, keepdims=True)
            p_teacher = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
            p = np.zeros((len(p_teacher), len(labels)))
            p[:, columns] = p_teacher
            n_words = len(records[f["example_index"]]["target_tokens"])
            probs = [[1.0 / len(labels)] * len(labels) for _ in range(n_words)]
            for pos, w in enumerate(f["target_word_index"]):
                if w >= 0:
                    probs[w] = [float(x) for x in p[pos]]
            out.append(probs)
    return [dict(r, target_tag_probs=p) for r, p in zip(records, out, strict=True)]


# ----------------------------------------------------------------------------- entry point


def _has_bt(record: dict[str, Any], task: str) -> bool:
    key = {"classify": "source_bt", "tag": "source_bt_tokens", "qa": "source_bt_context"}[task]
    return bool(record.get(key))


def _check_options(opts: TrainOptions, ckpt_root: Path) -> None:
    """Refuse flag combinations that cannot work, before anything heavy is loaded."""
    if opts.select == "best" and not opts.eval:
        raise UserError("--select best needs --eval FILE", "pass a dev file or use --select last")
    if opts.select == "best" and opts.average_checkpoints:
        raise UserError(
            "--select best and --average-checkpoints exclude each other",
            "checkpoint averaging replaces selection: drop --select best",
        )
    if opts.select_on not in ("target", "source"):
        raise UserError(f"--select-on must be target or source, not {opts.select_on!r}")
    if not 0.0 <= opts.source_noise <= 1.0:
        raise UserError(f"--source-noise {opts.source_noise} is not a probability in [0, 1]")
    if opts.alpha is not None and not 0.0 <= opts.alpha <= 1.0:
        raise UserError(f"--alpha {opts.alpha} is not in [0, 1]")
    if opts.target_labels not in (None, "gold", "pseudo"):
        raise UserError(f"--target-labels must be gold or pseudo, not {opts.target_labels!r}")
    if opts.teacher and opts.task != "tag":
        raise UserError("--teacher is for tagging pseudo-labels only", "drop --teacher")
    if opts.batch_size < 1 or (opts.max_steps is not None and opts.max_steps < 1):
        raise UserError("--batch-size and --max-steps must be positive")
    if checkpoint_dirs(ckpt_root) and not opts.resume:
        raise UserError(
            f"{ckpt_root} already holds checkpoints of an earlier run",
            "pass --resume to continue it, or choose a new --out",
        )


def _best_step(trainer: Trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


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


def _read(
    path: str, task: str, skip_bad: bool, labels: list[str] | None = None
) -> list[dict[str, Any]]:
    from training.data.schema import read_jsonl

    records, report = read_jsonl(path, task, skip_bad=skip_bad, labels=labels)
    log.info(report.summary())
    return [record_dict(r) for r in records]


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train one model; returns the metrics written to ``<out>/metrics.json``."""
    from transformers import AutoTokenizer

    from training.backbone import resolve_backbone
    from training.config import XMixupConfig
    from training.data.noise import SourceNoise
    from training.modeling import XMixupModel

    _, world = _world()
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    task, method = opts.task, opts.method
    out_dir = Path(opts.out)
    ckpt_root = out_dir / "checkpoints"
    _check_options(opts, ckpt_root)

    backbone = resolve_backbone(opts.backbone)
    train_recs = _read(opts.train, task, opts.skip_bad)
    labels = collect_labels(train_recs)
    eval_recs = _read(opts.eval, task, opts.skip_bad, labels or None) if opts.eval else None

    # ---- target labels for tagging
    target_label_mode = "gold"
    if task == "tag":
        have_gold = all(r.get("target_tags") for r in train_recs)
        mode = opts.target_labels or ("gold" if have_gold else "pseudo")
        if mode == "gold" and not have_gold and method in ("xmixup", "translate-train"):
            raise UserError(
                "--target-labels gold but some training items have no target_tags",
                "use --target-labels pseudo (with target_tag_probs or --teacher CKPT)",
            )
        if mode == "pseudo" and method in ("xmixup", "translate-train"):
            if opts.teacher:
                log.info("pseudo-labels: tagging the target words with teacher %s", opts.teacher)
                train_recs = pseudo_label_with_teacher(train_recs, opts.teacher, labels)
            elif not all(r.get("target_tag_probs") for r in train_recs):
                raise UserError(
                    "--target-labels pseudo needs target_tag_probs on every training item",
                    "pass --teacher CKPT (a zero-shot tagging checkpoint) to compute them",
                )
        target_label_mode = mode if method in ("xmixup", "translate-train") else "gold"

    # ---- model
    pair_input = task == "classify" and any(r.get("target_pair") for r in train_recs)
    config = XMixupConfig(
        task=task,
        labels=labels,
        method=method,
        mixup_layer=opts.mixup_layer,
        lambda0=opts.lambda0,
        gate=opts.gate,
        tag_scheme=infer_tag_scheme(labels) if task == "tag" else None,
        pair_input=pair_input,
        max_length=opts.max_length,
        backbone=str(backbone),
    )
    max_len = int(config.max_length or 0)  # resolved by XMixupConfig (128, QA 384)
    if task == "qa" and config.max_query_length + 8 > max_len:
        # A short --max-length (CPU budgets) would leave no context room after a 64-token
        # question: cap the question at half the window instead of refusing.
        config.max_query_length = max(4, max_len // 2)
    torch.manual_seed(opts.seed)
    model = XMixupModel.from_backbone(backbone, config)
    if opts.freeze_embeddings:
        # The word-embedding matrix is most of a multilingual encoder (96M of 118M for e5-small);
        # freezing it keeps the shared vocabulary aligned across languages and halves optimizer state.
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 1

    # ---- features
    alpha = opts.alpha if opts.alpha is not None else DEFAULT_ALPHA[task]
    has_bt = any(_has_bt(r, task) for r in train_recs)
    plan = make_plan(
        task, has_bt=has_bt, noise_p=opts.source_noise, seed=opts.seed, k=opts.sampling_k
    )
    if method != "xmixup":
        plan = SamplingPlan(k=plan.k, seed=opts.seed, fallback="real")
    fit_recs = (
        train_recs
        if method in ("xmixup", "translate-train")
        else [source_only(r, task) for r in train_recs]
    )
    noise = (
        SourceNoise.for_records(train_recs, task, opts.source_noise, seed=opts.seed)
        if method == "xmixup" and opts.source_noise > 0
        else None
    )
    featurizer = Featurizer(
        task=task,
        tokenizer=tokenizer,
        labels=labels,
        max_length=max_len,
        doc_stride=config.doc_stride,
        max_query_length=config.max_query_length,
        noise=noise,
        use_bt=method == "xmixup",
        target_label_mode=target_label_mode,
    )
    t0 = time.perf_counter()
    feats = featurizer(fit_recs)
    log.info(
        "featurised %d training items -> %d features in %.1fs",
        len(fit_recs),
        len(feats),
        time.perf_counter() - t0,
    )
    log.info(
        plan.describe() if method == "xmixup" else f"method {method}: no source stream in training"
    )

    eval_view_recs = eval_view(eval_recs, task, opts.select_on) if eval_recs else None

    # ---- schedule
    per_step = opts.batch_size * world
    steps_per_epoch = max(1, math.ceil(len(feats) / per_step))
    total_steps = opts.max_steps or max(1, math.ceil(steps_per_epoch * opts.epochs))
    select = opts.select or ("best" if eval_recs and not opts.average_checkpoints else "last")
    eval_steps = opts.eval_steps or max(1, total_steps // 5)
    save_steps = opts.save_steps or eval_steps
    if select == "best" and save_steps % eval_steps:
        raise UserError(
            f"--select best needs --save-steps ({save_steps}) to be a multiple of --eval-steps ({eval_steps})"
        )
    keep = max(2, opts.average_checkpoints or 0) + (1 if select == "best" else 0)
    args = TrainingArguments(
        output_dir=str(ckpt_root),
        per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.lr,
        weight_decay=opts.weight_decay,
        warmup_steps=round(opts.warmup_ratio * total_steps),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        num_train_epochs=opts.epochs,
        max_steps=total_steps,
        logging_steps=opts.logging_steps or max(1, min(50, total_steps // 20)),
        eval_strategy="steps" if eval_recs else "no",
        eval_steps=eval_steps if eval_recs else None,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=keep,
        save_only_model=False,
        load_best_model_at_end=select == "best",
        metric_for_best_model="eval_score" if select == "best" else None,
        greater_is_better=True,
        seed=opts.seed,
        data_seed=opts.seed,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and world > 1 else None,
        # Baselines never touch the gate (and translate-test the target head path): DDP must
        # be told that some parameters get no gradient.
        ddp_find_unused_parameters=method != "xmixup",
        dataloader_num_workers=0,
        disable_tqdm=opts.disable_tqdm,
        label_names=[],
    )
    gate_lr = opts.gate_lr if opts.gate_lr is not None else opts.lr * GATE_LR_FACTOR
    timer = StepTimer()
    trainer = XMixupTrainer(
        model=model,
        args=args,
        train_dataset=FeatureDataset(feats),
        # The Trainer insists on an eval dataset for step evaluation; ours reads eval_records.
        eval_dataset=FeatureDataset([{}]) if eval_recs else None,
        data_collator=Collator(task, pad_id),
        callbacks=[timer],
        xm_model=model,
        plan=plan,
        alpha=alpha,
        target_label_mode=target_label_mode,
        gate_lr=gate_lr,
        eval_records=eval_view_recs,
        tokenizer=tokenizer,
        eval_batch_size=opts.eval_batch_size,
    )
    resume = bool(opts.resume and checkpoint_dirs(ckpt_root))
    if opts.resume and not resume:
        log.warning("--resume: no checkpoint in %s, starting from scratch", ckpt_root)
    t_train = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - t_train

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

    if not trainer.is_world_process_zero():
        return {}
    # ---- final evaluation and output directory
    model.eval()
    final_eval: dict[str, Any] | None = None
    if eval_recs:
        final_eval = evaluate_records(
            TorchPredictor(model, tokenizer), eval_recs, batch_size=opts.eval_batch_size
        )
        print(format_table(final_eval))
    model.save_pretrained(out_dir, tokenizer_dir=backbone)
    lam_traj = [
        {k: t[k] for k in ("step", "lambda_mean", "lambda_std", "p_real", "real_source") if k in t}
        for t in trainer.trajectory
    ]
    metrics: dict[str, Any] = {
        "task": task,
        "method": method,
        "metric": final_eval["metric"] if final_eval else None,
        "eval": final_eval,
        "selection": {
            "select": select,
            "select_on": opts.select_on,
            "best_step": _best_step(trainer),
            "best_metric": trainer.state.best_metric,
            "averaged_checkpoints": averaged,
            "history": trainer.eval_history,
        },
        "train": {
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "examples": len(fit_recs),
            "features": len(feats),
            "world_size": world,
            "train_seconds": round(train_seconds, 3),
            "final_loss": result.training_loss,
            "step_time": timer.summary(),
            "sampling": plan.describe() if method == "xmixup" else "no source stream",
            "target_labels": target_label_mode if task == "tag" else None,
            "lambda_trajectory": lam_traj,
            "loss_trajectory": trainer.trajectory,
        },
    }
    if final_eval:
        metrics["lambda"] = final_eval["lambda"]
    metrics["summary"] = summary_line(metrics)
    training_args = {
        "options": {k: v for k, v in asdict(opts).items() if k != "extra"},
        "resolved": {
            "backbone": str(backbone),
            "alpha": alpha,
            "gate_lr": gate_lr,
            "sampling_k": plan.k,
            "sampling": plan.describe(),
            "mixup_layer": model.config.mixup_layer,
            "total_steps": total_steps,
            "eval_steps": eval_steps,
            "save_steps": save_steps,
            "select": select,
            "target_labels": target_label_mode if task == "tag" else None,
            "world_size": world,
            "torch": torch.__version__,
        },
        "config": model.config.to_dict(),
    }
    write_json(training_args, out_dir / "training_args.json")
    write_json(metrics, out_dir / "metrics.json")
    print(metrics["summary"])
    return metrics
