"""Data layer: JSONL schemas and validation, converters from public formats, splits, source noise.

Submodules import their heavy dependencies (datasets) lazily; see README.md here.
"""
