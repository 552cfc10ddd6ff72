"""xmixup/memory.py: freed memory is reused, not faulted in again (Linux/glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates and frees a 256 MB block, then allocates it again; prints the page faults that the
# second allocation's first touch of every page cost.
_PROBE = """
import resource, sys
from xmixup.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
size = 256 * 2**20
block = bytearray(size); del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(size)
print(int(applied), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_a_freed_large_block_is_reused_without_faulting_its_pages_again() -> None:
    applied, kept = _faults("on")
    if not applied:
        pytest.skip("not glibc: keep_freed_memory is a no-op here")
    _, default = _faults("off")
    # default glibc: the block is unmapped on free and faulted in again page by page (4 KB
    # pages: ~65k faults; with transparent huge pages, fewer but still hundreds)
    assert default > 100, default
    assert kept < default / 10, (kept, default)
