"""The export's checks: every graph variant against PyTorch on the same cases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_export.parity import Feeds, ParityReport, run_parity
from model_export.trace import torch_runner
from xmixup.core.runner import Runner

if TYPE_CHECKING:
    from training.modeling import XMixupModel


@dataclass
class LoadedModel:
    """The checkpoint's model and what the steps need to know about its graph."""

    model: XMixupModel
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    external: bool  # weights too large for one protobuf: model.onnx.data

    @property
    def encoder_config(self) -> Any:
        return self.model.encoder.config


# ----------------------------------------------------------------------------- runners
def ort_runner(
    path: Path, outputs: Sequence[str], *, inputs: Sequence[str], threads: int | None = None
) -> Any:
    return Runner(path, inputs, outputs, intra_op_threads=threads).run


class Verifier:
    """Every graph variant against PyTorch on the same cases (generated + `--verify-data`);
    each case's PyTorch reference is computed once for all variants."""

    def __init__(self, loaded: LoadedModel, cases: list[tuple[str, Feeds]]) -> None:
        self.task = loaded.model.config.task
        self.max_answer_length = loaded.model.config.max_answer_length
        self.inputs = loaded.inputs
        self.outputs = loaded.outputs
        self.cases = cases
        self._reference = torch_runner(loaded.model, loaded.inputs, loaded.outputs)
        # keyed by id(): the feeds object is kept alive beside its outputs, so an id is never
        # reused by another (remapped, temporary) feeds dict while the cache holds it
        self._cached: dict[int, tuple[Feeds, dict[str, np.ndarray]]] = {}

    def reference(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """PyTorch's outputs on ``feeds`` (cached per feeds object)."""
        key = id(feeds)
        if key not in self._cached:
            self._cached[key] = (feeds, self._reference(feeds))
        return self._cached[key][1]

    def report(self, path: Path) -> ParityReport:
        return run_parity(
            self.task,
            self.cases,
            self.reference,
            ort_runner(path, self.outputs, inputs=self.inputs),
            max_answer_length=self.max_answer_length,
        )
