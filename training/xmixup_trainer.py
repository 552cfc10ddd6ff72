"""``XMixupTrainer``: the Hugging Face Trainer with the X-Mixup loss and our evaluation.

The HF Trainer supplies the loop, AdamW + linear schedule, checkpoints, resuming, progress
bars and DDP (``torchrun --nproc_per_node N``; gloo on CPU). This subclass adds:
- ``compute_loss``: per-step scheduled sampling (``training/sampling.py``) and the X-Mixup /
  baseline losses (``training/losses.py``);
- optimizer groups: λ's gate gets its own, larger learning rate (at the encoder's rate the
  gate never moves: a CPU trial saw λ = 0.475 ± 0.01 for every input);
- evaluation through ``training/evaluate.py`` (the same code ``xmixup evaluate`` runs);
- a λ / loss-part trajectory in the logs and step timing (``StepTimer``).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from training.evaluate import TorchPredictor, evaluate_records
from training.losses import target_only_loss, xmixup_loss
from training.sampling import SamplingPlan

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
        consistency_weight: float = 1.0,
        unmixed_weight: float = 0.0,
        unmixed_distill: float = 0.0,
        gate_lr: float,
        eval_records: list[dict[str, Any]] | None,
        tokenizer: Any,
        eval_batch_size: int,
        group_by_length: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.xm = xm_model
        self.task = xm_model.config.task
        self.method = xm_model.config.method
        self.plan = plan
        self.alpha = alpha
        self.consistency_weight = consistency_weight
        self.unmixed_weight = unmixed_weight
        self.unmixed_distill = unmixed_distill
        self.target_label_mode = target_label_mode
        self.gate_lr = gate_lr
        self.eval_records = eval_records
        self.xm_tokenizer = tokenizer
        self.xm_eval_batch_size = eval_batch_size
        self.group_by_length = group_by_length
        self._window: dict[str, list[float]] = {}
        self.trajectory: list[dict[str, float]] = []
        self.eval_history: list[dict[str, Any]] = []

    # -------------------------------------------------------------- sampling
    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """``--group-by-length``: the library's LengthGroupedSampler, fed our items' lengths
        (the Trainer's own option measures one ``input_ids`` column; ours are two streams)."""
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.group_by_length and isinstance(dataset, FeatureDataset):
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=dataset.lengths(),
            )
        return super()._get_train_sampler(train_dataset)

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
        if self.method == "xmixup":
            total, out = self._xmixup_loss(model, inputs)
        else:
            total, out = self._baseline_loss(model, inputs)
        return (total, out) if return_outputs else total

    def _baseline_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """One stream, the target-side task loss only."""
        out = model(
            target_input_ids=inputs["target_input_ids"],
            target_attention_mask=inputs["target_attention_mask"],
        )
        # translate-test trains its source stream on English fed as the target.
        logits = out.target_logits if out.target_logits is not None else out.source_logits
        if self.task == "qa":
            logits = (logits[..., 0], logits[..., 1])
        parts = target_only_loss(
            self.task, logits, inputs, target_label_mode=self.target_label_mode
        )
        self._note(loss_task_target=parts.task_target)
        return parts.total, out

    def _xmixup_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """Both streams, the source being real or a stand-in as the sampling plan says."""
        step = self.state.global_step
        n = len(inputs["target_input_ids"])
        self_mix = self.plan.self_mix_items(step, n) if model.training else None
        if self_mix is not None and self.plan.self_mix_copies and self_mix.any():
            # The drawn items train both paths: as they are, and a copy that mixes with itself.
            inputs = {k: _append_rows(v, self_mix) for k, v in inputs.items()}
            self_mix = np.concatenate([np.zeros_like(self_mix), np.ones(self_mix.sum(), bool)])
        t_ids, t_mask = inputs["target_input_ids"], inputs["target_attention_mask"]
        use_real = self.plan.use_real(step) if model.training else True
        prefix = "source" if use_real else "alt_source"
        s_ids, s_mask = inputs[f"{prefix}_input_ids"], inputs[f"{prefix}_attention_mask"]
        is_real = inputs["source_is_original"] if use_real else inputs["alt_is_real"]
        own = self.plan.no_source_items(step, len(t_ids)) if model.training else None
        if own is not None and own.any():
            own_t = torch.as_tensor(own, device=t_ids.device)
            pad_id = self.xm_tokenizer.pad_token_id
            s_ids, s_mask = _own_source(s_ids, s_mask, t_ids, t_mask, own_t, pad_id)
            is_real = is_real & ~own_t
        batch = dict(inputs)
        batch["source_attention_mask"] = s_mask
        if self.task == "tag" and s_ids.shape[1] != inputs["source_labels"].shape[1]:
            # Stand-in sources have other lengths; their label rows are unused (weight 0) and
            # items that kept their real source are aligned position by position.
            batch["source_labels"] = _fit_width(inputs["source_labels"], s_ids.shape[1], -100)
        out = model(
            target_input_ids=t_ids,
            target_attention_mask=t_mask,
            source_input_ids=s_ids,
            source_attention_mask=s_mask,
            self_mix=None if self_mix is None else torch.as_tensor(self_mix, device=t_ids.device),
            unmixed=model.training and (self.unmixed_weight > 0 or self.unmixed_distill > 0),
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
            consistency_weight=self.consistency_weight,
            unmixed_weight=self.unmixed_weight,
            unmixed_distill=self.unmixed_distill,
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
            loss_unmixed=parts.unmixed,
        )
        return parts.total, out

    # -------------------------------------------------------------- logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._window:
            if self.xm.frozen_cache is not None:
                self._note(frozen_cache_hit_rate=self.xm.frozen_cache.stats()["hit_rate"])
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
        u = out.unmixed_logits
        self.unmixed_logits = None if u is None else (u[..., 0], u[..., 1])


def _own_source(
    s_ids: torch.Tensor,
    s_mask: torch.Tensor,
    t_ids: torch.Tensor,
    t_mask: torch.Tensor,
    rows: torch.Tensor,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The source batch with ``rows`` replaced by their targets (the service's no-source input)."""
    width = max(s_ids.shape[1], t_ids.shape[1])
    pick = rows[:, None]
    ids = torch.where(pick, _fit_width(t_ids, width, pad_id), _fit_width(s_ids, width, pad_id))
    mask = torch.where(pick, _fit_width(t_mask, width, 0), _fit_width(s_mask, width, 0))
    return ids, mask


def _append_rows(value: Any, rows: np.ndarray) -> Any:
    """A batch tensor with copies of ``rows`` appended; other values as they are."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != len(rows):
        return value
    return torch.cat([value, value[torch.as_tensor(rows, device=value.device)]])


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

    def lengths(self) -> list[int]:
        """Sub-tokens per item, both streams: what a batch's padding follows."""
        return [
            len(f.get("target_input_ids", ())) + len(f.get("source_input_ids", ()))
            for f in self.feats
        ]

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.feats[i]
