"""Shared fixtures: tiny random backbones, built once per test session (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import make_tiny_backbone


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer, hidden-32 BertModel directory (position ids from 0) + fast tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"), arch="bert")


@pytest.fixture(scope="session")
def tiny_xlmr_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer, hidden-32 XLMRobertaModel directory (padding-based position ids)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_xlmr"), arch="xlm-roberta")
