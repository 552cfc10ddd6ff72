"""The validating JSONL reader (and writer) of the task records.

The JSONL files are the contract between ``xmixup data`` (which writes them), training and
evaluation (which read them). Every line is validated before any training starts, and every
bad line is reported as ``file:line: field 'x': what is wrong`` so the user can fix the file
rather than guess. The record schemas are in ``training/data/records.py``; the format is
described in ``training/data/README.md``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from training.data.records import (
    RECORD_TYPES,
    BaseRecord,
    ClassificationRecord,
    FieldError,
    TaggingRecord,
)
from xmixup.core.vocab import TASKS
from xmixup.errors import UserError

log = logging.getLogger(__name__)

# Long names are accepted so that config files written as "classification" still work.
_TASK_ALIASES = {
    "classify": "classify",
    "classification": "classify",
    "tag": "tag",
    "tagging": "tag",
    "qa": "qa",
}
MAX_ERRORS_SHOWN = 20


def normalize_task(task: str) -> str:
    """Map a task name (``classify``/``classification``, ``tag``/``tagging``, ``qa``)."""
    try:
        return _TASK_ALIASES[task]
    except KeyError:
        raise UserError(f"unknown task {task!r}", f"use one of {', '.join(TASKS)}") from None


@dataclass
class ReadReport:
    """What reading one JSONL file found: kept records, skipped lines and why."""

    path: str
    task: str
    n_lines: int = 0
    n_records: int = 0
    n_skipped: int = 0
    errors: list[str] = field(default_factory=list)
    per_lang: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        langs = ", ".join(f"{k}={v}" for k, v in sorted(self.per_lang.items()))
        return (
            f"{self.path}: {self.n_records} {self.task} records ({langs}); "
            f"{self.n_skipped} bad lines skipped"
        )


def _pydantic_messages(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldError):
            out.append((ctx_error.field_name, ctx_error.message))
            continue
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "is missing"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known field (misspelt?)"
        else:
            got = err.get("input")
            if not isinstance(got, (dict, list)):
                msg = f"{msg} (got {type(got).__name__} {str(got)[:40]!r})"
        out.append((loc or "<record>", msg))
    return out


def validate_record(
    obj: Any, task: str, labels: Sequence[str] | None = None
) -> tuple[BaseRecord | None, list[tuple[str, str]]]:
    """Validate one decoded JSON object; returns (record or None, [(field, problem), ...])."""
    task = normalize_task(task)
    if not isinstance(obj, dict):
        return None, [("<record>", f"a line must be a JSON object, got {type(obj).__name__}")]
    try:
        record = RECORD_TYPES[task].model_validate(obj)
    except ValidationError as exc:
        other = _looks_like_other_task(obj, task)
        if other is not None:
            # One clear line instead of a dozen "missing"/"unknown field" ones.
            return None, [
                ("<record>", f"looks like a {other!r} record, not {task!r} (wrong --task?)")
            ]
        return None, _pydantic_messages(exc)
    if labels is not None:
        problems = _unknown_labels(record, set(labels))
        if problems:
            return None, problems
    return record, []


_TASK_KEYS = {"classify": "target", "tag": "target_tokens", "qa": "question"}


def _looks_like_other_task(obj: dict[str, Any], task: str) -> str | None:
    if _TASK_KEYS[task] in obj:
        return None
    for other, key in _TASK_KEYS.items():
        if other != task and key in obj:
            return other
    return None


def _unknown_labels(record: BaseRecord, labels: set[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if isinstance(record, ClassificationRecord):
        if record.label not in labels:
            problems.append(("label", f"unknown label {record.label!r}"))
    elif isinstance(record, TaggingRecord):
        for name in ("target_tags", "source_tags", "source_bt_tags"):
            for i, tag in enumerate(getattr(record, name) or []):
                if tag not in labels:
                    problems.append((f"{name}[{i}]", f"unknown tag {tag!r}"))
                    break  # one per field is enough to locate the problem
        if record.target_tag_probs and len(record.target_tag_probs[0]) != len(labels):
            problems.append(
                (
                    "target_tag_probs",
                    f"rows have {len(record.target_tag_probs[0])} values for {len(labels)} labels",
                )
            )
    return problems


def read_jsonl(
    path: str | Path,
    task: str,
    *,
    skip_bad: bool = False,
    labels: Sequence[str] | None = None,
) -> tuple[list[Any], ReadReport]:
    """Read and validate a JSONL file of ``task`` records.

    Default: every line is checked and, if any is bad, ONE UserError lists them all (the first
    ``MAX_ERRORS_SHOWN`` and a count) so the user fixes the file in one pass and no training
    starts on half-valid data. ``skip_bad=True`` drops bad lines, counts them in the report
    and logs a warning. ``labels`` (when known, e.g. from a checkpoint) also rejects unknown
    labels/tags. Duplicate ids are errors: splits, noise seeds and metrics key on the id.
    """
    task = normalize_task(task)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist", "check the --train/--eval path")
    report = ReadReport(path=str(path), task=task)
    records: list[Any] = []
    seen_ids: dict[str, int] = {}
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            report.n_lines = lineno
            if not line.strip():
                continue  # blank lines (e.g. a trailing newline) are not records
            problems: list[tuple[str, str]]
            record = None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems = [("<json>", f"not valid JSON: {exc.msg} at column {exc.colno}")]
            else:
                record, problems = validate_record(obj, task, labels)
            if record is not None and record.id in seen_ids:
                problems = [
                    ("id", f"duplicate id {record.id!r} (first on line {seen_ids[record.id]})")
                ]
                record = None
            if record is None:
                report.n_skipped += 1
                for fname, msg in problems:
                    report.errors.append(f"{path}:{lineno}: field '{fname}': {msg}")
                continue
            seen_ids[record.id] = lineno
            records.append(record)
            report.per_lang[record.lang] += 1
    report.n_records = len(records)
    if report.errors and not skip_bad:
        shown = report.errors[:MAX_ERRORS_SHOWN]
        more = len(report.errors) - len(shown)
        body = "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")
        raise UserError(
            f"{report.n_skipped} bad {task} record(s) in {path}:\n  {body}",
            "fix the lines above (format: training/data/README.md) or pass --skip-bad "
            "to skip and count them",
        )
    if report.n_skipped:
        log.warning(
            "%s: skipped %d bad line(s); first: %s", path, report.n_skipped, report.errors[0]
        )
    if not records:
        raise UserError(f"{path} has no {task} records", "is it the right file / --task?")
    return records, report


def records_to_dicts(records: Iterable[BaseRecord]) -> list[dict[str, Any]]:
    """Plain dicts with every schema field present (None where absent).

    All keys on every row: ``datasets.Dataset.from_list`` takes its columns from the rows, and
    a column present only on some rows would be lost or mistyped.
    """
    return [r.model_dump(exclude={"meta"}) for r in records]


def write_jsonl(records: Iterable[dict[str, Any] | BaseRecord], path: str | Path) -> int:
    """Write records (dicts or models) one per line, dropping None fields; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            obj = rec.model_dump(exclude_none=True) if isinstance(rec, BaseModel) else rec
            obj = {k: v for k, v in obj.items() if v is not None}
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n


