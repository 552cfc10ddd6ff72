"""`xmixup predict` on the toy bundle (no torch): resumable, ordered, bad lines, Parquet.

The toy graph's probabilities depend on each row's token counts, so a line written for the
wrong input, twice, or out of order changes the output file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.core.toy_bundle import make_toy_bundle
from xmixup.batch.files import resume_point
from xmixup.batch.run import PredictOptions, score_file
from xmixup.errors import UserError

REPO = Path(__file__).resolve().parents[2]
WORDS = ["hello", "world", "guten", "tag", "welt"]


def _record(i: int) -> dict[str, Any]:
    target = " ".join(WORDS[(i + k) % 5] for k in range(1 + i % 7))
    rec = {"id": f"r{i}", "lang": "de", "target": target, "label": "a"}
    if i % 3:
        rec["source"] = " ".join(WORDS[: 1 + i % 4])
    return rec


def _write_input(path: Path, n: int, bad: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(_record(i)) for i in range(n)]
    for index, text in (bad or {}).items():
        lines[index] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    return make_toy_bundle(tmp_path_factory.mktemp("predict") / "toy")


def _opts(bundle: Path, inp: Path, out: Path, **kw: Any) -> PredictOptions:
    return PredictOptions(model=bundle, input=inp, output=out, progress=False, **kw)


def test_one_line_per_record_with_its_id_in_input_order(bundle: Path, tmp_path: Path) -> None:
    inp = _write_input(tmp_path / "in.jsonl", 50)
    summary = score_file(_opts(bundle, inp, tmp_path / "out.jsonl", chunk_size=7))
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(50)]
    assert [r["line"] for r in rows] == list(range(1, 51))
    assert all(r["source_used"] is (i % 3 != 0) for i, r in enumerate(rows))
    assert len({json.dumps(r["scores"]) for r in rows}) > 5  # the inputs differ, so do results
    assert summary.scored == 50 and summary.skipped == 0
    written = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert written["scored"] == 50 and written["items_per_s"] > 0


def test_interrupted_then_resumed_equals_an_uninterrupted_run(bundle: Path, tmp_path: Path) -> None:
    inp = _write_input(tmp_path / "in.jsonl", 120)
    score_file(_opts(bundle, inp, tmp_path / "full.jsonl", chunk_size=10))
    full = (tmp_path / "full.jsonl").read_bytes()

    out = tmp_path / "out.jsonl"
    chunks: list[int] = []

    def stop_after_three(line: int) -> None:
        chunks.append(line)
        if len(chunks) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_file(_opts(bundle, inp, out, chunk_size=10), progress=stop_after_three)
    assert out.read_bytes() == full[: len(out.read_bytes())] and len(out.read_bytes()) < len(full)
    # A kill mid-write leaves half a line: resuming cuts it off and goes on after line 30.
    with open(out, "ab") as fh:
        fh.write(full[len(out.read_bytes()) :][:25])
    resumed = score_file(_opts(bundle, inp, out, chunk_size=10, resume=True, workers=2))
    assert resumed.resumed_after_line == 30 and resumed.scored == 90
    assert out.read_bytes() == full
    # Resuming a finished output scores nothing.
    assert score_file(_opts(bundle, inp, out, resume=True)).scored == 0
    assert out.read_bytes() == full


def test_a_real_sigint_keeps_complete_lines_and_resume_finishes(
    bundle: Path, tmp_path: Path
) -> None:
    inp = _write_input(tmp_path / "in.jsonl", 12000)
    out = tmp_path / "out.jsonl"
    score_file(_opts(bundle, inp, tmp_path / "full.jsonl", chunk_size=16))
    cmd = [sys.executable, "-m", "xmixup", "predict", "--model", str(bundle)]
    cmd += ["--input", str(inp), "--output", str(out), "--chunk-size", "16", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    line, _, complete = resume_point(out)
    assert 0 < line < 12000 and complete == line
    subprocess.run([*cmd, "--resume"], env=env, check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == (tmp_path / "full.jsonl").read_bytes()


def test_multi_process_output_equals_single_process(bundle: Path, tmp_path: Path) -> None:
    inp = _write_input(tmp_path / "in.jsonl", 200)
    score_file(_opts(bundle, inp, tmp_path / "one.jsonl", chunk_size=9))
    score_file(_opts(bundle, inp, tmp_path / "two.jsonl", chunk_size=9, workers=2))
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()


def test_bad_lines_are_fatal_or_skipped_by_line_number(bundle: Path, tmp_path: Path) -> None:
    bad = {3: "{not json", 6: json.dumps({"id": "r6", "lang": "de"}), 8: "[1, 2]"}
    inp = _write_input(tmp_path / "in.jsonl", 12, bad)
    out = tmp_path / "out.jsonl"
    with pytest.raises(UserError) as info:
        score_file(_opts(bundle, inp, out, chunk_size=5))
    assert f"{inp}:4: not valid JSON" in str(info.value)
    assert [json.loads(x)["line"] for x in out.read_text().splitlines()] == [1, 2, 3]

    out.unlink()
    summary = score_file(_opts(bundle, inp, out, chunk_size=5, skip_bad=True))
    assert summary.skipped == 3 and summary.scored == 9
    assert summary.bad_lines == [
        f"{inp}:4: not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))",
        f"{inp}:7: field 'target': Field required",
        f"{inp}:9: not a JSON object",
    ]
    lines = [json.loads(x)["line"] for x in out.read_text().splitlines()]
    assert lines == [1, 2, 3, 5, 6, 8, 10, 11, 12]


def test_too_long_records_are_bad_lines_without_truncation(bundle: Path, tmp_path: Path) -> None:
    long = json.dumps({"id": "long", "target": "hello " * 100})  # toy max_length is 64
    inp = _write_input(tmp_path / "in.jsonl", 5, {2: long})
    out = tmp_path / "out.jsonl"
    summary = score_file(_opts(bundle, inp, out, skip_bad=True, truncate=False))
    assert summary.bad_lines == [
        f"{inp}:3: field 'target': is 100 tokens; the model takes at most 64. "
        'Send shorter text or set "truncate": true'
    ]
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["r0", "r1", "r3", "r4"]
    truncated = score_file(_opts(bundle, inp, out, overwrite=True))
    assert truncated.scored == 5
    assert json.loads(out.read_text().splitlines()[2])["truncated"] is True


def test_existing_output_and_wrong_input_are_refused(bundle: Path, tmp_path: Path) -> None:
    inp = _write_input(tmp_path / "in.jsonl", 20)
    out = tmp_path / "out.jsonl"
    score_file(_opts(bundle, inp, out))
    with pytest.raises(UserError, match="--resume to continue"):
        score_file(_opts(bundle, inp, out))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**_record(i), "id": f"o{i}"}) + "\n" for i in range(30)))
    with pytest.raises(UserError, match="does not continue --input"):
        score_file(_opts(bundle, other, out, resume=True))


def test_parquet_input_scores_like_jsonl(bundle: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    inp = _write_input(tmp_path / "in.jsonl", 40)
    rows = [{"source": None, **_record(i)} for i in range(40)]  # every row has every column
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    score_file(_opts(bundle, inp, tmp_path / "a.jsonl", chunk_size=6))
    score_file(_opts(bundle, tmp_path / "in.parquet", tmp_path / "b.jsonl", chunk_size=6))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_cli_reports_a_missing_input_without_a_traceback(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xmixup.cli import main

    argv = ["predict", "--model", str(bundle), "--input", str(tmp_path / "nope.jsonl")]
    assert main([*argv, "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl: no such file" in err and "Traceback" not in err
