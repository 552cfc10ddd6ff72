"""Tiny parallel JSONL data sets for the training / evaluation tests (written in-process)."""

from __future__ import annotations

import json
from pathlib import Path

_EN = [
    ("The cat sits on the mat.", "Die Katze sitzt auf der Matte.", "animal"),
    ("Two dogs are running across the field.", "Zwei Hunde laufen über die Wiese.", "animal"),
    (
        "I would like to book a flight to Berlin.",
        "Ich möchte einen Flug nach Berlin buchen.",
        "travel",
    ),
    ("Where is the nearest train station?", "Wo ist der nächste Bahnhof?", "travel"),
    ("The weather is very nice today.", "Das Wetter ist heute sehr schön.", "weather"),
    (
        "The river flows slowly through the old town.",
        "Der Fluss fließt langsam durch die Altstadt.",
        "weather",
    ),
]

_ZH = [
    "猫坐在垫子上。",
    "两只狗在田野上奔跑。",
    "我想订去柏林的机票。",
    "最近的火车站在哪里？",
    "今天天气很好。",
    "河水缓缓流过古城。",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def classify_rows(n_copies: int = 2) -> list[dict]:
    rows = []
    for c in range(n_copies):
        for i, (en, de, label) in enumerate(_EN):
            rows.append(
                {"id": f"de-{c}-{i}", "lang": "de", "target": de, "source": en, "label": label}
            )
            rows.append(
                {"id": f"zh-{c}-{i}", "lang": "zh", "target": _ZH[i], "source": en, "label": label}
            )
    return rows


def tag_rows(n_copies: int = 2) -> list[dict]:
    rows = []
    for c in range(n_copies):
        rows.append(
            {
                "id": f"t{c}a",
                "lang": "de",
                "target_tokens": ["Angela", "Merkel", "besuchte", "Paris", "."],
                "target_tags": ["B-PER", "I-PER", "O", "B-LOC", "O"],
                "source_tokens": ["Angela", "Merkel", "visited", "Paris", "."],
                "source_tags": ["B-PER", "I-PER", "O", "B-LOC", "O"],
            }
        )
        rows.append(
            {
                "id": f"t{c}b",
                "lang": "es",
                "target_tokens": ["Barack", "Obama", "visitó", "Berlin", "en", "junio", "."],
                "target_tags": ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"],
                "source_tokens": ["Barack", "Obama", "visited", "Berlin", "in", "June", "."],
                "source_tags": ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"],
            }
        )
    return rows


def qa_rows(n_copies: int = 2) -> list[dict]:
    rows = []
    for c in range(n_copies):
        ctx_en = "The station is in Berlin near the park. Trains leave every hour."
        ctx_de = "Der Bahnhof ist in Berlin nahe dem Park. Züge fahren jede Stunde."
        rows.append(
            {
                "id": f"q{c}a",
                "lang": "de",
                "question": "Wo ist der Bahnhof?",
                "context": ctx_de,
                "answers": [{"text": "Berlin", "answer_start": ctx_de.index("Berlin")}],
                "source_question": "Where is the station?",
                "source_context": ctx_en,
                "source_answers": [{"text": "Berlin", "answer_start": ctx_en.index("Berlin")}],
            }
        )
        ctx_zh = "火车站在柏林公园附近。火车每小时发车。"
        rows.append(
            {
                "id": f"q{c}b",
                "lang": "zh",
                "question": "火车站在哪里？",
                "context": ctx_zh,
                "answers": [{"text": "柏林", "answer_start": ctx_zh.index("柏林")}],
                "source_question": "Where is the station?",
                "source_context": ctx_en,
                "source_answers": [{"text": "Berlin", "answer_start": ctx_en.index("Berlin")}],
            }
        )
    return rows


ROWS = {"classify": classify_rows, "tag": tag_rows, "qa": qa_rows}
