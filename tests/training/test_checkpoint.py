"""Checkpoint save/load round trip, strict refusal of broken checkpoints, config validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.config import CheckpointError, XMixupConfig, default_mixup_layer
from xmixup.errors import UserError

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors.torch import load_file, save_file  # noqa: E402

from tests.tiny import make_tiny_checkpoint, make_tiny_model, random_batch  # noqa: E402
from training.modeling import XMixupModel  # noqa: E402


@pytest.fixture(scope="module")
def qa_checkpoint(tiny_backbone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("ckpt"), "qa", [], backbone_dir=tiny_backbone, mixup_layer=2
    )


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(("task", "arch"), [("classify", "bert"), ("tag", "xlmr")])
def test_save_load_gives_identical_outputs(
    tiny_backbone, tiny_xlmr_backbone, tmp_path: Path, task: str, arch: str
) -> None:
    backbone = tiny_backbone if arch == "bert" else tiny_xlmr_backbone
    model = make_tiny_model(backbone, task, gate="paper", pooling="cls", seed=3)
    with torch.no_grad():
        model.gate.weight.fill_(0.7)  # a "trained" gate value must survive the round trip
    out_dir = model.save_pretrained(tmp_path / "ckpt")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (out_dir / name).is_file(), name
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["xmixup"]["task"] == task and cfg["xmixup"]["gate"] == "paper"
    assert cfg["xmixup"]["mixup_layer"] == model.config.mixup_layer
    keys = load_file(str(out_dir / "model.safetensors")).keys()
    assert {k.split(".")[0] for k in keys} == {"encoder", "head", "gate"}

    loaded = XMixupModel.from_pretrained(out_dir)
    assert loaded.config == model.config and not loaded.training
    assert loaded.gate.weight.item() == pytest.approx(0.7)
    t, s = random_batch([5, 9], seed=1), random_batch([7, 4], seed=2)
    with torch.no_grad():
        a, b = model.predict(*t, *s), loaded.predict(*t, *s)
        fa, fb = model(*t, *s), loaded(*t, *s)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(fa.source_logits, fb.source_logits)
    # The loaded checkpoint is a checkpoint on its own: it saves again next to itself.
    again = loaded.save_pretrained(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (out_dir / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_refused_by_name(qa_checkpoint: Path, tmp_path: Path, missing: str) -> None:
    broken = _copy(qa_checkpoint, tmp_path / "broken")
    (broken / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace(".", r"\.")):
        XMixupModel.from_pretrained(broken)


def _rewrite_weights(ckpt: Path, edit) -> None:
    state = load_file(str(ckpt / "model.safetensors"))
    edit(state)
    save_file(state, str(ckpt / "model.safetensors"))


def test_mismatched_tensor_is_refused_by_key(qa_checkpoint: Path, tmp_path: Path) -> None:
    broken = _copy(qa_checkpoint, tmp_path / "shape")
    _rewrite_weights(
        broken, lambda st: st.__setitem__("head.qa_outputs.weight", torch.zeros(3, 32))
    )
    with pytest.raises(CheckpointError, match=r"head\.qa_outputs\.weight.*\(3, 32\)"):
        XMixupModel.from_pretrained(broken)


def test_missing_and_unexpected_tensors_are_refused(qa_checkpoint: Path, tmp_path: Path) -> None:
    missing = _copy(qa_checkpoint, tmp_path / "missing")
    _rewrite_weights(missing, lambda st: st.pop("gate.bias"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing tensor.*gate\.bias"):
        XMixupModel.from_pretrained(missing)
    extra = _copy(qa_checkpoint, tmp_path / "extra")
    _rewrite_weights(extra, lambda st: st.__setitem__("head.bogus", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*head\.bogus"):
        XMixupModel.from_pretrained(extra)


def test_bad_config_is_refused(qa_checkpoint: Path, tmp_path: Path) -> None:
    broken = _copy(qa_checkpoint, tmp_path / "cfg")
    cfg = json.loads((broken / "config.json").read_text())
    cfg["xmixup"]["method"] = "magic"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="magic"):
        XMixupModel.from_pretrained(broken)
    del cfg["xmixup"]
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="xmixup"):
        XMixupModel.from_pretrained(broken)
    with pytest.raises(CheckpointError, match="does not exist"):
        XMixupModel.from_pretrained(tmp_path / "nowhere")


def test_checkpoint_loads_in_eval_with_qa_outputs(qa_checkpoint: Path) -> None:
    model = XMixupModel.from_pretrained(qa_checkpoint)
    t, s = random_batch([6, 3], seed=1), random_batch([5, 8], seed=2)
    with torch.no_grad():
        out = model.predict(*t, *s)
    assert set(out) == {"start_logits", "end_logits", "mixup_ratio"}
    assert out["start_logits"].shape == (2, 6) and out["mixup_ratio"].shape == (2,)


# ---------------------------------------------------------------------- XMixupConfig


def test_config_round_trip_and_defaults() -> None:
    cfg = XMixupConfig(task="qa")
    assert cfg.max_length == 384 and cfg.method == "xmixup" and cfg.gate == "normalized"
    assert XMixupConfig(task="tag", labels=["O", "B-PER"]).max_length == 128
    again = XMixupConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_config_word_token_round_trips_and_old_configs_read_first() -> None:
    cfg = XMixupConfig(task="tag", labels=["O", "B-PER"], word_token="first-content")
    again = XMixupConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.word_token == "first-content"
    old = cfg.to_dict()
    del old["word_token"]  # a checkpoint written before the field existed
    assert XMixupConfig.from_dict(old).word_token == "first"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("task", "translate", "unknown task"),
        ("method", "mixup", "unknown method"),
        ("gate", "fixed", "unknown gate"),
        ("pooling", "max", "unknown pooling"),
        ("lambda0", 0.0, "lambda0"),
        ("mixup_layer", 0, "1-based"),
        ("format_version", 2, "format_version"),
        ("word_token", "last", "unknown word_token"),
    ],
)
def test_config_validation(field: str, value: object, needle: str) -> None:
    data = {"task": "classify", "labels": ["a", "b"], field: value}
    with pytest.raises(UserError, match=needle):
        XMixupConfig.from_dict(data)


def test_config_rejects_unknown_fields_and_bad_labels() -> None:
    with pytest.raises(UserError, match="colour"):
        XMixupConfig.from_dict({"task": "classify", "labels": ["a", "b"], "colour": 1})
    with pytest.raises(UserError, match="at least 2 labels"):
        XMixupConfig(task="classify", labels=["a"])
    with pytest.raises(UserError, match="duplicate"):
        XMixupConfig(task="tag", labels=["O", "O"])


def test_default_mixup_layer_per_task() -> None:
    assert default_mixup_layer("classify", 12) == 8  # measured departure from the paper's 1
    assert default_mixup_layer("tag", 12) == 4
    assert default_mixup_layer("qa", 12) == 6  # measured departure from the paper's 8
    assert default_mixup_layer("qa", 24) == 12
    assert default_mixup_layer("tag", 2) == 1
