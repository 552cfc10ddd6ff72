"""Batch scoring: ``xmixup predict`` (streaming, resumable, multi-process) and the Ray job.

Torch-free and FastAPI-free, on ``xmixup.Predictor``; ``records.py`` is the one scoring step
both use.
"""
