"""`xmixup export`'s options and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model_export.quantize import QuantizeOptions
from model_export.trace import DEFAULT_OPSET
from xmixup.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")


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

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}", "use fp32, fp16 or int8")
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
