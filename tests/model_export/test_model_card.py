"""The model card (README.md): rendered from the checkpoint's records, written by export,
covered by the manifest's checksums (a changed card is refused), shown by verify-bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_export.model_card import data_licence, render_model_card
from xmixup.core.bundle_errors import ChecksumMismatch

FIELDS: dict[str, Any] = {
    "name": "sib-xm",
    "task": "classify",
    "labels": ["health", "sports", "travel"],
    "method": "xmixup",
    "backbone": "multilingual-e5-small",
    "mixup_layer": 8,
    "lambda0": 0.5,
    "max_length": 128,
    "precision": "int8",
    "opset": 18,
    "outputs": ["probabilities", "mixup_ratio", "translation_trust"],
}
METRICS: dict[str, Any] = {
    "eval": {
        "metric": "accuracy",
        "per_lang": {"de": 91.0, "is": 88.0, "sw": 80.0},
        "n": {"de": 50, "is": 50, "sw": 40},
        "avg": 86.33,
        "source_used": True,
        "lambda": {"mean": 0.21, "std": 0.03, "min": 0.1, "max": 0.3},
        "trust": {"mean": 0.9, "std": 0.05, "min": 0.6, "max": 0.99},
    },
    "train": {
        "examples": 320,
        "steps": 300,
        "languages": {"de": 40, "en": 40, "zh": 40},
        "lambda_trajectory": [{"step": 300, "lambda_mean": 0.2346}],
    },
}
ARGS = {"options": {"train": "/somewhere/sib200/train.jsonl", "eval": "/x/sib200/eval.jsonl"}}


def test_card_states_what_the_records_say() -> None:
    card = render_model_card(FIELDS, METRICS, ARGS, layers=12, licence="CC BY-SA 4.0")
    assert card.startswith("# sib-xm\n")
    for expected in (
        "`classify` — text classification",
        "`health`, `sports`, `travel`",
        "`multilingual-e5-small`",
        "`xmixup` — X-Mixup",
        "layer 8 of 12, λ0 = 0.5",
        "| translation-trust head | yes |",
        "int8 (ONNX opset 18)",
        "training file: `sib200/train.jsonl`, 320 examples, 300 steps",
        "languages seen in training: `de` (40), `en` (40), `zh` (40)",
        "data licence: CC BY-SA 4.0",
        "| `de` | 91.00 | 50 | seen |",
        "| `is` | 88.00 | 50 | **unseen** |",
        "| `sw` | 80.00 | 40 | **unseen** |",
        "| unseen average | 84.00 | | |",
        "mean 0.210 ± 0.030 (min 0.100, max 0.300)",
        "λ is how the model mixes, not a measure of the translation's quality",
        "`translation_trust` is that measure.",
        "λ at the end of training: 0.235",
        "`translation_trust` on the evaluation file: mean 0.900",
        "Expects an English translation of the input in `source`. Without one it falls back",
        "Inputs longer than 128 tokens",
    ):
        assert expected in card, expected
    assert "/somewhere" not in card  # no machine paths


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({}, None),
        ({"self_mix_rate": 0.2}, "trained for it: 0.2 of its training items mixed their own text"),
        (
            {"self_mix_rate": 0.2, "self_mix_copies": True},
            "trained for it: in an added copy of 0.2 of its training items",
        ),
        ({"no_source_rate": 0.1}, "trained for it: 0.1 of its training items got their own text"),
        ({"unmixed_weight": 0.25}, "with the mixing off (`--unmixed-weight 0.25`)"),
        ({"unmixed_distill": 1.0}, "with the mixing off (`--unmixed-distill 1`)"),
    ],
)
def test_card_says_how_the_no_translation_path_was_trained(options: dict, says: str | None) -> None:
    card = render_model_card(FIELDS, METRICS, {"options": {**ARGS["options"], **options}})
    if says is None:
        assert "trained for it" not in card
    else:
        assert says in card


def test_card_says_what_is_not_recorded() -> None:
    fields = {**FIELDS, "method": "translate-train", "outputs": ["probabilities", "mixup_ratio"]}
    card = render_model_card(fields, {}, {})
    assert "languages seen in training: not recorded" in card
    assert "data licence: not recorded — state it with `xmixup export --data-license TEXT`" in card
    assert "No evaluation recorded" in card
    assert "| mixup layer | none (baseline) |" in card
    assert "a translation in `source` is ignored" in card
    assert "translation_trust" not in card


def test_licence_is_read_from_a_source_md_beside_the_training_file(tmp_path: Path) -> None:
    (tmp_path / "sib200").mkdir()
    (tmp_path / "sib200" / "SOURCE.md").write_text("# SIB\n\nLicence: CC BY-SA 4.0 (FLORES)\n")
    train = str(tmp_path / "sib200" / "train.jsonl")
    assert data_licence(train) == "CC BY-SA 4.0 (FLORES) (from sib200/SOURCE.md)"
    assert data_licence(str(tmp_path / "train.jsonl")) is None
    assert data_licence(None) is None


def test_export_writes_a_checksummed_card_that_verify_bundle_shows(
    tiny_backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.tiny import fit_tiny_trust, make_tiny_checkpoint
    from xmixup.cli import main
    from xmixup.core.bundle import file_sha256, load_bundle

    ckpt = make_tiny_checkpoint(
        tmp_path / "ckpt", "classify", FIELDS["labels"], backbone_dir=tiny_backbone, seed=3
    )
    fit_tiny_trust(ckpt)
    (ckpt / "metrics.json").write_text(json.dumps(METRICS))
    data = tmp_path / "sib200"
    data.mkdir()
    (data / "SOURCE.md").write_text("Licence: CC BY-SA 4.0\n")
    (ckpt / "training_args.json").write_text(
        json.dumps({"options": {"train": str(data / "t.jsonl")}})
    )
    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0

    bundle = load_bundle(out)
    card = out / "README.md"
    assert bundle.card_path == card
    assert bundle.manifest.files["README.md"].sha256 == file_sha256(card)
    text = card.read_text()
    assert "data licence: CC BY-SA 4.0 (from sib200/SOURCE.md)" in text
    assert "| `is` | 88.00 | 50 | **unseen** |" in text
    assert "layer 3 of 4" in text  # tiny backbone: 4 layers, classify default round(2L/3)
    capsys.readouterr()
    assert main(["verify-bundle", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "model card (README.md, checksum ok)" in shown and text.strip() in shown

    card.write_text(text.replace("88.00", "98.00"))  # a flattering edit
    assert main(["verify-bundle", str(out), "--no-load"]) == 2
    assert "'README.md'" in capsys.readouterr().err
    with pytest.raises(ChecksumMismatch):
        load_bundle(out)
