"""ONNX vs PyTorch agreement: generated and real inputs, typed failures, agreement figures.

fp32 must reproduce PyTorch within ``atol`` (1e-4) on every task output and on mixup_ratio;
anything else is an export bug and raises ``AtolError`` naming the output. fp16 / int8 are
lossy by design: their figures (max |Δ|, argmax / span agreement) go into manifest.parity.

Outputs are compared on real (non-padded) target positions only: padded rows of tag/QA logits
are undefined by contract (the service never reads them) and the fused attention kernels
are free to compute them differently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xmixup.core.decode import token_spans
from xmixup.core.vocab import SOURCE_PROBS_OUTPUT
from xmixup.errors import UserError

logger = logging.getLogger(__name__)

FP32_ATOL = 1e-4
Feeds = dict[str, np.ndarray]


class ParityError(UserError):
    """The exported graph does not compute what the PyTorch model computes."""


class ShapeError(ParityError):
    def __init__(self, output: str, expected: tuple[int, ...], got: tuple[int, ...]) -> None:
        super().__init__(
            f"ONNX output {output!r} has shape {got}, PyTorch gives {expected}",
            "the graph baked in a dimension; re-export (an exporter bug, please report it)",
        )
        self.output = output


class AtolError(ParityError):
    def __init__(self, output: str, max_abs: float, atol: float, case: str) -> None:
        super().__init__(
            f"ONNX output {output!r} differs from PyTorch by max |Δ| {max_abs:.3g} "
            f"> atol {atol:g} (on {case})",
            "try --no-optimize (a fusion may be at fault) or another --opset; report the model",
        )
        self.output = output
        self.max_abs = max_abs
        self.atol = atol


@dataclass
class OutputParity:
    """Agreement of one output over all compared cases."""

    name: str
    max_abs: float = 0.0
    compared: int = 0  # items (classify/qa) or tokens (tag) compared for agreement
    agree: int = 0
    worst_case: str = ""

    @property
    def agreement(self) -> float:
        return self.agree / self.compared if self.compared else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_abs": self.max_abs,
            "agreement": round(self.agreement, 6),
            "compared": self.compared,
        }


@dataclass
class ParityReport:
    task: str
    outputs: dict[str, OutputParity] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)
    # QA: best-span agreement (start and end both equal), counted per item.
    span_compared: int = 0
    span_agree: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cases": self.cases,
            "outputs": {name: p.as_dict() for name, p in self.outputs.items()},
            "max_abs": max((p.max_abs for p in self.outputs.values()), default=0.0),
        }
        if self.task == "qa":
            out["span_agreement"] = (
                self.span_agree / self.span_compared if self.span_compared else 1.0
            )
        return out


# ------------------------------------------------------------------------------ inputs
def generated_cases(
    vocab_size: int,
    *,
    pad_id: int = 1,
    bos_id: int = 0,
    eos_id: int = 2,
    inputs: Sequence[str],
    seed: int = 0,
    shapes: Sequence[tuple[int, int, int]] = ((1, 9, 14), (3, 17, 6), (3, 6, 6), (2, 4, 21)),
) -> list[tuple[str, Feeds]]:
    """Random token batches shaped (batch, target_length, source_length).

    Lengths differ between the streams and from the trace example, rows are padded to
    different real lengths (padding at the end, as the tokenizer does), and the first row of
    every batch is full length, so the graph must handle all of it with two independent axes.
    """
    rng = np.random.default_rng(seed)
    low = min(5, vocab_size - 1)  # skip specials, like real text
    cases: list[tuple[str, Feeds]] = []
    for batch, lt, ls in shapes:
        feeds: Feeds = {}
        for stream, length in (("target", lt), ("source", ls)):
            ids = rng.integers(low, vocab_size, size=(batch, length), dtype=np.int64)
            mask = np.ones((batch, length), dtype=np.int64)
            for row in range(1, batch):
                real = int(rng.integers(2, length + 1)) if length > 2 else length
                mask[row, real:] = 0
            ids[:, 0] = bos_id
            real_lengths = mask.sum(axis=1)
            ids[np.arange(batch), real_lengths - 1] = eos_id
            ids[mask == 0] = pad_id
            feeds[f"{stream}_input_ids"] = ids
            feeds[f"{stream}_attention_mask"] = mask
        cases.append(
            (
                f"generated b={batch} Lt={lt} Ls={ls}",
                {k: v for k, v in feeds.items() if k in inputs},
            )
        )
    return cases


def batched(items: Sequence[Feeds], batch_size: int) -> Iterable[Feeds]:
    """Right-pad per-item feeds ({name: [L]} int arrays) into batches of `batch_size`."""
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        out: Feeds = {}
        for name in chunk[0]:
            width = max(len(item[name]) for item in chunk)
            pad = 1 if name.endswith("input_ids") else 0
            arr = np.full((len(chunk), width), pad, dtype=np.int64)
            for row, item in enumerate(chunk):
                arr[row, : len(item[name])] = item[name]
            out[name] = arr
        yield out


# ------------------------------------------------------------------------------ comparison
def _best_spans(
    start: np.ndarray, end: np.ndarray, mask: np.ndarray, max_len: int
) -> list[tuple[int, int]]:
    """Per item: the best (start, end) token span on real tokens, by the service's search."""
    spans = []
    for s, e, m in zip(start, end, mask, strict=True):
        candidates = token_spans(s, e, range(int(m.sum())), max_len)
        best = min(candidates, key=lambda c: (-c[2], c[0], c[1]))
        spans.append((best[0], best[1]))
    return spans


