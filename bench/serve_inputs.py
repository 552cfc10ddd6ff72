"""bench/serve.py's inputs and its bare-onnxruntime side: the German sentences with their English
translations that every serving bench sends, and onnxruntime run on them with the service's own
featurisation and batch policy (also used by bench/predict.py, bench/soak.py, bench/reload.py)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

SENTENCES = [
    (
        "Die Katze sitzt auf der Matte und schaut aus dem Fenster.",
        "The cat sits on the mat and looks out of the window.",
    ),
    (
        "Ich möchte nächste Woche einen Flug nach Berlin buchen.",
        "I would like to book a flight to Berlin next week.",
    ),
    ("Wo ist der nächste Bahnhof?", "Where is the nearest train station?"),
    (
        "Die Firma meldete in diesem Quartal Rekordgewinne, obwohl die Kosten stark stiegen "
        "und viele Analysten mit einem Verlust gerechnet hatten.",
        "The company reported record profits this quarter, although costs rose sharply and many "
        "analysts had expected a loss.",
    ),
    ("Das Wetter ist heute sehr schön, nicht wahr?", "The weather is very nice today, isn't it?"),
    (
        "Bitte schalte das Licht aus, wenn du den Raum verlässt, und schließe die Tür hinter dir, "
        "damit die Wärme nicht entweicht.",
        "Please turn off the light when you leave the room and close the door behind you so the "
        "heat does not escape.",
    ),
    (
        "Der Fluss fließt langsam durch die Altstadt.",
        "The river flows slowly through the old town.",
    ),
    ("Sie liest jeden Abend ein Buch.", "She reads a book every evening."),
]


def requests_payloads(n: int) -> list[dict[str, Any]]:
    return [
        {
            "inputs": [
                {
                    "target": SENTENCES[i % len(SENTENCES)][0],
                    "source": SENTENCES[i % len(SENTENCES)][1],
                }
            ]
        }
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# (a) bare onnxruntime with the service's featurisation and batch policy
# ---------------------------------------------------------------------------------------------
class BareOrt:
    """Bare onnxruntime with the service's featurisation and batch policy: the bench's inputs
    (every sentence pair, as the service's clients send them), cut into batches of ``batch``
    the way the batcher cuts a window (length-sorted), run back to back."""

    def __init__(self, bundle_dir: Path, batch: int, threads: int | None, device: str) -> None:
        from xmixup.core.bundle import load_bundle
        from xmixup.core.featurize import TextEncoder
        from xmixup.core.rows import Row, pad_rows
        from xmixup.core.runner import Runner

        bundle = load_bundle(bundle_dir)
        enc = TextEncoder.for_bundle(bundle)  # as the service builds it
        # onnxruntime's own defaults (threads spin-wait): what a user's bare session does
        self.engine = Runner.for_bundle(bundle, device, threads)
        # one batcher window (4 batches), and at least every sentence once, as the clients send
        n = batch * max(4, math.ceil(len(SENTENCES) / batch))
        t_enc, _ = enc.encode_texts(
            [SENTENCES[i % len(SENTENCES)][0] for i in range(n)], [True] * n
        )
        s_enc, _ = enc.encode_texts(
            [SENTENCES[i % len(SENTENCES)][1] for i in range(n)], [True] * n
        )
        rows = [
            Row(np.asarray(t.ids, np.int64), np.asarray(s.ids, np.int64))
            for t, s in zip(t_enc, s_enc, strict=True)
        ]
        rows.sort(key=lambda r: r.cost)  # the batcher sorts each window by length
        self.batch = batch
        self.batches = [pad_rows(rows[i : i + batch], bundle.pad_id)[0] for i in range(0, n, batch)]
        self.engine.run(self.batches[0])  # warm-up

    def run_for(self, duration: float) -> tuple[int, float]:
        """(items, seconds): whole passes over the batches until ``duration`` has passed."""
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration:
            for feeds in self.batches:
                self.engine.run(feeds)
                done += len(feeds["target_input_ids"])
        return done, time.perf_counter() - start


def bench_ort(
    bundle_dir: Path, batch: int, threads: int | None, duration: float, device: str
) -> dict[str, float]:
    done, elapsed = BareOrt(bundle_dir, batch, threads, device).run_for(duration)
    return {"items_per_s": done / elapsed, "batch": batch}
