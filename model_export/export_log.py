"""The export's typed log: one record per pipeline step, serialised as manifest.export.

Steps fill their own record; later steps read the typed fields (never the serialised dict).
`ExportLog.as_dict()` keeps the manifest.export keys that bundles have always carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model_export.optimize import OptimizeReport
from model_export.parity import ParityReport
from model_export.quantize import QuantizeReport


@dataclass
class VerifyDataRecord:
    """Real items checked besides the generated cases (`--verify-data`)."""

    path: str
    batches: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "batches": self.batches}


@dataclass
class FusionAttempt:
    """One optimizer run and the worst |Δ| of its graph against PyTorch."""

    report: OptimizeReport
    max_abs: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), "max_abs": self.max_abs}


@dataclass
class OptimizeRecord:
    """The fusion attempts in order; the last one is the graph kept when `used_fused`."""

    attempts: list[FusionAttempt] = field(default_factory=list)
    used_fused: bool = False

    @property
    def embed_layer_norm(self) -> bool:
        """Whether the kept fused graph has the EmbedLayerNormalization fusion."""
        return bool(self.attempts[-1].report.options["embed_layer_norm"])

    def as_dict(self) -> dict[str, Any]:
        return {"attempts": [a.as_dict() for a in self.attempts], "used_fused": self.used_fused}


@dataclass
class ExportLog:
    """What each step did; `exporter` names the torch.onnx exporter (always TorchScript)."""

    opset: int
    external_data: bool
    exporter: str = "legacy"
    verify_data: VerifyDataRecord | None = None
    matmul_nodes: int = 0
    optimize: OptimizeRecord | None = None
    fp32_parity: ParityReport | None = None
    quantize: QuantizeReport | None = None
    seconds: float = 0.0
    source_stream: dict[str, Any] = field(default_factory=dict)
    vocabulary: dict[str, Any] | None = None  # the trimming plan (model_export.vocab_trim)
    embeddings: dict[str, Any] | None = None  # int8 embedding rows (model_export.compact)
    weights: dict[str, Any] | None = None  # int8-stored matrix weights (model_export.compact)
    dedupe: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exporter": self.exporter,
            "opset": self.opset,
            "external_data": self.external_data,
        }
        if self.verify_data is not None:
            out["verify_data"] = self.verify_data.as_dict()
        out["matmul_nodes"] = self.matmul_nodes
        if self.optimize is not None:
            out["optimize"] = self.optimize.as_dict()
        if self.fp32_parity is not None:
            out["fp32_parity"] = self.fp32_parity.as_dict()
        if self.quantize is not None:
            out["quantize"] = self.quantize.as_dict()
        out["seconds"] = self.seconds
        out["source_stream"] = self.source_stream
        for name in ("vocabulary", "embeddings", "weights", "dedupe"):  # the size step's records
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out
