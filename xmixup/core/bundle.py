"""The bundle format: manifest schema, checksums, writer, verifier and loader.

A bundle directory is the only artefact the service reads::

    manifest.json   this module's ``Manifest`` (format version, task, labels, files + sha256, ...)
    model.onnx      the paired-input graph (``model.onnx.data`` beside it for > 2 GB models)
    tokenizer.json  the checkpoint's fast tokenizer, verbatim

This module is shared by the exporter, ``xmixup verify-bundle`` and the service, so it must stay
torch-free: it imports numpy-free stdlib + pydantic at module level and onnxruntime only inside
``Bundle.create_session`` (the verifier and ``xmixup --help`` never pay for it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xmixup import __version__ as XMIXUP_VERSION
from xmixup.core.vocab import INPUT_NAMES, TASK_OUTPUTS, TASKS
from xmixup.errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only; onnxruntime is imported lazily
    import onnxruntime

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
# 1 MiB: large enough that hashing a 470 MB model is I/O bound, small enough to never spike RSS.
_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Errors: one type per way a bundle can be wrong, so callers (service registry, CLI, tests) can
# react to the kind without parsing messages. All are UserErrors: the CLI prints them, exit 2.
# --------------------------------------------------------------------------------------------
class BundleError(UserError):
    """A bundle directory that cannot be used. ``bundle_dir`` names it; ``subject`` the culprit."""

    def __init__(
        self, message: str, hint: str | None = None, *, bundle_dir: Path, subject: str
    ) -> None:
        super().__init__(message, hint)
        self.bundle_dir = Path(bundle_dir)
        self.subject = subject


class BundleFileMissing(BundleError):
    def __init__(self, bundle_dir: Path, filename: str) -> None:
        super().__init__(
            f"bundle {bundle_dir}: file {filename!r} is missing",
            "re-export the bundle (xmixup export) or copy the whole directory again",
            bundle_dir=bundle_dir,
            subject=filename,
        )


class ChecksumMismatch(BundleError):
    def __init__(self, bundle_dir: Path, filename: str, what: str, expected: Any, got: Any) -> None:
        super().__init__(
            f"bundle {bundle_dir}: file {filename!r} does not match the manifest "
            f"({what} expected {expected}, got {got})",
            "the file is corrupt or was modified after export; re-export or re-copy the bundle",
            bundle_dir=bundle_dir,
            subject=filename,
        )


class UnsupportedFormatVersion(BundleError):
    def __init__(self, bundle_dir: Path, version: Any) -> None:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
        super().__init__(
            f"bundle {bundle_dir}: {MANIFEST_NAME} field 'format_version' is {version!r}; "
            f"this xmixup {XMIXUP_VERSION} reads format version(s) {supported}",
            "upgrade xmixup to read newer bundles, or re-export the model with this version",
            bundle_dir=bundle_dir,
            subject="format_version",
        )


class UnknownTask(BundleError):
    def __init__(self, bundle_dir: Path, task: Any) -> None:
        super().__init__(
            f"bundle {bundle_dir}: {MANIFEST_NAME} field 'task' is {task!r}; "
            f"known tasks: {', '.join(TASKS)}",
            "the bundle was made by a different product or a newer xmixup",
            bundle_dir=bundle_dir,
            subject="task",
        )


class InvalidManifest(BundleError):
    def __init__(self, bundle_dir: Path, field: str, problem: str) -> None:
        super().__init__(
            f"bundle {bundle_dir}: {MANIFEST_NAME} field {field!r}: {problem}",
            "the manifest was edited by hand or written by another tool; re-export the bundle",
            bundle_dir=bundle_dir,
            subject=field,
        )


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------
class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Manifest(BaseModel):
    """``manifest.json``. Unknown keys are refused (a typo must not pass silently) except in the
    free-form ``parity``/``metrics``/``export`` dicts, which carry figures, not contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1)
    task: Literal["classify", "tag", "qa"]
    labels: list[str]
    tag_scheme: Literal["BIO"] | None = None
    pair_input: bool = False
    method: str = "xmixup"
    backbone: str
    mixup_layer: int = Field(ge=0)
    lambda0: float
    max_length: int = Field(gt=0)
    doc_stride: int | None = Field(default=None, gt=0)
    max_query_length: int | None = Field(default=None, gt=0)
    max_answer_length: int | None = Field(default=None, gt=0)
    opset: int = Field(gt=0)
    precision: Literal["fp32", "fp16", "int8"]
    inputs: list[str]
    outputs: list[str]
    files: dict[str, FileEntry]
    parity: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    xmixup_version: str = XMIXUP_VERSION
    created_at: str = ""

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in INPUT_NAMES]
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; allowed: {list(INPUT_NAMES)}")
        if not value or len(set(value)) != len(value):
            raise ValueError("must list each graph input once, at least one")
        return value

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, value: dict[str, FileEntry]) -> dict[str, FileEntry]:
        # A manifest must not be able to point the loader outside its own directory.
        for name in value:
            if not name or Path(name).name != name or name in (".", "..", MANIFEST_NAME):
                raise ValueError(f"{name!r} is not a plain file name inside the bundle")
        for required in (MODEL_NAME, TOKENIZER_NAME):
            if required not in value:
                raise ValueError(f"must list {required!r}")
        return value

    @model_validator(mode="after")
    def _task_consistency(self) -> Manifest:
        missing = [o for o in TASK_OUTPUTS[self.task] if o not in self.outputs]
        if missing:
            raise ValueError(f"outputs: task {self.task!r} needs outputs {missing}")
        if self.task in ("classify", "tag") and not self.labels:
            raise ValueError(f"labels: task {self.task!r} needs at least one label")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: duplicate label names")
        if self.tag_scheme is not None and self.task != "tag":
            raise ValueError("tag_scheme: only a 'tag' bundle has a tag scheme")
        if self.task == "qa":
            for field in ("doc_stride", "max_query_length", "max_answer_length"):
                if getattr(self, field) is None:
                    raise ValueError(f"{field}: required for task 'qa'")
        # A stream is fed as ids + mask together; which streams depends on the method
        # (x-mixup: both; translate-train/zero-shot: target; translate-test: source).
        for stream in ("target", "source"):
            if (f"{stream}_input_ids" in self.inputs) != (
                f"{stream}_attention_mask" in self.inputs
            ):
                raise ValueError(f"inputs: {stream}_input_ids and _attention_mask come together")
        return self

    @property
    def uses_source(self) -> bool:
        """Whether the graph takes a source stream (translate-train / zero-shot do not)."""
        return "source_input_ids" in self.inputs

    @property
    def uses_target(self) -> bool:
        """Whether the graph takes a target stream (translate-test reads the source only)."""
        return "target_input_ids" in self.inputs


