"""xmixup: cross-lingual NLU with X-Mixup — train, export to ONNX, serve over HTTP.

``from xmixup import Predictor`` is the Python API (``xmixup/predictor.py``); it is imported on
first use, so ``import xmixup`` (and the ``xmixup`` command) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__"]

if TYPE_CHECKING:
    from xmixup.predictor import Predictor


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from xmixup.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'xmixup' has no attribute {name!r}")
