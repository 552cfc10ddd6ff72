"""A bundle's version: ``sha256sum manifest.json`` cut to 12 hex digits; it follows the files."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.core.toy_bundle import make_toy_bundle, toy_fields
from xmixup.core.bundle import bundle_version, write_manifest


def test_version_is_the_manifest_digest_and_changes_with_any_file(tmp_path: Path) -> None:
    bundle = make_toy_bundle(tmp_path / "b")
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert bundle_version(bundle) == digest[:12]

    before = bundle_version(bundle)
    with open(bundle / "tokenizer.json", "a", encoding="utf-8") as fh:
        fh.write("\n")  # same tokenizer, other bytes: a new export, a new version
    write_manifest(bundle, {**toy_fields(), "created_at": "x"})
    after = bundle_version(bundle)
    write_manifest(bundle, {**toy_fields(), "created_at": "x"})
    assert after != before and bundle_version(bundle) == after  # deterministic per content
