"""Manifest format versions: 2 records the pad id and special tokens, 3 the vocabulary too;
2 and 1 still load (1's tokens read from its tokenizer.json by the same rule); inconsistent
manifests are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tests.core.toy_bundle import (
    make_toy_bundle,
    toy_classify_graph,
    toy_fields,
    toy_tokenizer,
    write_v1_manifest,
)
from xmixup.core.bundle import load_bundle, verify_bundle, write_manifest
from xmixup.core.bundle_errors import InvalidManifest, UnreadableTokenizer
from xmixup.core.manifest import FORMAT_VERSION
from xmixup.core.special_tokens import read_special_tokens


def _v1_bundle(out: Path, **overrides: object) -> Path:
    out.mkdir(parents=True)
    toy_classify_graph(out / "model.onnx")
    toy_tokenizer(out / "tokenizer.json")
    write_v1_manifest(out, **overrides)
    return out


def test_current_format_records_pad_id_and_special_tokens(tmp_path: Path) -> None:
    bundle_dir = make_toy_bundle(tmp_path / "v2")
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    assert FORMAT_VERSION == 3 and raw["format_version"] == 3
    assert raw["pad_id"] == 3
    # a writer that says nothing about the vocabulary wrote the tokenizer's whole, fp32
    size = Tokenizer.from_file(str(bundle_dir / "tokenizer.json")).get_vocab_size()
    assert raw["vocabulary"] == {
        "size": size,
        "source_size": size,
        "embedding_precision": "fp32",
        "scripts": [],
        "corpus": [],
    }
    assert raw["special_tokens"] == {
        "bos": {"token": "<s>", "id": 0},
        "eos": {"token": "</s>", "id": 2},
        "unk": {"token": "<unk>", "id": 4},
        "pad": {"token": "<pad>", "id": 3},
        "mask": {"token": "<mask>", "id": 5},
    }
    bundle = load_bundle(bundle_dir)
    assert bundle.pad_id == bundle.manifest.pad_id == 3
    assert bundle.special_tokens == bundle.manifest.special_tokens


def test_version_2_loads_and_vocabulary_belongs_to_version_3(tmp_path: Path) -> None:
    bundle_dir = make_toy_bundle(tmp_path / "v3")
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    v2 = {k: v for k, v in raw.items() if k != "vocabulary"} | {"format_version": 2}
    (bundle_dir / "manifest.json").write_text(json.dumps(v2))
    manifest = load_bundle(bundle_dir).manifest
    assert manifest.format_version == 2 and manifest.vocabulary is None and manifest.pad_id == 3
    for bad in ({**v2, "vocabulary": raw["vocabulary"]}, {**raw, "vocabulary": None}):
        (bundle_dir / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(InvalidManifest, match="vocabulary"):
            load_bundle(bundle_dir)


def test_version_1_loads_with_the_same_pad_id_and_tokens(tmp_path: Path) -> None:
    v1 = load_bundle(_v1_bundle(tmp_path / "v1"))
    v2 = load_bundle(make_toy_bundle(tmp_path / "v2"))
    assert v1.manifest.format_version == 1
    assert v1.manifest.pad_id is None and v1.manifest.special_tokens is None
    assert v1.pad_id == v2.manifest.pad_id == 3
    assert v1.special_tokens == v2.manifest.special_tokens


def test_verify_bundle_cli_reads_version_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xmixup.cli import main

    bundle_dir = _v1_bundle(tmp_path / "v1")
    assert main(["verify-bundle", str(bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert "format 1" in out and "checksums ok" in out and "CPUExecutionProvider" in out


def test_version_1_with_version_2_fields_is_refused(tmp_path: Path) -> None:
    bundle_dir = _v1_bundle(tmp_path / "v1", pad_id=3)
    with pytest.raises(InvalidManifest, match="not fields of format version 1"):
        verify_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"pad_id": None}, "required from format version 2"),
        ({"special_tokens": None}, "required from format version 2"),
        ({"pad_id": 4}, "pad_id: 4 differs from special_tokens' 3"),
        ({"special_tokens": {"pad": {"token": "<pad>", "id": -1}}}, "special_tokens.pad.id"),
    ],
)
def test_inconsistent_version_2_is_refused(tmp_path: Path, change: dict, problem: str) -> None:
    bundle_dir = make_toy_bundle(tmp_path / "v2")
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    raw.update(change)
    (bundle_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidManifest, match=problem):
        verify_bundle(bundle_dir)


def test_writer_refuses_an_unreadable_tokenizer(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    out.mkdir()
    toy_classify_graph(out / "model.onnx")
    (out / "tokenizer.json").write_text('{"version": "1.0"}')
    with pytest.raises(UnreadableTokenizer, match=r"'tokenizer\.json' is not a readable") as info:
        write_manifest(out, toy_fields())
    assert info.value.subject == "tokenizer.json"
    assert not (out / "manifest.json").exists()


def test_writer_keeps_given_special_tokens(tmp_path: Path) -> None:
    toy_tokenizer(tmp_path / "tokenizer.json")
    special = read_special_tokens(tmp_path / "tokenizer.json").model_dump()
    special["pad"] = {"token": "[PAD]", "id": 10}
    bundle_dir = make_toy_bundle(tmp_path / "v2", special_tokens=special, pad_id=10)
    assert load_bundle(bundle_dir).pad_id == 10


def test_unmixed_fallback_needs_the_source_probabilities_output(tmp_path: Path) -> None:
    """An "unmixed" bundle whose graph cannot give the source stream alone is refused at load,
    the field named; "self" (every older bundle) needs nothing."""
    bundle_dir = make_toy_bundle(tmp_path / "toy")
    assert load_bundle(bundle_dir).manifest.no_source_fallback == "self"
    raw = json.loads((bundle_dir / "manifest.json").read_text())
    raw["no_source_fallback"] = "unmixed"
    (bundle_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidManifest, match="no_source_fallback: 'unmixed' reads the"):
        verify_bundle(bundle_dir)
    raw["no_source_fallback"] = "mixed"
    (bundle_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidManifest, match="no_source_fallback"):
        verify_bundle(bundle_dir)
