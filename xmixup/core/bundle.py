"""Bundles on disk: checksums, the manifest writer, reader and verifier, and the loader.

A bundle directory is the only artefact the service reads::

    manifest.json   ``xmixup.core.manifest.Manifest`` (format version, task, labels, pad id,
                    special tokens, files + sha256, ...)
    model.onnx      the paired-input graph (``model.onnx.data`` beside it for > 2 GB models)
    tokenizer.json  the checkpoint's fast tokenizer, verbatim
    README.md       the model card (bundles exported before it have none)

Shared by the exporter, ``xmixup verify-bundle``, evaluation and the service, so it stays light:
stdlib + pydantic at module level; ``tokenizers`` only when special tokens must be read from a
tokenizer file. Running the graph is ``xmixup.core.runner``'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xmixup import __version__ as XMIXUP_VERSION
from xmixup.core.bundle_errors import (
    BundleError,
    BundleFileMissing,
    ChecksumMismatch,
    InvalidManifest,
    UnknownTask,
    UnreadableTokenizer,
    UnsupportedFormatVersion,
)
from xmixup.core.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    MODEL_NAME,
    SUPPORTED_FORMAT_VERSIONS,
    TOKENIZER_NAME,
    Manifest,
)
from xmixup.core.special_tokens import SpecialTokens, read_special_tokens
from xmixup.core.vocab import TASKS
from xmixup.errors import UserError

VERSION_CHARS = 12  # 48 bits of the manifest's sha256: plenty to tell a model's versions apart
# 1 MiB: large enough that hashing a 470 MB model is I/O bound, small enough to never spike RSS.
_HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed in 1 MiB chunks (models reach GBs; never read whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_version(bundle_dir: str | Path) -> str:
    """A bundle's version: the first 12 hex digits of its manifest's sha256 (``sha256sum
    manifest.json``). The manifest lists every file's sha256, so any changed file (re-exported
    or re-quantised) changes it; the service reports it as ``x-model-version``."""
    return file_sha256(Path(bundle_dir) / MANIFEST_NAME)[:VERSION_CHARS]


def tokenizer_special_tokens(bundle_dir: Path) -> SpecialTokens:
    """The special tokens of the bundle's ``tokenizer.json`` (the rule of
    ``xmixup.core.special_tokens``); what the writer records and a version 1 bundle is read with."""
    path = bundle_dir / TOKENIZER_NAME
    if not path.is_file():
        raise BundleFileMissing(bundle_dir, TOKENIZER_NAME)
    try:
        return read_special_tokens(path)
    except UserError as exc:
        raise UnreadableTokenizer(bundle_dir, TOKENIZER_NAME, exc.message) from None


def write_manifest(bundle_dir: str | Path, manifest_fields: Mapping[str, Any]) -> Manifest:
    """Validate ``manifest_fields``, checksum the bundle's files and write ``manifest.json``.

    ``manifest_fields["files"]`` may be an iterable of file names to checksum; when absent every
    regular file in ``bundle_dir`` except the manifest is listed. ``format_version``,
    ``xmixup_version`` and ``created_at`` are filled in when absent, and for the current format
    ``pad_id`` and ``special_tokens`` from the bundle's ``tokenizer.json``. The manifest is
    written last and atomically, so a directory with a manifest is a complete bundle.
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
    if fields["format_version"] >= 2 and "special_tokens" not in fields:
        special = tokenizer_special_tokens(bundle_dir)
        fields["special_tokens"] = special.model_dump()
        fields.setdefault("pad_id", special.pad_id)
    if fields["format_version"] >= 3 and "vocabulary" not in fields:
        fields["vocabulary"] = _untrimmed_vocabulary(bundle_dir, fields.get("precision"))
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


def _untrimmed_vocabulary(bundle_dir: Path, precision: Any) -> dict[str, Any]:
    """A writer that says nothing about the vocabulary wrote the tokenizer's whole, with the
    embedding table in the graph's own precision (int8 graphs quantise only the MatMuls)."""
    from tokenizers import Tokenizer

    try:
        size = Tokenizer.from_file(str(bundle_dir / TOKENIZER_NAME)).get_vocab_size()
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise UnreadableTokenizer(bundle_dir, TOKENIZER_NAME, str(exc)) from None
    embedding = "fp16" if precision == "fp16" else "fp32"
    return {"size": size, "source_size": size, "embedding_precision": embedding}


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

    @property
    def card_path(self) -> Path | None:
        """The model card (``README.md``) when the manifest lists one (checksummed)."""
        return self.path / MODEL_CARD_NAME if MODEL_CARD_NAME in self.manifest.files else None

    @cached_property
    def special_tokens(self) -> SpecialTokens:
        """The manifest's (format version 2), else read from ``tokenizer.json`` (version 1)."""
        if self.manifest.special_tokens is not None:
            return self.manifest.special_tokens
        return tokenizer_special_tokens(self.path)

    @property
    def pad_id(self) -> int:
        """The id the service and evaluation pad rows with."""
        return self.special_tokens.pad_id


def load_bundle(bundle_dir: str | Path) -> Bundle:
    """Verify ``bundle_dir`` (manifest + checksums) and return it; raises a ``BundleError``."""
    bundle_dir = Path(bundle_dir)
    return Bundle(path=bundle_dir, manifest=verify_bundle(bundle_dir))
