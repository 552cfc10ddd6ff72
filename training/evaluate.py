"""Evaluation of a checkpoint (PyTorch) or a bundle (onnxruntime) on a JSONL file.

Both paths featurise with ``training/features.py`` (over the core featuriser) and decode with
``xmixup/core/decode.py``, the service's decoders, so a checkpoint, its exported bundle and
the service's answers are scored identically. Results are per language plus the unweighted
average over languages, with λ statistics; the training loop calls :func:`evaluate_records` on
the live model for model selection.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import metrics as M
from training.collate import Collator
from training.features import Featurizer, record_dict, source_only, target_as_source
from xmixup.core.bundle import load_bundle
from xmixup.core.decode import best_spans, word_tags
from xmixup.core.manifest import MANIFEST_NAME
from xmixup.core.runner import Runner
from xmixup.core.special_tokens import SpecialTokens, pad_id_of
from xmixup.core.vocab import INPUT_NAMES, SOURCE_PROBS_OUTPUT, TRUST_OUTPUT
from xmixup.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """What evaluation needs to know about a model, whichever runtime runs it."""

    task: str
    method: str
    labels: list[str]
    tag_scheme: str | None
    max_length: int
    doc_stride: int
    max_query_length: int
    max_answer_length: int
    word_token: str


class Predictor:
    """Runs padded int64 batches; returns the serving outputs by name as numpy arrays."""

    info: ModelInfo
    tokenizer: Any
    pad_id: int
    runtime: str = ""
    # manifest.no_source_fallback; a checkpoint answers "self" (experiments/fallback.py: unmixed)
    no_source_fallback: str = "self"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TorchPredictor(Predictor):
    """A live ``XMixupModel`` (PyTorch). Classification with X-Mixup also scores each stream."""

    runtime = "torch"

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = pad_id_of(tokenizer)
        c = model.config
        self.info = ModelInfo(
            c.task,
            c.method,
            list(c.labels),
            c.tag_scheme,
            int(c.max_length),
            c.doc_stride,
            c.max_query_length,
            c.max_answer_length,
            c.word_token,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        model = self.model
        device = next(model.parameters()).device
        t = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if self.info.task == "classify" and self.info.method == "xmixup" and model.mixup:
                    # forward() gives both streams' logits: the paper's rule (mean of the two
                    # softmaxes, = predict(combine="probs")) plus each stream alone.
                    out = model(**t)
                    p_t = torch.softmax(out.target_logits.float(), dim=-1)
                    p_s = torch.softmax(out.source_logits.float(), dim=-1)
                    res = {
                        "probabilities": (p_t + p_s) / 2.0,
                        "mixup_ratio": out.mixup_ratio,
                        "target_probabilities": p_t,
                        "source_probabilities": p_s,
                    }
                else:
                    res = model.predict(**t)
                if model.trust is not None and TRUST_OUTPUT not in res:
                    mask = t["source_attention_mask"].bool()
                    res[TRUST_OUTPUT] = model.trust(
                        model.source_mix(t["source_input_ids"], mask), mask
                    )
        finally:
            model.train(was_training)
        return {k: v.detach().float().cpu().numpy() for k, v in res.items()}


class OnnxPredictor(Predictor):
    """An exported bundle run by the core's runner (the service's), padded with its pad id."""

    runtime = "onnxruntime"

    def __init__(
        self, bundle_dir: str | Path, intra_op_threads: int | None = None, device: str = "cpu"
    ) -> None:
        from transformers import PreTrainedTokenizerFast

        bundle = load_bundle(bundle_dir)
        m = bundle.manifest
        self.runner = Runner.for_bundle(bundle, device, intra_op_threads)
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(bundle.tokenizer_path), **_hf_special_tokens(bundle.special_tokens)
        )
        self.pad_id = bundle.pad_id
        self.no_source_fallback = m.no_source_fallback
        self.info = ModelInfo(
            m.task,
            m.method,
            list(m.labels),
            m.tag_scheme,
            m.max_length,
            m.doc_stride or 128,
            m.max_query_length or 64,
            m.max_answer_length or 30,
            m.word_token_rule,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner.run(batch)


def _hf_special_tokens(special: SpecialTokens) -> dict[str, str]:
    """transformers' names for the bundle's special tokens (XLM-R/BERT style: the sequence
    start is also the classifier token, its end also the separator)."""
    roles = {
        "bos_token": special.bos,
        "cls_token": special.bos,
        "eos_token": special.eos,
        "sep_token": special.eos,
        "unk_token": special.unk,
        "pad_token": special.pad,
        "mask_token": special.mask,
    }
    return {name: token.token for name, token in roles.items() if token is not None}


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def load_predictor(path: str | Path, num_threads: int | None = None) -> Predictor:
    """A checkpoint directory (config.json with an xmixup section) or a bundle (manifest.json)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"model {path} is not a directory", "pass a checkpoint or bundle directory")
    if is_bundle(path):
        return OnnxPredictor(path, num_threads)
    from transformers import AutoTokenizer

    from training.modeling import XMixupModel

    model = XMixupModel.from_pretrained(path)
    return TorchPredictor(model, AutoTokenizer.from_pretrained(str(path)))