def collect_labels(records: Iterable[BaseRecord | Mapping[str, Any]]) -> list[str]:
    """The sorted label set of classification labels or tags (both sides) of the records.

    Accepts validated records or their plain-dict form (what the trainer and CKA hold).
    """
    labels: set[str] = set()
    for r in records:
        d: Mapping[str, Any] = r if isinstance(r, Mapping) else vars(r)
        if d.get("label") is not None:
            labels.add(d["label"])
        elif d.get("source_tags") is not None:
            labels.update(d["source_tags"])
            labels.update(d.get("target_tags") or [])
    return sorted(labels)


def count_langs(records: Iterable[BaseRecord | Mapping[str, Any]]) -> dict[str, int]:
    """Records per language, by language code (metrics.json ``train.languages``)."""
    counts: Counter[str] = Counter()
    for r in records:
        counts[(r if isinstance(r, Mapping) else vars(r))["lang"]] += 1
    return dict(sorted(counts.items()))


def load_dataset(
    path: str | Path,
    task: str,
    *,
    skip_bad: bool = False,
    labels: Sequence[str] | None = None,
) -> Any:
    """Validated records of a JSONL file as a Hugging Face ``datasets.Dataset``.

    Validation happens first (same errors as :func:`read_jsonl`); the Dataset then gives
    training ``map``/``shuffle``/``with_format`` over Arrow memory instead of Python dicts.
    """
    import datasets  # heavy import kept out of module import (the CLI must start fast)

    records, report = read_jsonl(path, task, skip_bad=skip_bad, labels=labels)
    log.info(report.summary())
    return datasets.Dataset.from_list(records_to_dicts(records))
