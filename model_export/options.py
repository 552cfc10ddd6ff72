"""`xmixup export`'s options and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model_export.compact import WEIGHT_MIN_ELEMENTS
from model_export.quantize import QuantizeOptions
from model_export.trace import DEFAULT_OPSET
from xmixup.core.vocab import NO_SOURCE_FALLBACKS
from xmixup.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")
EMBEDDINGS = ("fp32", "int8")
WEIGHTS = ("fp32", "int8")


@dataclass
class ExportOptions:
    """`xmixup export`'s options; `check()` runs before any work, so a bad one writes nothing."""

    checkpoint: Path
    out: Path
    precision: str = "fp32"
    opset: int = DEFAULT_OPSET
    verify_data: Path | None = None
    name: str | None = None
    optimize: bool = True
    force: bool = False
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    data_license: str | None = None  # the model card's training-data licence, when given
    embeddings: str = "fp32"  # int8: the word-embedding table as int8 rows (model_export.compact)
    # int8: matrix weights stored int8, fp32 again once loaded (model_export.compact)
    weights: str = "fp32"
    # matrices smaller than this stay fp32 under --weights int8; lowered only by tests, whose
    # tiny models' matrices are all below the default
    weights_min_elements: int = WEIGHT_MIN_ELEMENTS
    vocab_scripts: tuple[str, ...] = ()  # keep only these scripts' pieces (model_export.vocab_trim)
    vocab_corpus: tuple[Path, ...] = ()  # ... and the pieces these files use
    # "auto", "self" or "unmixed": the manifest's no_source_fallback (manifest_fields.py)
    no_source_fallback: str = "auto"

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}", "use fp32, fp16 or int8")
        if self.embeddings not in EMBEDDINGS:
            raise UserError(f"unknown embeddings {self.embeddings!r}", "use fp32 or int8")
        if self.embeddings == "int8" and self.precision == "fp16":
            raise UserError(
                "--embeddings int8 with --precision fp16",
                "fp16 graphs keep fp16 embeddings; use int8 embeddings with fp32 or int8",
            )
        if self.no_source_fallback not in ("auto", *NO_SOURCE_FALLBACKS):
            raise UserError(
                f"unknown no-source fallback {self.no_source_fallback!r}",
                f"use auto or one of {', '.join(NO_SOURCE_FALLBACKS)}",
            )
        if self.weights not in WEIGHTS:
            raise UserError(f"unknown weights {self.weights!r}", "use fp32 or int8")
        if self.weights == "int8" and self.precision != "fp32":
            raise UserError(
                f"--weights int8 with --precision {self.precision}",
                "int8-stored weights are for the fp32 graph; --precision int8 already "
                "quantises the MatMuls",
            )
        for corpus in self.vocab_corpus:
            if not corpus.is_file():
                raise UserError(f"--vocab-corpus {corpus} does not exist", "pass a JSONL/text file")
        if not 14 <= self.opset <= 23:
            raise UserError(
                f"--opset {self.opset} is not supported", "use an opset between 14 and 23"
            )
        if self.verify_data is not None and not self.verify_data.is_file():
            raise UserError(f"--verify-data {self.verify_data} does not exist", "pass a JSONL file")
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a directory", "choose another path")
        if out.is_dir() and any(out.iterdir()) and not self.force:
            raise UserError(
                f"--out {out} is not empty", "pass a new directory, or --force to replace it"
            )