# --------------------------------------------------------------------------------------------
# Checksums, writer, verifier
# --------------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed in 1 MiB chunks (models reach GBs; never read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(bundle_dir: str | Path, manifest_fields: Mapping[str, Any]) -> Manifest:
    """Validate ``manifest_fields``, checksum the bundle's files and write ``manifest.json``.

    ``manifest_fields["files"]`` may be an iterable of file names to checksum; when absent every
    regular file in ``bundle_dir`` except the manifest is listed. ``format_version``,
    ``xmixup_version`` and ``created_at`` are filled in when absent. The manifest is written
    last and atomically, so a directory with a manifest is a complete bundle.
    """
    bundle_dir = Path(bundle_dir)
    fields = dict(manifest_fields)
    names: Iterable[str] = fields.pop("files", None) or sorted(
        p.name for p in bundle_dir.iterdir() if p.is_file() and p.name != MANIFEST_NAME
    )
    if isinstance(names, Mapping):  # tolerate a previous manifest's files dict: recompute
        names = list(names)
    files: dict[str, dict[str, Any]] = {}
    for name in names:
        path = bundle_dir / name
        if not path.is_file():
            raise BundleFileMissing(bundle_dir, name)
        files[name] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    fields["files"] = files
    fields.setdefault("format_version", FORMAT_VERSION)
    fields.setdefault("xmixup_version", XMIXUP_VERSION)
    fields.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest = _validate(bundle_dir, fields)
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=bundle_dir, prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, bundle_dir / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Parse and validate ``manifest.json`` without touching the other files."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(
            f"bundle {bundle_dir}: not a directory",
            "pass the directory written by `xmixup export --out DIR`",
            bundle_dir=bundle_dir,
            subject=str(bundle_dir),
        )
    path = bundle_dir / MANIFEST_NAME
    if not path.is_file():
        raise BundleFileMissing(bundle_dir, MANIFEST_NAME)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(bundle_dir, "<file>", f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidManifest(bundle_dir, "<file>", "must be a JSON object")
    return _validate(bundle_dir, raw)


def _validate(bundle_dir: Path, raw: dict[str, Any]) -> Manifest:
    # Version and task first: a newer format may add fields, and "unknown field X" would hide
    # the real reason (this reader is too old).
    version = raw.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        raise UnsupportedFormatVersion(bundle_dir, version)
    if raw.get("task") not in TASKS:
        raise UnknownTask(bundle_dir, raw.get("task"))
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "<manifest>"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<manifest>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidManifest(bundle_dir, loc, problems) from None


def verify_bundle(bundle_dir: str | Path) -> Manifest:
    """Check the manifest and every listed file (presence, size, sha256). Returns the manifest.

    Sizes are compared before hashing, so a truncated copy fails fast without reading GBs.
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    for name, entry in manifest.files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleFileMissing(bundle_dir, name)
        size = path.stat().st_size
        if size != entry.size:
            raise ChecksumMismatch(bundle_dir, name, "size", entry.size, size)
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise ChecksumMismatch(bundle_dir, name, "sha256", entry.sha256[:16], digest[:16])
    return manifest


# --------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------
class BundleSession(NamedTuple):
    """An onnxruntime session and the execution provider it really runs on."""

    session: onnxruntime.InferenceSession
    provider: str


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest and file paths."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_NAME

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_NAME

    def create_session(
        self, device: str = "cpu", intra_op_threads: int | None = None, *, spin: bool = True
    ) -> BundleSession:
        """Open the graph with onnxruntime on ``device`` ("cpu" or "cuda").

        CUDA is used when asked for and present; otherwise the CPU, with a warning (a GPU
        container that lost its GPU should still answer, loudly). The session's inputs and
        outputs are checked against the manifest so a mismatched graph fails here, not on the
        first request.
        """
        if device not in ("cpu", "cuda"):
            raise UserError(f"device must be 'cpu' or 'cuda', not {device!r}", "use cpu or cuda")
        import onnxruntime as ort  # lazy: keeps `import xmixup.core.bundle` light

        options = ort.SessionOptions()
        # The exporter already ran the transformer fusions offline; ENABLE_ALL adds the
        # hardware-specific layout/kernel rewrites that can only happen on the serving host.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                logger.warning(
                    "bundle %s: CUDA requested but onnxruntime has no CUDAExecutionProvider "
                    "(install onnxruntime-gpu); running on CPU",
                    self.path,
                )
        try:
            session = ort.InferenceSession(
                str(self.model_path), sess_options=options, providers=providers
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; surface as ours
            raise InvalidManifest(
                self.path, MODEL_NAME, f"onnxruntime cannot load the graph: {exc}"
            ) from exc
        used = session.get_providers()[0]
        if device == "cuda" and used != "CUDAExecutionProvider":
            # The CUDA EP can be listed yet fail to initialise (driver/cuDNN mismatch).
            logger.warning("bundle %s: CUDA provider failed to initialise; on %s", self.path, used)
        if self.manifest.precision == "fp16" and used == "CPUExecutionProvider":
            logger.warning("bundle %s: an fp16 bundle on CPU is slow; export fp32/int8", self.path)
        graph_inputs = [i.name for i in session.get_inputs()]
        if sorted(graph_inputs) != sorted(self.manifest.inputs):
            raise InvalidManifest(
                self.path,
                "inputs",
                f"manifest lists {self.manifest.inputs}, graph takes {graph_inputs}",
            )
        graph_outputs = {o.name for o in session.get_outputs()}
        missing = [o for o in self.manifest.outputs if o not in graph_outputs]
        if missing:
            raise InvalidManifest(self.path, "outputs", f"graph lacks outputs {missing}")
        logger.info(
            "bundle %s (%s, %s) on %s",
            self.manifest.name,
            self.manifest.task,
            self.manifest.precision,
            used,
        )
        return BundleSession(session, used)


def load_bundle(bundle_dir: str | Path) -> Bundle:
    """Verify ``bundle_dir`` (manifest + checksums) and return it; raises a ``BundleError``."""
    bundle_dir = Path(bundle_dir)
    return Bundle(path=bundle_dir, manifest=verify_bundle(bundle_dir))