def _batches(feats: list[dict[str, Any]], batch_size: int) -> list[list[int]]:
    # Length-sorted batches cut padding (evaluation dominates short CPU runs); results are
    # re-associated by feature index, so the order does not matter.
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["target_input_ids"]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _lambda_stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    stats = ("mean", "std", "min", "max")
    if a.size == 0:
        return dict.fromkeys(stats, float("nan"))
    return {name: float(getattr(a, name)()) for name in stats}


def _run(
    predictor: Predictor,
    feats: list[dict[str, Any]],
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    no_source: bool,
) -> dict[str, list[Any]]:
    """The predictor's outputs per feature (token outputs cut to the feature's length)."""
    collate = Collator(predictor.info.task, predictor.pad_id)
    outputs: dict[str, list[Any]] = defaultdict(lambda: [None] * len(feats))
    batches = _batches(feats, batch_size)
    for bi, idx in enumerate(batches):
        b = collate([feats[i] for i in idx])
        out = predictor({k: b[k].numpy() for k in INPUT_NAMES})
        for name, value in out.items():
            for row, i in enumerate(idx):
                width = len(feats[i]["target_input_ids"])
                v = value[row]
                outputs[name][i] = v[:width] if v.ndim >= 1 and name in _TOKEN_OUTPUTS else v
        if progress is not None:
            progress(bi + 1, len(batches))
    if no_source and predictor.no_source_fallback == "unmixed":
        # The service's rule (xmixup.core.postprocess.classify_result): the source stream,
        # which read the target unmixed, answers; no mixing happened.
        outputs["probabilities"] = outputs[SOURCE_PROBS_OUTPUT]
        outputs["mixup_ratio"] = [0.0] * len(feats)
    return outputs


