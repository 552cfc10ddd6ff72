"""xmixup: cross-lingual NLU with X-Mixup — train, export to ONNX, serve over HTTP."""

__version__ = "0.1.0"
