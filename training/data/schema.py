"""JSONL record schemas per task and the validating reader.

The JSONL files are the contract between ``xmixup data`` (which writes them), training and
evaluation (which read them). Every line is validated before any training starts, and every
bad line is reported as ``file:line: field 'x': what is wrong`` so the user can fix the file
rather than guess. See ``training/data/README.md`` for the format.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xmixup.core.vocab import TASKS
from xmixup.errors import UserError

log = logging.getLogger(__name__)

Task = Literal["classify", "tag", "qa"]
# Long names are accepted so that config files written as "classification" still work.
_TASK_ALIASES = {
    "classify": "classify",
    "classification": "classify",
    "tag": "tag",
    "tagging": "tag",
    "qa": "qa",
}
MAX_ERRORS_SHOWN = 20

NonEmptyStr = Field(min_length=1)


class _Record(BaseModel):
    # strict: a label written as 1 instead of "1" or tokens given as a string are user errors,
    # not something to coerce silently. extra="forbid": a misspelt optional field
    # ("sorce_bt") would otherwise be ignored without a word.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=False)

    id: str = NonEmptyStr
    lang: str = NonEmptyStr
    # The parallel group (row index, sentence id, article title): an item and its translations
    # share it, so splits and leakage checks work on it. Optional for hand-written files.
    group: str | None = None
    # Free-form provenance; never read by training.
    meta: dict[str, Any] | None = None


class ClassificationRecord(_Record):
    target: str = NonEmptyStr
    target_pair: str | None = None
    source: str = NonEmptyStr
    source_pair: str | None = None
    source_bt: str | None = None
    source_bt_pair: str | None = None
    label: str = NonEmptyStr

    @model_validator(mode="after")
    def _pairs_consistent(self) -> ClassificationRecord:
        # A pair task must be a pair task on every stream, or the two encoders see different
        # input shapes (one sentence vs two) for the same item.
        paired = self.target_pair is not None
        if (self.source_pair is not None) != paired:
            missing = "source_pair" if paired else "target_pair"
            raise _field_error(missing, "must be given when the other side has a pair text")
        if self.source_bt is not None and (self.source_bt_pair is not None) != paired:
            raise _field_error(
                "source_bt_pair", "must be given exactly when target_pair is (pair task)"
            )
        if self.source_bt is None and self.source_bt_pair is not None:
            raise _field_error("source_bt", "missing while source_bt_pair is given")
        for name in ("target_pair", "source_pair", "source_bt", "source_bt_pair"):
            if getattr(self, name) == "":
                raise _field_error(name, "is empty")
        return self


class TaggingRecord(_Record):
    target_tokens: list[str] = Field(min_length=1)
    source_tokens: list[str] = Field(min_length=1)
    source_bt_tokens: list[str] | None = None
    # Tags of source_bt_tokens when the back-translation is noise over the source (the noise
    # model keeps tags aligned); a real MT back-translation has none.
    source_bt_tags: list[str] | None = None
    target_tags: list[str] | None = None
    source_tags: list[str]
    # Pseudo-labels: per target token the label distribution (order = the label list).
    target_tag_probs: list[list[float]] | None = None

    @model_validator(mode="after")
    def _aligned(self) -> TaggingRecord:
        _check_tokens("target_tokens", self.target_tokens)
        _check_tokens("source_tokens", self.source_tokens)
        if len(self.source_tags) != len(self.source_tokens):
            raise _field_error(
                "source_tags",
                f"has {len(self.source_tags)} tags for {len(self.source_tokens)} source_tokens",
            )
        if self.target_tags is not None and len(self.target_tags) != len(self.target_tokens):
            raise _field_error(
                "target_tags",
                f"has {len(self.target_tags)} tags for {len(self.target_tokens)} target_tokens",
            )
        if self.source_bt_tokens is not None:
            _check_tokens("source_bt_tokens", self.source_bt_tokens)
            if not self.source_bt_tokens:
                raise _field_error("source_bt_tokens", "is empty")
        if self.source_bt_tags is not None and (
            self.source_bt_tokens is None or len(self.source_bt_tags) != len(self.source_bt_tokens)
        ):
            raise _field_error("source_bt_tags", "must have one tag per source_bt_tokens token")
        if self.target_tag_probs is not None:
            if len(self.target_tag_probs) != len(self.target_tokens):
                raise _field_error(
                    "target_tag_probs",
                    f"has {len(self.target_tag_probs)} rows for "
                    f"{len(self.target_tokens)} target_tokens",
                )
            width = len(self.target_tag_probs[0]) if self.target_tag_probs else 0
            for i, row in enumerate(self.target_tag_probs):
                if len(row) != width or width == 0:
                    raise _field_error(f"target_tag_probs[{i}]", f"has {len(row)} values")
                if any(not (0.0 <= v <= 1.0) for v in row) or not math.isclose(
                    sum(row), 1.0, abs_tol=1e-3
                ):
                    raise _field_error(
                        f"target_tag_probs[{i}]", "is not a probability distribution"
                    )
        return self


class Answer(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    text: str = NonEmptyStr
    answer_start: int = Field(ge=0)


class QARecord(_Record):
    question: str = NonEmptyStr
    context: str = NonEmptyStr
    answers: list[Answer] = Field(min_length=1)
    source_question: str = NonEmptyStr
    source_context: str = NonEmptyStr
    # May be empty: a translated source need not contain a findable answer span; training then
    # skips the source-side task loss for that item.
    source_answers: list[Answer]
    source_bt_question: str | None = None
    source_bt_context: str | None = None
    # Answers re-located in source_bt_context when it is noise over the source context.
    source_bt_answers: list[Answer] | None = None

    @model_validator(mode="after")
    def _spans(self) -> QARecord:
        _check_spans("answers", self.answers, self.context)
        _check_spans("source_answers", self.source_answers, self.source_context)
        if (self.source_bt_question is None) != (self.source_bt_context is None):
            raise _field_error(
                "source_bt_context" if self.source_bt_context is None else "source_bt_question",
                "source_bt_question and source_bt_context come together",
            )
        if self.source_bt_answers is not None:
            if self.source_bt_context is None:
                raise _field_error("source_bt_answers", "given without source_bt_context")
            _check_spans("source_bt_answers", self.source_bt_answers, self.source_bt_context)
        return self


RECORD_TYPES: dict[str, type[_Record]] = {
    "classify": ClassificationRecord,
    "tag": TaggingRecord,
    "qa": QARecord,
}


class _FieldError(ValueError):
    """A validation failure that knows its field (pydantic's model validators do not)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def _field_error(name: str, message: str) -> _FieldError:
    return _FieldError(name, message)


def _check_tokens(name: str, tokens: Sequence[str]) -> None:
    for i, tok in enumerate(tokens):
        # An empty or all-space word gives no sub-tokens, so its tag would have no position.
        if not tok.strip():
            raise _field_error(f"{name}[{i}]", "is an empty or whitespace-only token")


def _check_spans(name: str, answers: Sequence[Answer], context: str) -> None:
    for i, ans in enumerate(answers):
        found = context[ans.answer_start : ans.answer_start + len(ans.text)]
        if found != ans.text:
            raise _field_error(
                f"{name}[{i}].answer_start",
                f"answer text {ans.text[:40]!r} is not at offset {ans.answer_start} of the "
                f"context (found {found[:40]!r})",
            )


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
        if isinstance(ctx_error, _FieldError):
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
) -> tuple[_Record | None, list[tuple[str, str]]]:
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


def _unknown_labels(record: _Record, labels: set[str]) -> list[tuple[str, str]]:
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


def records_to_dicts(records: Iterable[_Record]) -> list[dict[str, Any]]:
    """Plain dicts with every schema field present (None where absent).

    All keys on every row: ``datasets.Dataset.from_list`` takes its columns from the rows, and
    a column present only on some rows would be lost or mistyped.
    """
    return [r.model_dump(exclude={"meta"}) for r in records]


def write_jsonl(records: Iterable[dict[str, Any] | _Record], path: str | Path) -> int:
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


def collect_labels(records: Iterable[_Record | Mapping[str, Any]]) -> list[str]:
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
