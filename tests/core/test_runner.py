"""The one onnxruntime runner: outputs, what it feeds, the provider fallback, the graph checks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.core.toy_bundle import make_toy_bundle, toy_expected_probabilities
from xmixup.core.bundle import load_bundle
from xmixup.core.bundle_errors import InvalidManifest
from xmixup.core.runner import CPU_PROVIDER, GraphMismatch, Runner
from xmixup.errors import UserError

TARGET_MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
SOURCE_MASK = np.array([[1] * 7, [1, 1, 0, 0, 0, 0, 0]], np.int64)
FEEDS = {
    "target_input_ids": np.ones((2, 5), np.int64),
    "target_attention_mask": TARGET_MASK,
    "source_input_ids": np.ones((2, 7), np.int64),
    "source_attention_mask": SOURCE_MASK,
}


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    return make_toy_bundle(tmp_path / "bundle")


def test_runs_the_graph_on_cpu_like_a_plain_session(bundle_dir: Path) -> None:
    runner = Runner.for_bundle(load_bundle(bundle_dir), "cpu", intra_op_threads=1)
    assert runner.provider == CPU_PROVIDER and not runner.use_io_binding
    got = runner.run(FEEDS)
    assert list(got) == ["probabilities", "mixup_ratio"]
    np.testing.assert_allclose(
        got["probabilities"], toy_expected_probabilities(TARGET_MASK, SOURCE_MASK), rtol=1e-5
    )
    np.testing.assert_allclose(got["mixup_ratio"], [0.25, 0.25])
    # The path the service and evaluation took before the runner: a bare session.run.
    plain = ort.InferenceSession(str(bundle_dir / "model.onnx"), providers=[CPU_PROVIDER])
    before = plain.run(["probabilities", "mixup_ratio"], FEEDS)
    np.testing.assert_array_equal(got["probabilities"], before[0])
    np.testing.assert_array_equal(got["mixup_ratio"], before[1])


def test_feeds_only_the_declared_inputs_as_int64(bundle_dir: Path) -> None:
    runner = Runner.for_bundle(load_bundle(bundle_dir))
    feeds = {name: value.astype(np.int32) for name, value in FEEDS.items()}
    feeds["token_type_ids"] = np.zeros((2, 5), np.int64)  # not a graph input: left out
    got = runner.run(feeds)
    np.testing.assert_allclose(
        got["probabilities"], toy_expected_probabilities(TARGET_MASK, SOURCE_MASK), rtol=1e-5
    )


def test_missing_input_is_a_key_error(bundle_dir: Path) -> None:
    runner = Runner.for_bundle(load_bundle(bundle_dir))
    with pytest.raises(KeyError, match="source_attention_mask"):
        runner.run({k: v for k, v in FEEDS.items() if k != "source_attention_mask"})


def test_cuda_request_without_cuda_falls_back_to_cpu_with_a_warning(
    bundle_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever this host has, onnxruntime is made to report no CUDA provider.
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU_PROVIDER])
    with caplog.at_level(logging.WARNING, logger="xmixup.core.runner"):
        runner = Runner.for_bundle(load_bundle(bundle_dir), "cuda")
    assert runner.provider == CPU_PROVIDER and not runner.use_io_binding
    assert "CUDA requested" in caplog.text and "onnxruntime-gpu" in caplog.text
    np.testing.assert_allclose(runner.run(FEEDS)["mixup_ratio"], [0.25, 0.25])


def test_unknown_device_is_refused(bundle_dir: Path) -> None:
    with pytest.raises(UserError, match="'cpu' or 'cuda'"):
        Runner.for_bundle(load_bundle(bundle_dir), "tpu")


def test_bundle_graph_inputs_must_match_manifest(bundle_dir: Path) -> None:
    import json

    raw = json.loads((bundle_dir / "manifest.json").read_text())
    # A manifest that claims a target-only graph while the graph wants the source too.
    raw["inputs"] = ["target_input_ids", "target_attention_mask"]
    (bundle_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidManifest, match=r"'inputs'.*graph takes") as info:
        Runner.for_bundle(load_bundle(bundle_dir))
    assert info.value.subject == "inputs"


def test_plain_graph_checks_outputs_and_loadability(bundle_dir: Path, tmp_path: Path) -> None:
    inputs = list(FEEDS)
    with pytest.raises(GraphMismatch, match=r"lacks outputs \['logits'\]") as info:
        Runner(bundle_dir / "model.onnx", inputs, ["probabilities", "logits"])
    assert info.value.subject == "outputs"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(GraphMismatch, match="cannot load the graph") as info:
        Runner(broken, inputs, ["probabilities"])
    assert info.value.subject == "broken.onnx"


def test_session_options_threads_spinning_and_optimisation(bundle_dir: Path) -> None:
    runner = Runner.for_bundle(load_bundle(bundle_dir), "cpu", 2, spin=False)
    options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    default = Runner.for_bundle(load_bundle(bundle_dir)).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's default: spin
        default.get_session_config_entry("session.intra_op.allow_spinning")
