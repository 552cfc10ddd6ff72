"""What every bench result names about its host, and the results-file merge they share.

A ratio measured on one CPU does not transfer to another (VNNI, AVX-512, core count), so each
results file names the CPU model. Several benches write parts of one results file
(results/export.json: bench/export.py's speed figures, bench/bundle_size.py's size options), so
each updates its own keys and keeps the others'.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector-instruction flags that decide onnxruntime's int8 and fp32 kernels."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    return []


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def host_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        # other work on the host distorts every figure; recorded so a reader can tell
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def merge_results(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Update ``path``'s JSON object with ``results`` (other keys kept) and write it."""
    current: dict[str, Any] = {}
    if path.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            loaded = json.loads(path.read_text())
            current = loaded if isinstance(loaded, dict) else {}
    current.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, default=str) + "\n")
    return current
