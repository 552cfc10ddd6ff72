"""``xmixup predict``: score a file with a bundle, streaming, resumable, in worker processes.

The input is read in chunks of ``chunk_size`` records; each chunk is scored by
``xmixup.batch.records.score_chunk`` (in this process, or in one of ``workers`` processes that
each load the model once) and written in input order, a chunk at a time, then flushed. At
most two chunks per worker are in flight, so memory stays constant on a file of any size.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from xmixup.batch.files import count_records, read_records, record_id_at, resume_point
from xmixup.batch.records import BadLine, Scored, score_chunk
from xmixup.errors import UserError

MAX_BAD_SHOWN = 20
Chunk = list[tuple[int | None, Any]]


@dataclass
class PredictOptions:
    """What ``xmixup predict`` was asked (the CLI flags, one to one)."""

    model: Path
    input: Path
    output: Path
    workers: int = 1
    threads: int | None = None
    chunk_size: int = 256
    batch_size: int = 32
    top_k: int = 1
    truncate: bool = True
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False
    device: str = "cpu"
    progress: bool = True

    def predictor_kwargs(self) -> dict[str, Any]:
        threads = self.threads
        if threads is None and self.workers > 1:  # share the cores, do not oversubscribe
            threads = max(1, (os.cpu_count() or 1) // self.workers)
        return {
            "device": self.device,
            "threads": threads,
            "truncate": self.truncate,
            "batch_size": self.batch_size,
        }


@dataclass
class PredictSummary:
    """The run's figures (also written as ``<output>.summary.json``)."""

    input: str
    output: str
    model: str
    workers: int
    resumed_after_line: int = 0
    scored: int = 0
    skipped: int = 0
    seconds: float = 0.0
    items_per_s: float = 0.0
    bad_lines: list[str] = field(default_factory=list)


# ---- worker processes ----------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(model: str, kwargs: dict[str, Any], top_k: int) -> None:
    # Ctrl-C is the parent's to handle: it stops submitting and keeps what was written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from xmixup.predictor import Predictor

    _worker["predictor"] = Predictor(model, **kwargs)
    _worker["top_k"] = top_k


def _score_in_worker(chunk: Chunk) -> Scored:
    return score_chunk(_worker["predictor"], chunk, top_k=_worker["top_k"])


def _chunks(records: Iterable[tuple[int, Any]], size: int) -> Iterator[Chunk]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield list[tuple[int | None, Any]](chunk)


def _scored_in_order(
    opts: PredictOptions, chunks: Iterator[Chunk]
) -> Generator[tuple[Chunk, Scored], None, None]:
    """Each chunk with its result, in input order: in-process, or from the worker pool."""
    if opts.workers <= 1:
        from xmixup.predictor import Predictor

        predictor = Predictor(opts.model, **opts.predictor_kwargs())
        for chunk in chunks:
            yield chunk, score_chunk(predictor, chunk, top_k=opts.top_k)
        return
    import multiprocessing

    # spawn: a fresh interpreter per worker, never a fork of a process holding threads
    pool = ProcessPoolExecutor(
        opts.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(str(opts.model), opts.predictor_kwargs(), opts.top_k),
    )
    pending: deque[tuple[Chunk, Future[Scored]]] = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(_score_in_worker, chunk)))
            if len(pending) >= 2 * opts.workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# ---- the command ---------------------------------------------------------------------------
def _start(opts: PredictOptions) -> int:
    """The line to go on after: 0 for a fresh output, the last written line when resuming."""
    if not opts.input.is_file():
        raise UserError(f"--input {opts.input}: no such file", "pass a JSONL or Parquet file")
    if opts.output.exists() and opts.output.stat().st_size > 0 and not opts.resume:
        if not opts.overwrite:
            raise UserError(
                f"--output {opts.output} exists",
                "pass --resume to continue it after an interrupt, or --overwrite to start over",
            )
        opts.output.unlink()
    if not opts.resume:
        return 0
    line, last_id, _ = resume_point(opts.output)
    if line and record_id_at(opts.input, line) != last_id:
        raise UserError(
            f"--output {opts.output} does not continue --input {opts.input}: its last line is "
            f"line {line} with id {last_id!r}, the input's line {line} is not",
            "resume with the input the output was written from, or pass --overwrite",
        )
    return line


def _write(
    out: IO[str], chunk: Chunk, scored: Scored, opts: PredictOptions, summary: PredictSummary
) -> int:
    """Write a chunk's rows (up to its first bad line unless skipping); the lines consumed."""
    rows = scored.rows
    if scored.bad and not opts.skip_bad:
        first = scored.bad[0]
        rows = [r for r in rows if first.line is None or r.get("line", 0) < first.line]
    out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out.flush()
    summary.scored += len(rows)
    if scored.bad and not opts.skip_bad:
        raise UserError(
            scored.bad[0].describe(str(opts.input)),
            "fix the line and rerun with --resume (results so far are kept), or pass --skip-bad",
        )
    for bad in scored.bad:
        _report(bad, opts, summary)
    last = chunk[-1][0]
    return int(last) if last is not None else 0


def _report(bad: BadLine, opts: PredictOptions, summary: PredictSummary) -> None:
    summary.skipped += 1
    if len(summary.bad_lines) < MAX_BAD_SHOWN:
        text = bad.describe(str(opts.input))
        summary.bad_lines.append(text)
        from tqdm import tqdm

        tqdm.write(f"xmixup predict: skipped {text}", file=sys.stderr)  # not through the bar


def score_file(
    opts: PredictOptions, progress: Callable[[int], None] | None = None
) -> PredictSummary:
    """Run ``xmixup predict``; ``progress(lines)`` is called after each chunk is written."""
    from xmixup.core.bundle import read_manifest

    manifest = read_manifest(opts.model)
    after = _start(opts)
    summary = PredictSummary(
        str(opts.input), str(opts.output), manifest.name, opts.workers, resumed_after_line=after
    )
    total = count_records(opts.input) if opts.progress else None
    bar = _bar(total, after, opts.progress)
    t0 = time.perf_counter()
    position = after
    try:
        chunks = _chunks(read_records(opts.input, after), opts.chunk_size)
        with (
            open(opts.output, "a", encoding="utf-8") as out,
            closing(_scored_in_order(opts, chunks)) as results,
        ):
            for chunk, scored in results:
                line = _write(out, chunk, scored, opts, summary)
                if bar is not None:
                    bar.update(line - position)
                position = line
                if progress is not None:
                    progress(line)
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.items_per_s = round(summary.scored / max(summary.seconds, 1e-9), 2)
    _write_summary(opts.output, summary)
    return summary


def _bar(total: int | None, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="item", desc="xmixup predict", smoothing=0.1)


def _write_summary(output: Path, summary: PredictSummary) -> None:
    path = output.with_name(output.name + ".summary.json")
    path.write_text(json.dumps(asdict(summary), indent=2, ensure_ascii=False) + "\n")


def describe(summary: PredictSummary) -> Sequence[str]:
    """The human-readable lines the command prints at the end."""
    return [
        f"scored {summary.scored} items with {summary.model} into {summary.output} "
        f"in {summary.seconds:.1f}s ({summary.items_per_s:.1f} items/s, "
        f"{summary.workers} worker{'s' if summary.workers > 1 else ''})",
        *(
            [f"resumed after line {summary.resumed_after_line}"]
            if summary.resumed_after_line
            else []
        ),
        *([f"skipped {summary.skipped} bad lines"] if summary.skipped else []),
    ]
