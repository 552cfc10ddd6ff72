"""Training, evaluation, export verification and the service call the same featuriser and
decoders: the functions they use are the core's objects, not copies."""

from __future__ import annotations

import pytest

import xmixup.core.decode as decode
import xmixup.core.featurize as featurize
import xmixup.core.words as words


def test_training_and_service_share_the_featuriser() -> None:
    pytest.importorskip("fastapi")
    import service.registry as registry
    import service.routes as routes
    import training.features as features
    import xmixup.core.preprocess as pre
    import xmixup.core.schemas as schemas

    assert features.TextEncoder is featurize.TextEncoder is registry.TextEncoder
    assert features.word_tokens is featurize.word_tokens
    assert pre.word_tokens is featurize.word_tokens
    assert features.context_offsets is featurize.context_offsets
    assert pre.context_offsets is featurize.context_offsets
    assert pre.split_words is words.split_words and pre.join_words is words.join_words
    assert schemas.WORD_SPLITTING_RULE is words.WORD_SPLITTING_RULE
    # The service featurises through the core's row builders (as the Predictor does).
    assert routes.classify_rows is pre.classify_rows and routes.qa_rows is pre.qa_rows
    assert routes.tag_rows is pre.tag_rows


def test_training_evaluation_export_and_service_share_the_decoders() -> None:
    pytest.importorskip("fastapi")
    import model_export.parity as parity
    import service.routes as routes
    import training.evaluate as evaluate
    import training.metrics as metrics
    import xmixup.core.postprocess as post

    assert evaluate.best_spans is post.best_spans is decode.best_spans
    assert evaluate.word_tags is post.word_tags is decode.word_tags
    assert post.bio_entities is decode.bio_entities
    assert metrics.bio_spans is decode.bio_spans
    assert parity.token_spans is decode.token_spans
    assert routes.classify_results is post.classify_results and routes.qa_results is post.qa_results
    assert routes.tag_results is post.tag_results


def test_training_featurizer_runs_on_the_core_encoder(tmp_path) -> None:
    """The training adapter's ids are the core encoder's ids (no second tokenisation)."""
    from tests.tiny import make_tiny_tokenizer
    from training.features import Featurizer

    tokenizer = make_tiny_tokenizer(tmp_path)
    rec = {"id": "a", "lang": "de", "target": "Die Katze", "source": "The cat", "label": "x"}
    featurizer = Featurizer("classify", tokenizer, labels=["x"], max_length=8)
    assert isinstance(featurizer.encoder, featurize.TextEncoder)
    feat = featurizer([rec])[0]
    expected = featurizer.encoder.encode_texts(["Die Katze", "The cat"], [True, True])[0]
    assert feat["target_input_ids"] == expected[0].ids
    assert feat["source_input_ids"] == expected[1].ids