def compare_outputs(
    task: str,
    case: str,
    reference: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    target_mask: np.ndarray | None,
    report: ParityReport,
    *,
    max_answer_length: int = 30,
) -> None:
    """Fold one batch's comparison into `report` (max |Δ| and argmax / span agreement)."""
    report.cases.append(case)
    for name, ref in reference.items():
        out = got[name]
        if ref.shape != out.shape:
            raise ShapeError(name, tuple(ref.shape), tuple(out.shape))
        entry = report.outputs.setdefault(name, OutputParity(name))
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        if name in ("logits", "start_logits", "end_logits") and target_mask is not None:
            keep = target_mask.astype(bool)
            diff = np.abs(ref64 - out64)[keep]
        else:
            diff = np.abs(ref64 - out64)
        max_abs = float(diff.max()) if diff.size else 0.0
        if not np.isfinite(out64).all() and np.isfinite(ref64).all():
            max_abs = float("inf")
        if max_abs > entry.max_abs or not entry.worst_case:
            entry.max_abs = max(entry.max_abs, max_abs)
            entry.worst_case = case
        if name in ("probabilities", SOURCE_PROBS_OUTPUT):
            entry.compared += len(ref)
            entry.agree += int((ref.argmax(-1) == out.argmax(-1)).sum())
        elif name == "logits" and target_mask is not None:
            keep = target_mask.astype(bool)
            entry.compared += int(keep.sum())
            entry.agree += int((ref.argmax(-1) == out.argmax(-1))[keep].sum())
        elif name in ("start_logits", "end_logits") and target_mask is not None:
            keep = target_mask.astype(bool)
            ref_arg = np.where(keep, ref, -np.inf).argmax(-1)
            out_arg = np.where(keep, out, -np.inf).argmax(-1)
            entry.compared += len(ref)
            entry.agree += int((ref_arg == out_arg).sum())
    if task == "qa" and target_mask is not None:
        ref_spans = _best_spans(
            reference["start_logits"], reference["end_logits"], target_mask, max_answer_length
        )
        out_spans = _best_spans(
            got["start_logits"], got["end_logits"], target_mask, max_answer_length
        )
        report.span_compared += len(ref_spans)
        report.span_agree += sum(a == b for a, b in zip(ref_spans, out_spans, strict=True))


def run_parity(
    task: str,
    cases: Iterable[tuple[str, Feeds]],
    torch_fn: Callable[[Feeds], dict[str, np.ndarray]],
    onnx_fn: Callable[[Feeds], dict[str, np.ndarray]],
    *,
    max_answer_length: int = 30,
) -> ParityReport:
    """Run both sides on every case and collect the figures (no pass/fail here)."""
    report = ParityReport(task=task)
    for name, feeds in cases:
        reference = torch_fn(feeds)
        got = onnx_fn(feeds)
        mask = feeds.get("target_attention_mask", feeds.get("source_attention_mask"))
        compare_outputs(
            task, name, reference, got, mask, report, max_answer_length=max_answer_length
        )
    return report


def check_fp32(report: ParityReport, atol: float = FP32_ATOL) -> None:
    """Raise AtolError for the worst output over `atol` (every output is held to it)."""
    worst = max(report.outputs.values(), key=lambda p: p.max_abs, default=None)
    for entry in report.outputs.values():
        logger.info(
            "[%s] %s: max |Δ| %.2e (atol %g), argmax agreement %.4f",
            "ok" if entry.max_abs <= atol else "x",
            entry.name,
            entry.max_abs,
            atol,
            entry.agreement,
        )
    if worst is not None and not worst.max_abs <= atol:  # `not <=` also catches NaN
        raise AtolError(worst.name, worst.max_abs, atol, worst.worst_case)
