"""The bundle's model card, ``README.md``: what the model is, what it was trained and measured
on, and how to use it — written by ``xmixup export`` from the manifest's fields and the
checkpoint's ``metrics.json`` / ``training_args.json``, before the manifest, so its checksum
is in the manifest and a changed card is refused like any changed bundle file.

Only facts the export can see are stated; what it cannot (a data licence nobody recorded, an
evaluation that was not run) is said to be unknown, with how to supply it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_export.manifest_fields import read_json_object
from xmixup import __version__ as XMIXUP_VERSION
from xmixup.core.manifest import MODEL_CARD_NAME

logger = logging.getLogger(__name__)

_LICENCE_LINE = re.compile(r"^\s*\**licen[cs]e\**\s*:\s*(.+)$", re.IGNORECASE)

METHOD_TEXT = {
    "xmixup": "X-Mixup: reads the target text and its English translation, mixing the "
    "translation's encoder states into the target's",
    "translate-train": "translate-train baseline: reads the target text only",
    "zero-shot": "zero-shot baseline: reads the target text only (trained on English)",
    "translate-test": "translate-test baseline: reads the English translation only",
}
TASK_TEXT = {
    "classify": "text classification",
    "tag": "word tagging",
    "qa": "extractive question answering",
}


def data_licence(train_file: str | None) -> str | None:
    """The ``Licence:`` line of a ``SOURCE.md`` beside the training file (as the example data
    sets in examples/data/ have), or None."""
    if not train_file:
        return None
    source = Path(train_file).parent / "SOURCE.md"
    if not source.is_file():
        return None
    for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LICENCE_LINE.match(line)
        if match:
            return f"{match.group(1).strip()} (from {source.parent.name}/SOURCE.md)"
    return None


def _short_path(path: str | None) -> str:
    """The file's name and its folder's: enough to recognise it, no machine paths."""
    if not path:
        return "unknown"
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def _num(value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.2f}"
    return "n/a"


def _stats(stats: Mapping[str, Any] | None) -> str:
    if not stats or not isinstance(stats.get("mean"), (int, float)):
        return "not measured"
    return (
        f"mean {stats['mean']:.3f} ± {stats.get('std', float('nan')):.3f} "
        f"(min {stats.get('min', float('nan')):.3f}, max {stats.get('max', float('nan')):.3f})"
    )


def _summary(fields: Mapping[str, Any], layers: int | None) -> list[str]:
    task, method = fields["task"], fields["method"]
    labels = fields.get("labels") or []
    layer = fields.get("mixup_layer")
    mixing = (
        f"layer {layer}{f' of {layers}' if layers else ''}, λ0 = {fields.get('lambda0')}"
        if method == "xmixup"
        else "none (baseline)"
    )
    trust = "translation_trust" in (fields.get("outputs") or [])
    rows = [
        ("task", f"`{task}` — {TASK_TEXT.get(task, task)}"),
        ("labels", ", ".join(f"`{label}`" for label in labels) if labels else "— (spans)"),
        ("backbone", f"`{fields.get('backbone')}`"),
        ("method", f"`{method}` — {METHOD_TEXT.get(method, method)}"),
        ("mixup layer", mixing),
        ("translation-trust head", "yes" if trust else "no"),
        ("max length", f"{fields.get('max_length')} tokens"),
        ("precision", f"{fields.get('precision')} (ONNX opset {fields.get('opset')})"),
    ]
    vocab = fields.get("vocabulary")
    if vocab:
        kept = (
            f"{vocab['size']} of {vocab['source_size']} pieces"
            + (f" (scripts {', '.join(vocab['scripts'])})" if vocab.get("scripts") else "")
            if vocab["size"] < vocab["source_size"]
            else f"all {vocab['size']} pieces"
        )
        rows.append(("vocabulary", f"{kept}; {vocab['embedding_precision']} embedding rows"))
    if fields.get("tag_scheme"):
        rows.append(("tag scheme", f"{fields['tag_scheme']} (entities decoded)"))
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _training_data(
    metrics: Mapping[str, Any], args: Mapping[str, Any], licence: str | None
) -> tuple[list[str], set[str]]:
    options = args.get("options") or {}
    train = metrics.get("train") or {}
    langs: dict[str, int] = train.get("languages") or {}
    lines = [
        f"- training file: `{_short_path(options.get('train'))}`"
        + (f", {train['examples']} examples" if "examples" in train else "")
        + (f", {train['steps']} steps" if "steps" in train else ""),
        f"- evaluation file: `{_short_path(options.get('eval'))}`",
        "- languages seen in training: "
        + (
            ", ".join(f"`{lang}` ({n})" for lang, n in langs.items())
            if langs
            else "not recorded (the checkpoint's metrics.json has no train.languages)"
        ),
        "- data licence: "
        + (licence or "not recorded — state it with `xmixup export --data-license TEXT`"),
    ]
    return lines, set(langs)


def _evaluation(metrics: Mapping[str, Any], seen: set[str]) -> list[str]:
    ev = metrics.get("eval") or {}
    per_lang: dict[str, float] = ev.get("per_lang") or {}
    if not per_lang:
        return ["No evaluation recorded (train with `--eval FILE`, or run `xmixup evaluate`)."]
    metric = ev.get("metric", "score")
    counts = ev.get("n") or {}
    source = "with" if ev.get("source_used", True) else "without"
    lines = [
        f"`{metric}` (0–100) per language on the evaluation file, {source} the English source"
        f"{'' if seen else '; seen/unseen unknown (training languages not recorded)'}:",
        "",
        f"| language | {metric} | items | in training |",
        "|---|---|---|---|",
    ]
    for lang, value in per_lang.items():
        mark = ("seen" if lang in seen else "**unseen**") if seen else "?"
        lines.append(f"| `{lang}` | {_num(value)} | {counts.get(lang, '')} | {mark} |")
    lines.append(f"| average | {_num(ev.get('avg'))} | {sum(counts.values()) or ''} | |")
    if seen:
        unseen = [v for lang, v in per_lang.items() if lang not in seen]
        if unseen and len(unseen) < len(per_lang):
            lines.append(f"| unseen average | {_num(sum(unseen) / len(unseen))} | | |")
    return lines


def _signals(metrics: Mapping[str, Any], has_trust: bool) -> list[str]:
    ev = metrics.get("eval") or {}
    trajectory = (metrics.get("train") or {}).get("lambda_trajectory") or []
    last = trajectory[-1].get("lambda_mean") if trajectory else None
    lines = [
        f"- λ (`mixup_ratio`, how much the model leaned on the translation) on the evaluation "
        f"file: {_stats(ev.get('lambda') or metrics.get('lambda'))}. λ is how the model mixes, "
        "not a measure of the translation's quality: it barely moves between a clean and a "
        "badly degraded translation (measured on every task)"
        + ("; `translation_trust` is that measure." if has_trust else "."),
        f"- λ at the end of training: {last:.3f}"
        if isinstance(last, (int, float))
        else "- λ at the end of training: not recorded",
    ]
    if has_trust:
        lines.append(
            f"- `translation_trust` on the evaluation file: {_stats(ev.get('trust'))} "
            "(probability that `source` is a faithful translation of the target)"
        )
    return lines


def _fallback_training(options: Mapping[str, Any]) -> str:
    """What the run did to train the no-translation path, from its options."""
    self_mix, no_source = options.get("self_mix_rate") or 0, options.get("no_source_rate") or 0
    if self_mix:
        how = "in an added copy of " if options.get("self_mix_copies") else ""
        return (
            f" This model was trained for it: {how}{self_mix:g} of its training items mixed "
            "their own text instead of the translation (`--self-mix-rate`)."
        )
    unmixed = [
        f"`--{k.replace('_', '-')} {options[k]:g}`"
        for k in ("unmixed_weight", "unmixed_distill")
        if options.get(k)
    ]
    if unmixed:
        return (
            " This model was trained for it: every training item also ran its target stream "
            f"with the mixing off ({', '.join(unmixed)})."
        )
    if no_source:
        return (
            f" This model was trained for it: {no_source:g} of its training items got their "
            "own text as the translation (`--no-source-rate`)."
        )
    return ""


def _use(fields: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    method, task = fields["method"], fields["task"]
    pair = bool(fields.get("pair_input"))
    inputs = {
        "classify": "`target` and `target_pair`" if pair else "`target`",
        "tag": "`target` as a string or pre-split words",
        "qa": "`question` and `context`",
    }[task]
    source = {
        "classify": "`source` and `source_pair`" if pair else "`source`",
        "tag": "`source`",
        "qa": "`source_question` and `source_context`",
    }[task]
    if method == "xmixup":
        how = (
            "answers with the target stream alone, the mixing switched off"
            if fields.get("no_source_fallback") == "unmixed"
            else "falls back to reading the target as its own source"
        )
        fallback = (
            f"- Expects an English translation of the input in {source}. Without one it {how} "
            "(`source_used: false`): still an answer, usually a weaker one (measure it with "
            "`xmixup evaluate --no-source` on this bundle)." + _fallback_training(options)
        )
    elif method == "translate-test":
        fallback = (
            f"- Reads only the English translation in {source}; without one the target text is "
            "read in its place (`source_used: false`), outside what it was trained on."
        )
    else:
        fallback = f"- Reads {inputs} only; a translation in {source} is ignored."
    return [
        f"- Input: {inputs} in the user's language (API: docs/API.md; `xmixup predict` for "
        "files; `from xmixup import Predictor` in Python).",
        fallback,
        f"- Inputs longer than {fields.get('max_length')} tokens are truncated "
        "(`truncated: true`) or refused with truncation off.",
        *_trimmed(fields),
        "- Languages not seen in training rely on the backbone's multilingual pre-training; "
        "expect lower scores there (see the table above).",
        "- Scores are the model's probabilities, not calibrated confidences; review its output "
        "before acting on it where errors are costly.",
    ]


def render_model_card(
    fields: Mapping[str, Any],
    metrics: Mapping[str, Any],
    training_args: Mapping[str, Any],
    *,
    layers: int | None = None,
    licence: str | None = None,
) -> str:
    """The card's Markdown from the manifest fields and the checkpoint's records."""
    training, seen = _training_data(metrics, training_args, licence)
    has_trust = "translation_trust" in (fields.get("outputs") or [])
    parts = [
        f"# {fields['name']}",
        "",
        f"A {TASK_TEXT.get(fields['task'], fields['task'])} model exported by xmixup "
        f"{XMIXUP_VERSION}. Its files and their checksums are in `manifest.json` (this card "
        "is one of them).",
        "",
        *_summary(fields, layers),
        "",
        "## Training data",
        "",
        *training,
        "",
        "## Evaluation",
        "",
        *_evaluation(metrics, seen),
        "",
        "## λ and translation trust",
        "",
        *_signals(metrics, has_trust),
        "",
        "## Intended use and limits",
        "",
        *_use(fields, training_args.get("options") or {}),
        "",
    ]
    return "\n".join(parts)


def _trimmed(fields: Mapping[str, Any]) -> list[str]:
    vocab = fields.get("vocabulary") or {}
    if not vocab or vocab["size"] >= vocab["source_size"]:
        return []
    return [
        "- The vocabulary was trimmed at export to the pieces the listed scripts/corpus need: "
        "text in other scripts reads as `<unk>` pieces and scores much lower."
    ]


def write_model_card(
    bundle_dir: Path,
    fields: Mapping[str, Any],
    checkpoint: Path,
    *,
    layers: int | None = None,
    licence: str | None = None,
) -> Path:
    """Write ``README.md`` into ``bundle_dir`` (before its manifest); returns its path."""
    metrics = read_json_object(checkpoint / "metrics.json")
    args = read_json_object(checkpoint / "training_args.json")
    licence = licence or data_licence((args.get("options") or {}).get("train"))
    path = bundle_dir / MODEL_CARD_NAME
    text = render_model_card(fields, metrics, args, layers=layers, licence=licence)
    path.write_text(text, encoding="utf-8")
    return path
