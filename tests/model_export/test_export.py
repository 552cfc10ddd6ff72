"""Export on tiny random models: parity through the service's loader, int8/fp16, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")

from model_export import onnx_export, trace, verifier  # noqa: E402
from model_export.optimize import count_ops  # noqa: E402
from model_export.parity import AtolError, generated_cases  # noqa: E402
from tests.tiny import make_tiny_checkpoint  # noqa: E402
from xmixup.core.bundle import load_bundle  # noqa: E402
from xmixup.core.bundle_errors import ChecksumMismatch  # noqa: E402
from xmixup.core.runner import Runner  # noqa: E402
from xmixup.errors import UserError  # noqa: E402

LABELS = {"classify": ["entail", "neutral", "contra"], "tag": ["O", "B-PER", "I-PER"], "qa": []}
EXTRA = {"classify": {}, "tag": {"tag_scheme": "BIO", "word_token": "first-content"}, "qa": {}}


@pytest.fixture(scope="module")
def checkpoints(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for task in ("classify", "tag", "qa"):
        tmp = tmp_path_factory.mktemp(f"ckpt_{task}")
        # A random init gives near-uniform outputs; seed differently per task and scale the
        # heads up so argmax decisions are not ties (a tie would make agreement meaningless).
        out[task] = make_tiny_checkpoint(
            tmp, task, LABELS[task], backbone_dir=tiny_backbone, seed=3, **EXTRA[task]
        )
    return out


@pytest.fixture(scope="module")
def fp32_bundles(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("bundles")
    return {
        task: onnx_export.export_bundle_result(ckpt, root / task, name=f"tiny-{task}")
        for task, ckpt in checkpoints.items()
    }


def _torch_predict(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = (
        "target_input_ids",
        "target_attention_mask",
        "source_input_ids",
        "source_attention_mask",
    )
    with torch.inference_mode():
        out = model.predict(*(torch.from_numpy(feeds[k]) for k in order))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("task", ["classify", "tag", "qa"])
def test_fp32_bundle_matches_pytorch_through_the_service_loader(
    task: str, checkpoints: dict[str, Path], fp32_bundles: dict
) -> None:
    result = fp32_bundles[task]
    bundle = load_bundle(result.path)
    manifest = bundle.manifest
    assert manifest.task == task and manifest.precision == "fp32"
    assert manifest.inputs == [
        "target_input_ids",
        "target_attention_mask",
        "source_input_ids",
        "source_attention_mask",
    ]
    assert manifest.outputs[-1] == "mixup_ratio"
    assert manifest.parity["fp32"]["max_abs"] <= 1e-4
    runner = Runner.for_bundle(bundle, "cpu", intra_op_threads=1)
    from training.modeling import XMixupModel

    model = XMixupModel.from_pretrained(checkpoints[task])
    # Shapes never seen at trace time: batch 1 and 3, target shorter and longer than source.
    cases = generated_cases(
        500, inputs=manifest.inputs, shapes=((1, 5, 12), (3, 19, 8), (3, 10, 10)), seed=7
    )
    for _, feeds in cases:
        ref = _torch_predict(model, feeds)
        got = runner.run(feeds)
        mask = feeds["target_attention_mask"].astype(bool)
        for name in manifest.outputs:
            assert got[name].shape == ref[name].shape, name
            if name in ("logits", "start_logits", "end_logits"):
                delta = np.abs(got[name] - ref[name])[mask]
            else:
                delta = np.abs(got[name] - ref[name])
            assert delta.max() <= 1e-4, (name, float(delta.max()))
        # λ is a real signal, not a constant: in (0, λ0] and per-example
        assert np.all(got["mixup_ratio"] > 0) and np.all(got["mixup_ratio"] <= 0.5)


@pytest.mark.parametrize("task", ["classify", "qa"])
def test_trust_output_is_exported_and_matches_pytorch(
    task: str, tiny_backbone: Path, tmp_path: Path
) -> None:
    """A fitted trust head adds translation_trust to the graph and the manifest; parity covers
    it (QA: the source stream stops at the mixup layer, the head still reads it)."""
    from tests.tiny import fit_tiny_trust
    from training.modeling import XMixupModel

    ckpt = make_tiny_checkpoint(
        tmp_path / "ckpt", task, LABELS[task], backbone_dir=tiny_backbone, seed=3, **EXTRA[task]
    )
    fit_tiny_trust(ckpt)
    result = onnx_export.export_bundle_result(ckpt, tmp_path / "bundle", name="trusty")
    bundle = load_bundle(result.path)
    assert bundle.manifest.outputs[-2:] == ["mixup_ratio", "translation_trust"]
    assert bundle.manifest.parity["fp32"]["outputs"]["translation_trust"]["max_abs"] <= 1e-4
    runner = Runner.for_bundle(bundle, "cpu", intra_op_threads=1)
    model = XMixupModel.from_pretrained(ckpt)
    cases = generated_cases(500, inputs=bundle.manifest.inputs, shapes=((3, 9, 14),), seed=5)
    for _, feeds in cases:
        ref = _torch_predict(model, feeds)["translation_trust"]
        got = runner.run(feeds)["translation_trust"]
        assert got.shape == (3,) and np.all((got > 0) & (got < 1))
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_graph_has_three_independent_dynamic_axes(fp32_bundles: dict) -> None:
    path = fp32_bundles["tag"].path / "model.onnx"
    model = onnx.load(str(path))
    dims = {v.name: [d.dim_param for d in v.type.tensor_type.shape.dim] for v in model.graph.input}
    assert dims["target_input_ids"] == ["batch", "target_length"]
    assert dims["source_attention_mask"] == ["batch", "source_length"]


def test_export_log_reports_fusions(fp32_bundles: dict) -> None:
    export = load_bundle(fp32_bundles["classify"].path).manifest.export
    attempt = export["optimize"]["attempts"][-1]
    assert attempt["fused"].get("SkipLayerNormalization", 0) > 0
    assert "Attention" in attempt["not_fused"] or attempt["fused"].get("Attention")
    assert export["optimize"]["used_fused"] is True


def test_manifest_export_is_the_typed_log_with_its_historical_keys(fp32_bundles: dict) -> None:
    result = fp32_bundles["tag"]
    export = load_bundle(result.path).manifest.export
    assert list(export) == [
        "exporter",
        "opset",
        "external_data",
        "matmul_nodes",
        "optimize",
        "fp32_parity",
        "seconds",
        "source_stream",
        "dedupe",  # the size step: one copy of each repeated initializer
    ]
    assert export == json.loads(json.dumps(result.log.as_dict()))
    assert (export["exporter"], export["opset"], export["external_data"]) == ("legacy", 18, False)
    assert export["matmul_nodes"] > 0
    # the fp32 figures in manifest.parity are those of the graph kept (the fused one)
    assert export["fp32_parity"] == load_bundle(result.path).manifest.parity["fp32"]
    assert result.log.optimize is not None and result.log.optimize.embed_layer_norm is True
    stream = export["source_stream"]
    manifest = load_bundle(result.path).manifest
    assert stream["source_layers_full"] is False  # tag graphs stop the source at the mixup layer
    assert stream["source_sublayers"] == 2 * manifest.mixup_layer - 1


def test_manifest_records_the_word_token_rule_of_tag_models(fp32_bundles: dict) -> None:
    rules = {task: load_bundle(r.path).manifest.word_token for task, r in fp32_bundles.items()}
    assert rules == {"classify": None, "tag": "first-content", "qa": None}


def test_tag_graph_stops_the_source_stream_at_the_mixup_layer(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from training.modeling import XMixupModel

    model = XMixupModel.from_pretrained(checkpoints["tag"])
    inputs = trace.graph_inputs("xmixup")
    lean, full = tmp_path / "lean.onnx", tmp_path / "full.onnx"
    trace.export_onnx(model, lean)
    trace.export_onnx(
        model,
        full,
        inputs=inputs,
        outputs=("logits", "mixup_ratio", "source_last_hidden"),
        module=trace.full_source_module(model),
    )
    layers, li = model.num_layers, model.config.mixup_layer
    assert li is not None and li < layers
    saved = count_ops(onnx.load(str(full)), "MatMul") - count_ops(onnx.load(str(lean)), "MatMul")
    # each skipped source layer: 4 attention + 2 FFN projections + 2 attention matmuls;
    # plus the mixup layer's own source FFN (2)
    assert saved == (layers - li) * 8 + 2


def test_int8_runs_and_agrees_on_argmax(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = onnx_export.export_bundle_result(
        checkpoints["classify"], tmp_path / "int8", precision="int8"
    )
    manifest = load_bundle(tmp_path / "int8").manifest
    assert manifest.precision == "int8"
    assert result.log.quantize is not None
    quantized = result.log.quantize.quantized_ops
    assert sum(quantized.values()) > 0, quantized
    graph = onnx.load(str(tmp_path / "int8" / "model.onnx"))
    # the library's int8 quantises every MatMul, down-projections included (the CLI keeps those)
    made_by = {o: n.op_type for n in graph.graph.node for o in n.output}
    assert not any(
        n.op_type == "MatMul" and made_by.get(n.input[0]) in ("BiasGelu", "Gelu", "FastGelu")
        for n in graph.graph.node
    )
    assert count_ops(graph, "MatMulInteger") + count_ops(graph, "DynamicQuantizeMatMul") > 0
    # the head stays fp32 (sensitive, and a sliver of the FLOPs)
    head_ops = {n.op_type for n in graph.graph.node if n.name.startswith("/head")}
    assert head_ops & {"Gemm", "MatMul"}
    assert not head_ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    figures = manifest.parity["int8"]["outputs"]["probabilities"]
    assert figures["compared"] >= 9
    assert figures["agreement"] >= 0.75
    assert manifest.parity["fp32"]["max_abs"] <= 1e-4


def test_fp16_export_reports_agreement(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    onnx_export.export_bundle_result(checkpoints["qa"], tmp_path / "fp16", precision="fp16")
    manifest = load_bundle(tmp_path / "fp16").manifest
    assert manifest.precision == "fp16"
    fp16 = manifest.parity["fp16"]
    if "skipped" not in fp16:  # CPU onnxruntime may lack an fp16 kernel; then it is said so
        assert fp16["span_agreement"] >= 0.5
        assert 0 < fp16["max_abs"] < 0.1
    graph = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    types = {i.data_type for i in graph.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in graph.graph.input)


def test_parity_failure_names_the_output_and_writes_nothing(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_runner = verifier.ort_runner

    def skewed(path: Path, outputs: Any, **kw: Any) -> Any:
        run = real_runner(path, outputs, **kw)

        def wrapped(feeds: Any) -> Any:
            out = run(feeds)
            out["logits"] = out["logits"] + 3e-4  # just past the 1e-4 tolerance
            return out

        return wrapped

    monkeypatch.setattr(verifier, "ort_runner", skewed)
    with pytest.raises(AtolError) as info:
        onnx_export.export_bundle(checkpoints["tag"], tmp_path / "bad")
    assert info.value.output == "logits"
    assert "'logits'" in str(info.value) and "0.000301" in str(info.value)
    assert not (tmp_path / "bad").exists()
    assert not list(tmp_path.glob(".bad.*")), "staging directory left behind"


def test_baseline_graph_takes_only_the_target(tiny_backbone: Path, tmp_path: Path) -> None:
    ckpt = make_tiny_checkpoint(
        tmp_path, "tag", LABELS["tag"], backbone_dir=tiny_backbone, method="translate-train"
    )
    onnx_export.export_bundle(ckpt, tmp_path / "tt", optimize=False)
    bundle = load_bundle(tmp_path / "tt")
    assert bundle.manifest.inputs == ["target_input_ids", "target_attention_mask"]
    runner = Runner.for_bundle(bundle)
    assert [i.name for i in runner.session.get_inputs()] == bundle.manifest.inputs


def test_refuses_a_non_empty_out_dir(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        onnx_export.export_bundle(checkpoints["classify"], tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli_export_with_verify_data_then_verify_bundle(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from xmixup.cli import main

    items = [
        {"id": f"x{i}", "lang": "de", "target": t, "source": s, "label": LABELS["classify"][i % 3]}
        for i, (t, s) in enumerate(
            [
                ("Die Katze sitzt auf der Matte.", "The cat sits on the mat."),
                ("Ein Mann spielt Gitarre im Park.", "A man is playing a guitar in the park."),
                ("Wo ist der nächste Bahnhof?", "Where is the nearest train station?"),
                ("Das Wetter ist heute sehr schön, nicht wahr?", "The weather is nice."),
                ("Zwei Hunde laufen.", "Two dogs are running across the green field."),
            ]
        )
    ]
    data = tmp_path / "verify.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    out = tmp_path / "bundle"
    argv = ["export", "--checkpoint", str(checkpoints["classify"]), "--out", str(out)]
    assert main([*argv, "--verify-data", str(data), "--name", "nli-de"]) == 0
    manifest = load_bundle(out).manifest
    assert manifest.name == "nli-de"
    # the CLI's default is the small CPU bundle: the fp32 graph, its matrices and word-embedding
    # rows stored int8 (this tiny model's matrices are all under the size floor)
    assert manifest.precision == "fp32" and manifest.vocabulary is not None
    assert manifest.vocabulary.embedding_precision == "int8"
    assert manifest.export["weights"]["min_elements"] == 65536
    assert manifest.export["verify_data"]["batches"] == 1
    assert any(case.startswith("verify.jsonl") for case in manifest.parity["fp32"]["cases"])

    assert main(["verify-bundle", str(out)]) == 0
    assert "checksums ok" in capsys.readouterr().out

    blob = bytearray((out / "model.onnx").read_bytes())
    blob[-10] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(blob))
    assert main(["verify-bundle", str(out)]) == 2
    assert "'model.onnx'" in capsys.readouterr().err
    with pytest.raises(ChecksumMismatch):
        load_bundle(out)


def test_cli_export_bad_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xmixup.cli import main

    (tmp_path / "ckpt").mkdir()
    rc = main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "b")])
    assert rc == 2
    assert "config.json" in capsys.readouterr().err


def test_int8_stored_weights_fold_to_fp32_at_load(
    fp32_bundles: dict[str, Any], tmp_path: Path
) -> None:
    """Weight-only int8: small on disk, the fp32 graph once onnxruntime opens it."""
    import onnxruntime as ort

    from model_export.compact import store_weights_int8

    bundle = fp32_bundles["classify"].path
    manifest = load_bundle(bundle).manifest
    src, dst = bundle / "model.onnx", tmp_path / "w8.onnx"
    # tiny matrices: lower the size floor so that every matrix is stored int8
    record = store_weights_int8(src, dst, min_elements=256)
    assert record["matrices"] > 0 and 0 < record["max_abs_error"] < 0.05
    stored = onnx.load(str(dst))
    int8 = [i for i in stored.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) == record["matrices"]
    int8_bytes = sum(len(i.raw_data) for i in int8)
    # each matrix: 4 bytes per element before, 1 after (plus one scale per column)
    assert src.stat().st_size - dst.stat().st_size > 2.5 * int8_bytes > 0

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "opened.onnx")
    session = ort.InferenceSession(str(dst), options, providers=["CPUExecutionProvider"])
    opened = onnx.load(str(tmp_path / "opened.onnx"))
    assert not [n for n in opened.graph.node if n.name.endswith("_dq")]  # folded at load

    parent = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    feeds = generated_cases(500, inputs=manifest.inputs, shapes=((4, 9, 14),), seed=5)[0][1]
    a = parent.run(["probabilities"], feeds)[0]
    b = session.run(["probabilities"], feeds)[0]
    assert np.abs(a - b).max() < 0.02
    assert (a.argmax(-1) == b.argmax(-1)).all()


def test_int8_weights_need_the_fp32_graph(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from xmixup.errors import UserError

    with pytest.raises(UserError, match="--weights int8 with --precision int8"):
        onnx_export.export_bundle(
            checkpoints["classify"], tmp_path / "x", precision="int8", weights="int8"
        )
    assert not (tmp_path / "x").exists()


def test_cli_int8_keeps_the_down_projections_fp32(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from xmixup.cli import main

    out = tmp_path / "int8"
    argv = ["export", "--checkpoint", str(checkpoints["classify"]), "--out", str(out)]
    assert main([*argv, "--precision", "int8"]) == 0
    manifest = load_bundle(out).manifest
    assert manifest.precision == "int8" and manifest.vocabulary is not None
    assert manifest.vocabulary.embedding_precision == "int8"
    graph = onnx.load(str(out / "model.onnx"))
    made_by = {o: n.op_type for n in graph.graph.node for o in n.output}
    fed_by_gelu = [
        n.op_type
        for n in graph.graph.node
        if n.input and made_by.get(n.input[0]) in ("BiasGelu", "Gelu", "FastGelu")
    ]
    assert fed_by_gelu and set(fed_by_gelu) == {"MatMul"}, fed_by_gelu
    assert count_ops(graph, "MatMulInteger") + count_ops(graph, "DynamicQuantizeMatMul") > 0
