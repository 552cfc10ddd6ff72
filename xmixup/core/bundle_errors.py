"""Errors: one type per way a bundle can be wrong, so callers (service registry, CLI, tests) can
react to the kind without parsing messages. All are UserErrors: the CLI prints them, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmixup import __version__ as XMIXUP_VERSION
from xmixup.core.manifest import MANIFEST_NAME, SUPPORTED_FORMAT_VERSIONS
from xmixup.core.vocab import TASKS
from xmixup.errors import UserError


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


class UnreadableTokenizer(BundleError):
    def __init__(self, bundle_dir: Path, filename: str, problem: str) -> None:
        super().__init__(
            f"bundle {bundle_dir}: file {filename!r} is not a readable tokenizer ({problem})",
            "copy the checkpoint's tokenizer.json into the bundle unchanged, or re-export",
            bundle_dir=bundle_dir,
            subject=filename,
        )
