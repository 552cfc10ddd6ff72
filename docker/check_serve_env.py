"""Check a freshly installed serving environment (run by install-serve.sh and the tests).

    python check_serve_env.py cpu|gpu

Fails (exit 1, one line per problem) unless:
- every requirement of xmixup's `[serve]` extra (and `[gpu]` for the GPU variant) is met by
  an installed distribution, `onnxruntime` being met by `onnxruntime-gpu` in the GPU variant;
- the CPU `onnxruntime` wheel is absent from the GPU variant (both ship the same module);
- no torch / transformers / training-only distribution is installed;
- `import service.app` works and leaves no torch / transformers module imported.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from importlib import metadata

from packaging.requirements import Requirement

FORBIDDEN_DISTS = ("torch", "transformers", "torchvision", "datasets", "accelerate")
FORBIDDEN_MODULES = ("torch", "transformers", "training")


def _unmet(req: Requirement, extras: set[str], variant: str, depth: int = 0) -> list[str]:
    """Why `req` (wanted under `extras`) is not met by the installed distributions, if it is not."""
    if req.marker and not any(req.marker.evaluate({"extra": extra}) for extra in extras | {""}):
        return []  # another extra's requirement ([train], [dev], ...) or another platform's
    name = req.name
    if variant == "gpu" and name == "onnxruntime":
        name = "onnxruntime-gpu"  # same module, CUDA build
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return [f"missing {name} (required: {req})"]
    if not req.specifier.contains(version, prereleases=True):
        return [f"{name}=={version} does not satisfy {req}"]
    found: list[str] = []
    if req.extras and depth < 2:  # e.g. uvicorn[standard]: pip check does not look at extras
        for raw in metadata.requires(name) or []:
            found += _unmet(Requirement(raw), set(req.extras), variant, depth + 1)
    return found


def problems(variant: str) -> list[str]:
    extras = {"serve"} | ({"gpu"} if variant == "gpu" else set())
    found: list[str] = []
    for raw in metadata.requires("xmixup") or []:
        found += _unmet(Requirement(raw), extras, variant)
    if variant == "gpu":
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(
                f"onnxruntime=={metadata.version('onnxruntime')} (CPU) beside the GPU build"
            )
    for dist in FORBIDDEN_DISTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{dist}=={metadata.version(dist)} installed in a serving environment")
    try:
        importlib.import_module("service.app")
    except Exception as exc:  # report any import failure, not just ImportError
        found.append(f"import service.app failed: {type(exc).__name__}: {exc}")
    leaked = sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN_MODULES))
    if leaked:
        found.append(f"import service.app imported {leaked}")
    return found


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in {"cpu", "gpu"}:
        print("usage: check_serve_env.py cpu|gpu", file=sys.stderr)
        return 2
    found = problems(sys.argv[1])
    for line in found:
        print(f"check_serve_env: {line}", file=sys.stderr)
    if not found:
        print(f"check_serve_env: {sys.argv[1]} serving environment OK")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
