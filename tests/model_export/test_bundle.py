"""The bundle format: manifest schema, checksums, typed refusals, loader, torch-free import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.core.toy_bundle import make_toy_bundle, toy_fields, toy_tokenizer
from xmixup.core.bundle import (
    file_sha256,
    load_bundle,
    read_manifest,
    verify_bundle,
    write_manifest,
)
from xmixup.core.bundle_errors import (
    BundleError,
    BundleFileMissing,
    ChecksumMismatch,
    InvalidManifest,
    UnknownTask,
    UnsupportedFormatVersion,
)
from xmixup.core.manifest import FORMAT_VERSION
from xmixup.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    return make_toy_bundle(tmp_path / "bundle")


def _rewrite_manifest(bundle: Path, **changes: object) -> None:
    raw = json.loads((bundle / "manifest.json").read_text())
    raw.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(raw))


def test_write_then_verify_roundtrip(bundle_dir: Path) -> None:
    manifest = verify_bundle(bundle_dir)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.task == "classify"
    assert set(manifest.files) == {"model.onnx", "tokenizer.json"}
    entry = manifest.files["model.onnx"]
    assert entry.size == (bundle_dir / "model.onnx").stat().st_size
    assert entry.sha256 == file_sha256(bundle_dir / "model.onnx")
    assert manifest.created_at and manifest.xmixup_version
    # the on-disk JSON is what read_manifest parses back
    assert read_manifest(bundle_dir) == manifest


def test_streamed_hash_matches_hashlib_on_multi_chunk_file(tmp_path: Path) -> None:
    import hashlib

    data = np.random.default_rng(0).integers(0, 256, size=(3 << 20) + 17, dtype=np.uint8)
    path = tmp_path / "big.bin"
    path.write_bytes(data.tobytes())
    assert file_sha256(path) == hashlib.sha256(data.tobytes()).hexdigest()


def test_flipped_byte_is_refused_naming_the_file(bundle_dir: Path) -> None:
    path = bundle_dir / "model.onnx"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # same size, different content: only the hash can tell
    path.write_bytes(bytes(blob))
    with pytest.raises(ChecksumMismatch) as info:
        verify_bundle(bundle_dir)
    assert "model.onnx" in str(info.value)
    assert str(bundle_dir) in str(info.value)
    assert "sha256" in str(info.value)
    assert info.value.subject == "model.onnx"


def test_truncated_file_is_refused_by_size(bundle_dir: Path) -> None:
    (bundle_dir / "tokenizer.json").write_text("{}")
    with pytest.raises(ChecksumMismatch, match=r"tokenizer\.json.*size"):
        verify_bundle(bundle_dir)


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json", "manifest.json"])
def test_missing_file_is_refused_naming_it(bundle_dir: Path, name: str) -> None:
    (bundle_dir / name).unlink()
    with pytest.raises(BundleFileMissing) as info:
        load_bundle(bundle_dir)
    assert repr(name) in str(info.value)
    assert info.value.subject == name
    assert isinstance(info.value, UserError)


def test_unknown_format_version_is_refused_before_schema(bundle_dir: Path) -> None:
    # A future format may add fields; the error must blame the version, not "extra field".
    _rewrite_manifest(bundle_dir, format_version=4, new_field_of_v4=True)
    with pytest.raises(UnsupportedFormatVersion, match=r"format_version.*4.*reads format version"):
        verify_bundle(bundle_dir)


def test_unknown_task_is_refused(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, task="summarize")
    with pytest.raises(UnknownTask, match=r"'task' is 'summarize'.*classify, tag, qa"):
        verify_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"precision": "int4"}, "precision"),
        ({"surprise": 1}, "surprise"),
        ({"inputs": ["target_input_ids", "token_type_ids"]}, "inputs"),
        ({"inputs": ["target_input_ids", "source_input_ids"]}, "inputs"),
        ({"outputs": ["logits", "mixup_ratio"]}, "outputs"),
        ({"labels": []}, "labels"),
        ({"files": {"../etc/passwd": {"sha256": "0" * 64, "size": 1}}}, "files"),
    ],
)
def test_invalid_manifest_names_the_field(bundle_dir: Path, change: dict, field: str) -> None:
    _rewrite_manifest(bundle_dir, **change)
    with pytest.raises(InvalidManifest) as info:
        verify_bundle(bundle_dir)
    assert field in str(info.value)
    assert str(bundle_dir) in str(info.value)


def test_free_form_dicts_accept_anything(tmp_path: Path, bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, parity={"max_abs": {"probabilities": 1e-7}}, metrics={"acc": 0.9})
    manifest = verify_bundle(bundle_dir)
    assert manifest.parity["max_abs"]["probabilities"] == pytest.approx(1e-7)


def test_not_json_manifest(bundle_dir: Path) -> None:
    (bundle_dir / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        read_manifest(bundle_dir)


def test_qa_needs_its_lengths(tmp_path: Path) -> None:
    out = tmp_path / "qa"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"x")
    toy_tokenizer(out / "tokenizer.json")
    qa = toy_fields(task="qa", labels=[], outputs=["start_logits", "end_logits", "mixup_ratio"])
    with pytest.raises(InvalidManifest, match="doc_stride"):
        write_manifest(out, qa)
    qa.update(doc_stride=128, max_query_length=64, max_answer_length=30)
    assert write_manifest(out, qa).doc_stride == 128


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nope")


def test_importing_the_core_stays_torch_free() -> None:
    code = (
        "import sys, xmixup.core.bundle, xmixup.core.bundle_errors, xmixup.core.manifest,"
        " xmixup.core.runner, xmixup.core.special_tokens, model_export.cli;"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'onnx', 'tokenizers') "
        "if m in sys.modules); print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def test_verify_bundle_cli_good_and_bad(bundle_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from xmixup.cli import main

    assert main(["verify-bundle", str(bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert "checksums ok" in out and "CPUExecutionProvider" in out

    (bundle_dir / "tokenizer.json").write_text('{"version": "2.0"}', encoding="utf-8")
    assert main(["verify-bundle", str(bundle_dir)]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.json" in err and "Traceback" not in err

    (bundle_dir / "model.onnx").unlink()
    assert main(["verify-bundle", "--no-load", str(bundle_dir)]) == 2
    assert "'model.onnx' is missing" in capsys.readouterr().err


TAG_FIELDS = {"task": "tag", "labels": ["O", "B-PER"], "outputs": ["logits", "mixup_ratio"]}


def test_tag_bundle_without_word_token_reads_words_by_first(bundle_dir: Path) -> None:
    """Bundles exported before the word-token rule was recorded keep the rule they were
    trained with, in both format versions."""
    from tests.core.toy_bundle import write_v1_manifest

    _rewrite_manifest(bundle_dir, **TAG_FIELDS)
    manifest = load_bundle(bundle_dir).manifest
    assert manifest.word_token is None and manifest.word_token_rule == "first"
    write_v1_manifest(bundle_dir, **TAG_FIELDS)
    assert load_bundle(bundle_dir).manifest.word_token_rule == "first"


def test_word_token_is_a_known_rule_of_a_tag_bundle(bundle_dir: Path) -> None:
    _rewrite_manifest(bundle_dir, **TAG_FIELDS, word_token="first-content")
    assert load_bundle(bundle_dir).manifest.word_token_rule == "first-content"
    _rewrite_manifest(bundle_dir, word_token="last")
    with pytest.raises(InvalidManifest, match="word_token"):
        verify_bundle(bundle_dir)
    _rewrite_manifest(bundle_dir, **toy_fields(), word_token="first")
    with pytest.raises(InvalidManifest, match="only a 'tag' bundle"):
        verify_bundle(bundle_dir)
