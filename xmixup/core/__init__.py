"""The torch-free core: the rules training, export verification and serving share, written once.

Nothing here may import torch, transformers, ``training``, ``model_export`` or ``service``
(enforced by import-linter in ``make lint``).
"""