def evaluate_records(
    predictor: Predictor,
    records: Sequence[Any],
    *,
    no_source: bool = False,
    noise: Any = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``predictor`` on ``records``: per-language metric, average and λ statistics.

    ``no_source``: the target is fed as its own source. ``noise``: a ``SourceNoise`` that
    replaces the real source (robustness sweep). For translate-test models the source
    (English) is what the model reads; spans/tags are always scored on the target.
    """
    info = predictor.info
    recs = [record_dict(r) for r in records]
    if no_source:
        recs = [target_as_source(r, info.task) for r in recs]
    if info.task == "tag" and any(not r.get("target_tags") for r in recs):
        raise UserError(
            "tagging evaluation needs target_tags on every item",
            "evaluate on a file with gold target tags",
        )
    featurizer = Featurizer(
        task=info.task,
        tokenizer=predictor.tokenizer,
        labels=info.labels,
        max_length=info.max_length,
        doc_stride=info.doc_stride,
        max_query_length=info.max_query_length,
        noise=noise,
        noise_replaces_source=noise is not None,
        use_bt=False,
        word_token=info.word_token,
    )
    t0 = time.perf_counter()
    feats = featurizer(recs)
    outputs = _run(predictor, feats, batch_size, progress, no_source)
    result = _score(info, recs, feats, outputs)
    result["lambda"] = _lambda_stats([float(x) for x in outputs["mixup_ratio"]])
    scores = result.pop("score_per_item")
    if TRUST_OUTPUT in outputs:
        # Per item, in item order: its first feature's value (QA: the first window's).
        first = {f["example_index"]: fi for fi, f in reversed(list(enumerate(feats)))}
        trust = [float(outputs[TRUST_OUTPUT][first[i]]) for i in range(len(recs))]
        result.update(trust=_lambda_stats(trust), trust_per_item=trust, score_per_item=scores)
    result.update(
        task=info.task,
        method=info.method,
        runtime=predictor.runtime,
        source_used=not no_source,
        source_noise=float(getattr(noise, "p", 0.0)) if noise is not None else 0.0,
        items=len(recs),
        features=len(feats),
        eval_seconds=round(time.perf_counter() - t0, 3),
    )
    return result


_TOKEN_OUTPUTS = ("logits", "start_logits", "end_logits")


def _score(info: ModelInfo, recs: list[dict], feats: list[dict], out: dict[str, list]) -> dict:
    langs = [r["lang"] for r in recs]
    if info.task == "classify":
        gold_ids = [info.labels.index(r["label"]) for r in recs]
        by_example = [int(np.argmax(p)) for p in out["probabilities"]]
        res = M.accuracy_by_lang(langs, by_example, gold_ids)
        res["score_per_item"] = [float(p == g) for p, g in zip(by_example, gold_ids, strict=True)]
        if "target_probabilities" in out:
            res["streams"] = {
                name: M.accuracy_by_lang(
                    langs, [int(np.argmax(p)) for p in out[f"{name}_probabilities"]], gold_ids
                )
                for name in ("target", "source")
            }
        return res
    if info.task == "tag":
        return _score_tag(info, recs, feats, out["logits"])
    return _score_qa(info, recs, feats, out)


def _score_tag(info: ModelInfo, recs: list[dict], feats: list[dict], logits: list) -> dict:
    # Tagging has one feature per example (no windows): feature i is example i.
    langs = [r["lang"] for r in recs]
    preds: list[list[str]] = []
    golds: list[list[str]] = []
    truncated = 0
    for fi, f in enumerate(feats):
        r = recs[f["example_index"]]
        index = f["target_word_index"]
        tags = word_tags(logits[fi], index, info.labels, len(r["target_tags"]))
        # words past max_length were truncated away (always the last ones): scored on what fits
        n = sum(t is not None for t in tags)
        truncated += len(tags) - n
        preds.append([t.tag for t in tags[:n] if t is not None])
        golds.append(list(r["target_tags"][:n]))
    if info.tag_scheme == "BIO":
        res = M.entity_f1_by_lang(langs, preds, golds)
        res["accuracy"] = M.word_accuracy_by_lang(langs, preds, golds)
    else:
        res = M.word_accuracy_by_lang(langs, preds, golds)
    res["truncated_words"] = truncated
    res["score_per_item"] = M.word_accuracy_per_item(preds, golds)
    return res


def _score_qa(info: ModelInfo, recs: list[dict], feats: list[dict], out: dict[str, list]) -> dict:
    # gather every window of an example, then n-best span decoding
    windows: dict[int, list] = defaultdict(list)
    for fi, f in enumerate(feats):
        windows[f["example_index"]].append(
            (np.asarray(out["start_logits"][fi]), np.asarray(out["end_logits"][fi]), f["offsets"])
        )
    predictions = []
    for i, r in enumerate(recs):
        spans = best_spans(r["context"], windows[i], max_answer_length=info.max_answer_length)
        predictions.append(spans[0].text if spans else "")
    golds_text = [[a["text"] for a in r["answers"]] for r in recs]
    res = M.squad_by_lang([r["lang"] for r in recs], predictions, golds_text)
    res["score_per_item"] = [
        M.qa_scores(p, g, r["lang"])[1]
        for p, g, r in zip(predictions, golds_text, recs, strict=True)
    ]
    return res


def eval_view(records: Sequence[Any], task: str, select_on: str) -> list[dict[str, Any]]:
    """The records model selection scores: as given (``target``) or their English side
    (``source``: target := source, the true zero-shot setting without target-language dev)."""
    recs = [record_dict(r) for r in records]
    if select_on == "source":
        return [source_only(r, task) for r in recs]
    return recs


def format_table(result: dict[str, Any]) -> str:
    """A per-language table for the terminal."""
    metric = result["metric"]
    lines = [f"{'lang':<12}{metric:>10}{'n':>8}"]
    for lang, v in result["per_lang"].items():
        lines.append(f"{lang:<12}{v:>10.2f}{result['n'].get(lang, 0):>8}")
    lines.append(f"{'avg':<12}{result['avg']:>10.2f}{sum(result['n'].values()):>8}")
    if "em" in result:
        lines.append(f"{'avg EM':<12}{result['em']['avg']:>10.2f}")
    lam = result.get("lambda", {})
    if lam:
        lines.append(
            f"lambda mean {lam['mean']:.4f} std {lam['std']:.4f} min {lam['min']:.4f} max {lam['max']:.4f}"
        )
    if "trust" in result:
        t = result["trust"]
        lines.append(
            f"trust mean {t['mean']:.4f} std {t['std']:.4f} min {t['min']:.4f} max {t['max']:.4f}"
        )
    for name, s in (result.get("streams") or {}).items():
        lines.append(f"{name} stream alone: {s['avg']:.2f}")
    return "\n".join(lines)


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
