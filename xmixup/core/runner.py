"""The one onnxruntime runner: the service, evaluation and export verification all run graphs here.

One place decides the session options (full graph optimisation, threads, spinning), the
execution provider (CUDA when asked for and present, else the CPU with a warning), the check of
the graph's inputs and outputs against what it must take and give, and how a batch is fed
(exactly the declared inputs, as int64). A bundle's graph is opened with
:meth:`Runner.for_bundle`, which checks it against the manifest; the exporter opens graphs that
are not a bundle yet with :class:`Runner` itself. onnxruntime is imported when a graph is opened.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xmixup.core.bundle import Bundle
from xmixup.core.bundle_errors import InvalidManifest
from xmixup.errors import UserError

logger = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


class GraphMismatch(UserError):
    """A graph onnxruntime cannot open, or whose inputs/outputs are not the declared ones.
    ``subject`` names what is wrong: the model file, ``inputs`` or ``outputs``."""

    def __init__(self, model_path: Path, subject: str, problem: str) -> None:
        super().__init__(
            f"graph {model_path}: {problem}",
            "re-export the model with this xmixup (xmixup export)",
        )
        self.subject = subject
        self.problem = problem


def _session_options(
    ort: Any, intra_op_threads: int | None, spin: bool, optimize: bool, profile_prefix: str | None
) -> Any:
    options = ort.SessionOptions()
    # The exporter already ran the transformer fusions offline; ENABLE_ALL adds the
    # hardware-specific layout/kernel rewrites that can only happen on the running host.
    # (optimize=False: none at all; the benches measure what the online passes cost at load.)
    level = "ORT_ENABLE_ALL" if optimize else "ORT_DISABLE_ALL"
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if profile_prefix is not None:  # onnxruntime's per-node profile (bench/mixup_cost.py)
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _providers(ort: Any, device: str, model_path: Path) -> list[str]:
    if device == "cuda":
        if CUDA_PROVIDER in ort.get_available_providers():
            return [CUDA_PROVIDER, CPU_PROVIDER]
        # A GPU container that lost its GPU should still answer, loudly.
        logger.warning(
            "graph %s: CUDA requested but onnxruntime has no CUDAExecutionProvider "
            "(install onnxruntime-gpu); running on CPU",
            model_path,
        )
    return [CPU_PROVIDER]


class Runner:
    """An onnxruntime session on one graph, fed exactly ``inputs`` and returning ``outputs``.

    The graph must take exactly ``inputs`` and give at least ``outputs``, checked when it is
    opened so a mismatched graph fails here, not on the first batch. On CUDA a run goes
    through I/O binding: inputs are copied host→device once and outputs land in host memory
    directly, sparing the extra output copies and per-run allocation of ``session.run``.
    """

    def __init__(
        self,
        model_path: str | Path,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        spin: bool = True,
        optimize: bool = True,
        profile_prefix: str | None = None,
    ) -> None:
        if device not in DEVICES:
            raise UserError(f"device must be 'cpu' or 'cuda', not {device!r}", "use cpu or cuda")
        import onnxruntime as ort  # lazy: importing the core stays light

        self.model_path = Path(model_path)
        self.input_names = list(inputs)
        self.output_names = list(outputs)
        try:
            self.session = ort.InferenceSession(
                str(self.model_path),
                sess_options=_session_options(
                    ort, intra_op_threads, spin, optimize, profile_prefix
                ),
                providers=_providers(ort, device, self.model_path),
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; surface as ours
            raise GraphMismatch(
                self.model_path, self.model_path.name, f"onnxruntime cannot load the graph: {exc}"
            ) from exc
        self.provider: str = self.session.get_providers()[0]
        if device == "cuda" and self.provider != CUDA_PROVIDER:
            # The CUDA EP can be listed yet fail to initialise (driver/cuDNN mismatch).
            logger.warning(
                "graph %s: CUDA provider failed to initialise; on %s",
                self.model_path,
                self.provider,
            )
        self._check_io()
        self.use_io_binding = self.provider == CUDA_PROVIDER

    def _check_io(self) -> None:
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if sorted(graph_inputs) != sorted(self.input_names):
            raise GraphMismatch(
                self.model_path,
                "inputs",
                f"declared inputs {self.input_names}, graph takes {graph_inputs}",
            )
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [o for o in self.output_names if o not in graph_outputs]
        if missing:
            raise GraphMismatch(self.model_path, "outputs", f"graph lacks outputs {missing}")

    @classmethod
    def for_bundle(
        cls,
        bundle: Bundle,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        *,
        spin: bool = True,
    ) -> Runner:
        """Open a bundle's graph on ``device``, checked against its manifest's inputs/outputs."""
        manifest = bundle.manifest
        try:
            runner = cls(
                bundle.model_path,
                manifest.inputs,
                manifest.outputs,
                device=device,
                intra_op_threads=intra_op_threads,
                spin=spin,
            )
        except GraphMismatch as exc:
            raise InvalidManifest(bundle.path, exc.subject, exc.problem) from exc
        if manifest.precision == "fp16" and runner.provider == CPU_PROVIDER:
            logger.warning(
                "bundle %s: an fp16 bundle on CPU is slow; export fp32/int8", bundle.path
            )
        logger.info(
            "model %s (%s, %s) from %s on %s%s",
            manifest.name,
            manifest.task,
            manifest.precision,
            bundle.path,
            runner.provider,
            " (I/O binding)" if runner.use_io_binding else "",
        )
        return runner

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for one batch. Only the declared inputs are fed (a graph without a
        source stream ignores the caller's source arrays); every input is ids or a mask, int64."""
        inputs = {
            name: np.ascontiguousarray(feeds[name], dtype=np.int64) for name in self.input_names
        }
        if self.use_io_binding:
            binding = self.session.io_binding()
            for name, value in inputs.items():
                binding.bind_cpu_input(name, value)
            for name in self.output_names:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            values = binding.copy_outputs_to_cpu()
        else:
            values = self.session.run(self.output_names, inputs)
        return dict(zip(self.output_names, values, strict=True))
