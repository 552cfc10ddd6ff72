"""Stamps and safe writes: a stage is reused when the hash of its inputs matches and its outputs
exist; every output is written aside and renamed into place, so Ctrl-C never leaves half of one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_digest(path: Path) -> str:
    """Content hash of small files, size+mtime of large ones (weights): cheap and reliable."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(str(p.relative_to(path)).encode())
        if st.st_size <= 4 << 20:
            h.update(file_digest(p).encode())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def stage_key(**inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".partial")
    part.write_text(text)
    os.replace(part, path)


def install_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place, replacing an older one without a gap in between."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)
