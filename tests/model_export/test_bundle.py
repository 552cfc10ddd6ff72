"""The bundle format: manifest schema, checksums, typed refusals, loader, torch-free import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from xmixup.core.bundle import (
    FORMAT_VERSION,
    INPUT_NAMES,
    BundleError,
    BundleFileMissing,
    ChecksumMismatch,
    InvalidManifest,
    UnknownTask,
    UnsupportedFormatVersion,
    file_sha256,
    load_bundle,
    read_manifest,
    verify_bundle,
    write_manifest,
)
from xmixup.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _toy_classify_graph(path: Path, num_labels: int = 3) -> None:
    """A hand-built graph with the classify bundle's I/O contract (no torch needed):
    probabilities = softmax(W · [sum(target mask), sum(source mask)]), mixup_ratio = 0.25."""
    b, lt, ls = "batch", "target_length", "source_length"
    inputs = [
        helper.make_tensor_value_info("target_input_ids", TensorProto.INT64, [b, lt]),
        helper.make_tensor_value_info("target_attention_mask", TensorProto.INT64, [b, lt]),
        helper.make_tensor_value_info("source_input_ids", TensorProto.INT64, [b, ls]),
        helper.make_tensor_value_info("source_attention_mask", TensorProto.INT64, [b, ls]),
    ]
    outputs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [b, num_labels]),
        helper.make_tensor_value_info("mixup_ratio", TensorProto.FLOAT, [b]),
    ]
    weight = np.arange(2 * num_labels, dtype=np.float32).reshape(2, num_labels) / 10
    nodes = [
        helper.make_node("Cast", ["target_attention_mask"], ["tm"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["source_attention_mask"], ["sm"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["tm", "axes1"], ["tl"], keepdims=1),
        helper.make_node("ReduceSum", ["sm", "axes1"], ["sl"], keepdims=1),
        helper.make_node("Concat", ["tl", "sl"], ["feat"], axis=1),
        helper.make_node("MatMul", ["feat", "W"], ["logit"]),
        helper.make_node("Softmax", ["logit"], ["probabilities"], axis=-1),
        helper.make_node("ReduceSum", ["tl", "axes1"], ["tl1"], keepdims=0),
        helper.make_node("Mul", ["tl1", "zero"], ["z"]),
        helper.make_node("Add", ["z", "quarter"], ["mixup_ratio"]),
        # keep the id inputs alive in the graph so ORT reports them as inputs
        helper.make_node("Shape", ["target_input_ids"], ["_s1"]),
        helper.make_node("Shape", ["source_input_ids"], ["_s2"]),
    ]
    inits = [
        helper.make_tensor("axes1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel().tolist()),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("quarter", TensorProto.FLOAT, [], [0.25]),
    ]
    graph = helper.make_graph(nodes, "toy", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "name": "toy-classify",
        "task": "classify",
        "labels": ["a", "b", "c"],
        "backbone": "tiny",
        "mixup_layer": 1,
        "lambda0": 0.5,
        "max_length": 64,
        "opset": 17,
        "precision": "fp32",
        "inputs": list(INPUT_NAMES),
        "outputs": ["probabilities", "mixup_ratio"],
    }
    fields.update(overrides)
    return fields


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    out.mkdir()
    _toy_classify_graph(out / "model.onnx")
    (out / "tokenizer.json").write_text('{"version": "1.0"}', encoding="utf-8")
    write_manifest(out, _fields())
    return out


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
    _rewrite_manifest(bundle_dir, format_version=2, new_field_of_v2=True)
    with pytest.raises(UnsupportedFormatVersion, match=r"format_version.*2.*reads format version"):
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
    (out / "tokenizer.json").write_bytes(b"{}")
    qa = _fields(task="qa", labels=[], outputs=["start_logits", "end_logits", "mixup_ratio"])
    with pytest.raises(InvalidManifest, match="doc_stride"):
        write_manifest(out, qa)
    qa.update(doc_stride=128, max_query_length=64, max_answer_length=30)
    assert write_manifest(out, qa).doc_stride == 128


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nope")


def test_create_session_runs_the_graph_on_cpu(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    session, provider = bundle.create_session("cpu", intra_op_threads=1)
    assert provider == "CPUExecutionProvider"
    feeds = {
        "target_input_ids": np.ones((2, 5), np.int64),
        "target_attention_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64),
        "source_input_ids": np.ones((2, 7), np.int64),
        "source_attention_mask": np.array([[1] * 7, [1, 1, 0, 0, 0, 0, 0]], np.int64),
    }
    probs, ratio = session.run(["probabilities", "mixup_ratio"], feeds)
    weight = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    logits = np.array([[3, 7], [5, 2]], np.float32) @ weight
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    np.testing.assert_allclose(ratio, [0.25, 0.25])


def test_cuda_request_without_cuda_falls_back_to_cpu(
    bundle_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA; the fallback path is not reachable")
    _, provider = load_bundle(bundle_dir).create_session("cuda")
    assert provider == "CPUExecutionProvider"
    assert "CUDA requested" in caplog.text


def test_graph_inputs_must_match_manifest(bundle_dir: Path) -> None:
    # A manifest that claims a target-only graph while the graph wants the source too.
    _rewrite_manifest(bundle_dir, inputs=["target_input_ids", "target_attention_mask"])
    with pytest.raises(InvalidManifest, match="inputs"):
        load_bundle(bundle_dir).create_session("cpu")


def test_importing_bundle_stays_torch_free() -> None:
    code = (
        "import sys, xmixup.core.bundle, model_export.cli;"
        "heavy = sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'onnx') "
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
