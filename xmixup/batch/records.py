"""Records of the training data format → request items → result rows, a chunk at a time.

The one scoring step of ``xmixup predict`` (every worker process) and of the Ray job (every
actor): a chunk of raw records (JSONL lines or Parquet rows) becomes the output rows
``{"id", "lang"?, "line"?, **result}``, where ``result`` is the JSON object the HTTP service
answers for that item; records that cannot be scored are returned as ``BadLine``s instead.
Only the fields a model reads are taken from a record (labels and the rest are ignored), so
a training or evaluation file scores as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xmixup.core.request_errors import RequestError, item_index
from xmixup.core.schemas import ClassifyItem, QAItem, TagItem
from xmixup.predictor import Predictor, parse_items

# Per task: request item field ← the record fields it may come from, first found wins (the
# training format's names first; the HTTP item's names are accepted too).
ITEM_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "classify": {
        "target": ("target",),
        "target_pair": ("target_pair",),
        "source": ("source",),
        "source_pair": ("source_pair",),
    },
    "tag": {"target": ("target_tokens", "target"), "source": ("source_tokens", "source")},
    "qa": {
        "question": ("question",),
        "context": ("context",),
        "source_question": ("source_question",),
        "source_context": ("source_context",),
    },
}
ITEM_TYPES: dict[str, type[ClassifyItem] | type[TagItem] | type[QAItem]] = {
    "classify": ClassifyItem,
    "tag": TagItem,
    "qa": QAItem,
}


@dataclass(frozen=True)
class BadLine:
    """A record that was not scored: its line (row) number when known, its id, and why."""

    line: int | None
    id: Any
    message: str

    def describe(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line is not None else f"{path}: id {self.id!r}"
        return f"{where}: {self.message}"


@dataclass
class Scored:
    """A chunk's output rows (input order) and its records that could not be scored."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


class RecordError(Exception):
    def __init__(self, record_id: Any, message: str) -> None:
        super().__init__(message)
        self.record_id = record_id
        self.message = message


def parse_record(raw: str | Mapping[str, Any]) -> dict[str, Any]:
    """A JSONL line (or a Parquet row) as a record with an ``id``; ``RecordError`` otherwise."""
    if isinstance(raw, str):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RecordError(None, f"not valid JSON ({exc})") from None
    else:
        record = dict(raw)
    if not isinstance(record, dict):
        raise RecordError(None, "not a JSON object")
    record_id = record.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)) or record_id == "":
        raise RecordError(record_id, "field 'id': required, a non-empty string or an integer")
    return record


def item_of(task: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The request item a record asks for (absent and null fields left out)."""
    item = {}
    for name, sources in ITEM_FIELDS[task].items():
        for source in sources:
            if record.get(source) is not None:
                item[name] = record[source]
                break
    return item


def _record_field(task: str, record: Mapping[str, Any], loc: str) -> str:
    """The record's own name for an item field path (``inputs.0.target`` → ``target_tokens``)."""
    parts = loc.split(".")
    name = parts[2] if len(parts) > 2 and parts[0] == "inputs" else loc
    sources = ITEM_FIELDS[task].get(name, (name,))
    used = next((s for s in sources if record.get(s) is not None), sources[0])
    return ".".join([used, *parts[3:]])


def _message(task: str, record: Mapping[str, Any], error: RequestError) -> str:
    errors = error.errors or []
    if not errors:
        return error.detail
    return "; ".join(f"field '{_record_field(task, record, e.loc)}': {e.msg}" for e in errors)


def score_chunk(
    predictor: Predictor,
    chunk: Sequence[tuple[int | None, str | Mapping[str, Any]]],
    *,
    top_k: int = 1,
) -> Scored:
    """Score ``(line, raw record)`` pairs with ``predictor``; see the module docstring."""
    task = predictor.task
    scored = Scored()
    kept: list[tuple[int | None, dict[str, Any], Any]] = []
    for line, raw in chunk:
        try:
            record = parse_record(raw)
            item = item_of(task, record)
            [parsed] = parse_items(ITEM_TYPES[task], [item])
        except RecordError as exc:
            scored.bad.append(BadLine(line, exc.record_id, exc.message))
            continue
        except RequestError as exc:
            scored.bad.append(BadLine(line, record.get("id"), _message(task, record, exc)))
            continue
        kept.append((line, record, parsed))
    # An item the featuriser refuses (too long with truncation off, no words) fails the call,
    # naming its index: it is set aside and the others are scored again. Such items are rare.
    while True:
        try:
            results = predictor.predict([parsed for _, _, parsed in kept], top_k=top_k)
            break
        except RequestError as exc:
            index = item_index(exc)
            if index is None:
                raise
            line, record, _ = kept.pop(index)
            scored.bad.append(BadLine(line, record["id"], _message(task, record, exc)))
    for (line, record, _), result in zip(kept, results, strict=True):
        row: dict[str, Any] = {"id": record["id"]}
        if isinstance(record.get("lang"), str):
            row["lang"] = record["lang"]
        if line is not None:
            row["line"] = line
        row.update(result.model_dump(mode="json"))
        scored.rows.append(row)
    scored.bad.sort(key=lambda b: b.line if b.line is not None else -1)
    return scored
