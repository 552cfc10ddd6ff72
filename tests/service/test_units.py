"""Pure units: word splitting, BIO decoding, batch cutting, QA windows, settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.batcher import Batcher, _Item
from service.metrics import Metrics
from service.settings import Settings
from xmixup.core.decode import bio_entities
from xmixup.core.featurize import TextEncoder
from xmixup.core.rows import Row, pad_rows
from xmixup.core.schemas import TaggedToken
from xmixup.core.words import split_words


def test_split_words_rule() -> None:
    text = "Hi, Anna's  café (2024)!"
    words = split_words(text)
    assert [w for w, _, _ in words] == ["Hi", ",", "Anna", "'", "s", "café", "(", "2024", ")", "!"]
    assert all(text[s:e] == w for w, s, e in words)
    # Scripts without spaces: ICU's dictionary-based word breaker.
    assert [w for w, _, _ in split_words("我爱北京 Berlin")] == ["我", "爱", "北京", "Berlin"]
    assert [w for w, _, _ in split_words("ab漢字cd")] == ["ab", "漢字", "cd"]
    assert [w for w, _, _ in split_words("고양이가 매트")] == [
        "고양이가",
        "매트",
    ]  # Hangul has spaces
    assert split_words("  \n ") == []
    thai = "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"
    assert [w for w, _, _ in split_words(thai)] == [
        "กรุงเทพมหานคร",
        "เป็น",
        "เมือง",
        "หลวง",
        "ของ",
        "ประเทศไทย",
    ]
    for text in (thai, "ok ສະບາຍດີ ປະເທດລາວ", "北京是中华人民共和国的首都，人口超过两千万。"):
        words = split_words(text)
        assert all(text[s:e] == w for w, s, e in words)
        assert "".join(w for w, _, _ in words) == "".join(text.split())


def _tokens(tags: list[str | None]) -> list[TaggedToken]:
    out, pos = [], 0
    for i, tag in enumerate(tags):
        out.append(TaggedToken(text=f"w{i}", start=pos, end=pos + 2, tag=tag, score=0.5 + i / 100))
        pos += 3
    return out


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["I-PER", "I-PER", "B-PER", "I-LOC"], [("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4)]),
        (["B-PER", None, "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
        (["O", "O"], []),
        (["B-LOC", "I-PER"], [("LOC", 0, 1), ("PER", 1, 2)]),
    ],
)
def test_bio_entities(tags: list[str | None], spans: list[tuple[str, int, int]]) -> None:
    tokens = _tokens(tags)
    text = " ".join(t.text for t in tokens)
    ents = bio_entities(tokens, text)
    assert [(e.label, e.token_start, e.token_end) for e in ents] == spans
    for e in ents:
        assert text[e.start : e.end] == e.text
        assert e.score == pytest.approx(
            np.mean([tokens[k].score for k in range(e.token_start, e.token_end)])
        )


def test_pad_rows_and_cut_respect_token_budget() -> None:
    rows = [
        Row(np.arange(n, dtype=np.int64) + 5, np.arange(2, dtype=np.int64) + 5)
        for n in (3, 9, 4, 8)
    ]
    feeds, real, padded = pad_rows(rows, pad_id=1)
    assert feeds["target_input_ids"].shape == (4, 9) and feeds["source_input_ids"].shape == (4, 2)
    assert feeds["target_attention_mask"].sum() == 24 and real == 24 + 8 and padded == 36 + 8
    assert feeds["target_input_ids"][0, 3:].tolist() == [1] * 6

    settings = Settings(max_batch_size=3, max_batch_tokens=24, max_queue=8)

    async def cut() -> list[list[int]]:
        batcher = Batcher("m", engine=None, pad_id=1, settings=settings, metrics=Metrics())  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        items = [_Item(r, loop.create_future(), 0.0, 1e18) for r in rows + rows[:2]]
        return [[len(it.row.target_ids) for it in b] for b in batcher._cut(items)]

    batches = asyncio.run(cut())
    # sorted by length; ≤ 3 rows; padded (target + source) tokens ≤ 24 per batch
    assert batches == [[3, 3, 4], [8, 9], [9]]
    assert sorted(n for b in batches for n in b) == [3, 3, 4, 8, 9, 9]


def test_qa_windows_cover_the_whole_context(tiny_backbone: Path) -> None:
    enc = TextEncoder.from_file(
        tiny_backbone / "tokenizer.json", max_length=48, doc_stride=16, max_query_length=8
    )
    context = " ".join(["Die Katze sitzt auf der Matte und schaut aus dem Fenster."] * 8)
    windows = enc.encode_windows(["Wo sitzt die Katze?"], [context])[0]
    assert len(windows) > 3 and all(len(w.ids) <= 48 for w in windows)
    covered = set()
    for w in windows:
        for (s, e), seq in zip(w.offsets, w.sequence_ids, strict=True):
            if seq == 1:
                covered.update(range(s, e))
    assert all(i in covered for i, ch in enumerate(context) if not ch.isspace())


def test_settings_env_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMIXUP_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("XMIXUP_API_KEY", "zq-secret-42")
    monkeypatch.setenv("XMIXUP_DEFAULT_MODELS", '{"tag": "ner"}')
    s = Settings()
    assert s.max_batch_size == 7 and s.api_key is not None and s.default_models == {"tag": "ner"}
    assert "zq-secret-42" not in repr(s)  # the key never shows in logs or reprs
    with pytest.raises(ValidationError, match="blank"):
        Settings(api_key="  ")
    with pytest.raises(ValidationError, match="max_queue"):
        Settings(max_batch_size=64, max_queue=8)
    with pytest.raises(ValidationError, match="unknown task"):
        Settings(default_models={"summarize": "x"})


def test_tracing_is_a_soft_dependency() -> None:
    """With XMIXUP_OTLP_ENDPOINT set but no OpenTelemetry SDK, the app still builds (untraced)."""
    from fastapi import FastAPI

    from service.tracing import setup_tracing

    try:
        import opentelemetry.sdk  # noqa: F401

        pytest.skip("the OpenTelemetry SDK is installed here")
    except ImportError:
        pass
    assert setup_tracing(FastAPI(), Settings(otlp_endpoint="http://127.0.0.1:4318")) is False
    assert setup_tracing(FastAPI(), Settings()) is False


def test_short_qa_bundles_get_the_training_stride(tmp_path: Path) -> None:
    """max_length 128 with the default doc_stride 128: the tokenizer refuses a stride that does
    not fit; the service must cap it exactly as training did, not fail at start."""
    from tests.tiny import make_tiny_tokenizer
    from xmixup.core.featurize import effective_doc_stride

    make_tiny_tokenizer(tmp_path)
    enc = TextEncoder.from_file(
        tmp_path / "tokenizer.json", 128, doc_stride=128, max_query_length=64
    )
    assert effective_doc_stride(128, 64, 128) == 30
    assert effective_doc_stride(384, 64, 128) == 128  # long windows keep the configured stride
    context = " ".join(["the cat sat on the mat"] * 60)
    windows = enc.encode_windows(["where did the cat sit"], [context])[0]
    assert len(windows) > 1 and all(len(w.ids) <= 128 for w in windows)


@pytest.mark.parametrize("rule", ["first", "first-content"])
def test_service_and_training_read_tagged_words_on_the_same_tokens(
    tmp_path: Path, rule: str
) -> None:
    """The service's tag plan and the training featuriser pick the same token per word under
    each rule (the tiny tokenizer splits a bare "▁" off "北京" and "the")."""
    from types import SimpleNamespace

    from tests.tiny import make_tiny_tokenizer
    from training.features import Featurizer
    from xmixup.core.preprocess import tag_rows
    from xmixup.core.schemas import TagItem

    tokenizer = make_tiny_tokenizer(tmp_path)
    words = ["北京", "the", "Katzen", "schauen", "aus"]
    manifest = SimpleNamespace(uses_source=False, word_token_rule=rule)
    rt = SimpleNamespace(
        name="t", manifest=manifest, encoder=TextEncoder.from_file(tmp_path / "tokenizer.json", 64)
    )
    _, [plan] = tag_rows(rt, [TagItem(target=words)], truncate=False)  # type: ignore[arg-type]
    rec = {"id": "a", "lang": "de", "target_tokens": words, "target_tags": ["O"] * 5}
    rec |= {"source_tokens": words, "source_tags": ["O"] * 5}
    feat = Featurizer("tag", tokenizer, labels=["O", "B"], word_token=rule)([rec])[0]
    assert plan.word_index == feat["target_word_index"]
    first = [-1, 0, -1, 1, -1, 2]  # <s> ▁ 北京 ▁ the ▁ ...: "first" reads the bare pieces
    content = [-1, -1, 0, -1, 1, -1]
    assert plan.word_index[:6] == (first if rule == "first" else content)


def test_unreadable_models_dir_is_a_user_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.registry import scan
    from xmixup.errors import UserError

    def refuse(self: Path) -> None:
        raise PermissionError(13, "Permission denied")

    (tmp_path / "models").mkdir()
    monkeypatch.setattr(Path, "iterdir", refuse)  # root ignores chmod, so refuse by hand
    with pytest.raises(UserError, match=r"models.*cannot be read \(Permission denied\)"):
        scan(tmp_path / "models")
