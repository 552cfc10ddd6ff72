"""Input and output files of ``xmixup predict``: streaming readers and the resume point.

Inputs are read a record at a time, with their 1-based line number (JSONL; blank lines are
skipped but counted) or row number (Parquet, through pyarrow), so memory does not grow with
the file. The output is JSONL with each input's ``line``: after an interrupt, the last
complete output line says where to go on (a partial last line, from a kill mid-write, is cut
off first), so what was written is never scored again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xmixup.errors import UserError

_CHUNK = 1 << 20
_TAIL = 1 << 16


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _pyarrow_parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise UserError(
            "reading Parquet needs pyarrow",
            "pip install 'xmixup[predict]' (or pyarrow), or convert the file to JSONL",
        ) from None
    return pq


def count_records(path: Path) -> int:
    """Lines (JSONL, counted in 1 MiB reads) or rows (Parquet metadata): the progress total."""
    if is_parquet(path):
        return int(_pyarrow_parquet().ParquetFile(path).metadata.num_rows)
    n = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def read_records(path: Path, after: int = 0) -> Iterator[tuple[int, str | dict[str, Any]]]:
    """``(number, raw record)`` for every record numbered above ``after``: JSONL lines as
    text (blank ones skipped), Parquet rows as dicts."""
    if not path.is_file():
        raise UserError(f"--input {path}: no such file", "pass a JSONL or Parquet file")
    if is_parquet(path):
        number = 0
        for batch in _pyarrow_parquet().ParquetFile(path).iter_batches(batch_size=1024):
            if number + batch.num_rows <= after:
                number += batch.num_rows
                continue
            for row in batch.to_pylist():
                number += 1
                if number > after:
                    yield number, row
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, text in enumerate(fh, start=1):
            if number > after and text.strip():
                yield number, text


def record_id_at(path: Path, number: int) -> Any:
    """The ``id`` of record ``number`` (None when it has none): the resume check."""
    for n, raw in read_records(path, number - 1):
        if n != number:
            return None
        try:
            record = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            return None
        return record.get("id") if isinstance(record, dict) else None
    return None


def resume_point(output: Path) -> tuple[int, Any, int]:
    """(line number, id, complete lines) of the output's last complete line; (0, None, 0) for
    an empty or absent file. A partial last line is truncated away first."""
    if not output.is_file():
        return 0, None, 0
    with open(output, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        end, tail = size, b""
        # Back from the end until the last complete line is whole (two newlines, or the start).
        while end > 0 and tail.count(b"\n") < 2:
            start = max(0, end - _TAIL)
            fh.seek(start)
            tail = fh.read(end - start) + tail
            end = start
        last_newline = tail.rfind(b"\n")
        keep = end + last_newline + 1 if last_newline >= 0 else 0
        if keep < size:
            fh.truncate(keep)
    if keep == 0:
        return 0, None, 0
    body = tail[:last_newline]
    last = body[body.rfind(b"\n") + 1 :]
    try:
        row = json.loads(last)
        line = int(row["line"])
    except (ValueError, KeyError, TypeError):
        raise UserError(
            f"--output {output}: its last line is not an `xmixup predict` result line",
            "resume only an output this command wrote, or pass --overwrite to start over",
        ) from None
    return line, row.get("id"), count_lines(output)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            n += chunk.count(b"\n")
    return n
