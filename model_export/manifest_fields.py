"""What an exported bundle's manifest says about its checkpoint and its export."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.modeling import XMixupModel

logger = logging.getLogger(__name__)


def manifest_fields(
    model: XMixupModel,
    checkpoint: Path,
    *,
    name: str,
    opset: int,
    precision: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    parity: dict[str, Any],
    export: dict[str, Any],
    vocabulary: dict[str, Any],
    no_source_fallback: str = "self",
) -> dict[str, Any]:
    """The fields `write_manifest` takes (it adds files, checksums, version and date)."""
    config = model.config
    fields: dict[str, Any] = {
        "name": name,
        "task": config.task,
        "labels": list(config.labels),
        "tag_scheme": config.tag_scheme,
        "pair_input": bool(config.pair_input),
        "method": config.method,
        "backbone": Path(config.backbone).name if config.backbone else "unknown",
        "mixup_layer": int(config.mixup_layer or 0),
        "lambda0": float(config.lambda0),
        "max_length": int(config.max_length or 0),
        "opset": opset,
        "precision": precision,
        "inputs": list(inputs),
        "outputs": list(outputs),
        "parity": parity,
        "metrics": checkpoint_metrics(checkpoint),
        "export": export,
        "vocabulary": vocabulary,
        "no_source_fallback": no_source_fallback,
    }
    if config.task == "tag":
        fields["word_token"] = config.word_token
    if config.task == "qa":
        fields.update(
            doc_stride=config.doc_stride,
            max_query_length=config.max_query_length,
            max_answer_length=config.max_answer_length,
        )
    return fields


def source_stream_work(model: XMixupModel) -> dict[str, Any]:
    """How much of the source stream the graph runs (tag/QA stop at the mixup layer)."""
    config = model.config
    layers = model.num_layers
    if config.method != "xmixup":
        return {"source_layers": 0, "target_layers": layers}
    full = config.task == "classify"
    # Counted in sublayers (attention, FFN): the source runs the mixup layer's attention only.
    source_sublayers = 2 * layers if full else 2 * (config.mixup_layer or 1) - 1
    total_full = 4 * layers
    used = 2 * layers + source_sublayers
    return {
        "source_layers_full": full,
        "source_sublayers": source_sublayers,
        "encoder_sublayers_run": used,
        "encoder_sublayers_if_full_source": total_full,
        "encoder_work_saved": round(1 - used / total_full, 4),
    }


def resolve_no_source_fallback(choice: str, model: XMixupModel, checkpoint: Path) -> str:
    """The manifest's ``no_source_fallback`` for ``--no-source-fallback`` ``choice``.

    "auto" is "unmixed" for an X-Mixup classifier trained with no-source items
    (``--no-source-rate``) or with the mixing-off path beside the mix (``--unmixed-weight`` or
    ``--unmixed-distill``, which train exactly that answer) and "self" otherwise: the choice the selection data made
    (docs/RESULTS.md, "No translation: training for it"): with no-source training the target
    stream with the mixing off beats the target read against itself (SIB-200 dev 72.7 vs
    71.7), without it the reverse (70.0 vs 70.4).
    """
    from xmixup.errors import UserError

    config = model.config
    can_unmix = config.task == "classify" and config.method == "xmixup"
    if choice == "unmixed" and not can_unmix:
        raise UserError(
            f"--no-source-fallback unmixed on a {config.method} {config.task} model",
            "only X-Mixup classifiers have a mixing to switch off; use self (or auto)",
        )
    if choice != "auto":
        return choice
    options = read_json_object(checkpoint / "training_args.json").get("options") or {}
    trained_unmixed = any(
        (options.get(k) or 0) > 0 for k in ("no_source_rate", "unmixed_weight", "unmixed_distill")
    )
    return "unmixed" if can_unmix and trained_unmixed else "self"


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON object file (training_args.json, metrics.json); {} when absent,
    unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def checkpoint_metrics(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's metrics.json (manifest.metrics), empty when absent or unreadable."""
    path = checkpoint / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        logger.warning("%s is not valid JSON; manifest.metrics left empty", path)
        return {}
    return data if isinstance(data, dict) else {"value": data}
