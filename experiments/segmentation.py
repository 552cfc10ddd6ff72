"""How close the service's words for text without spaces are to reference words.

    .venv/bin/python experiments/segmentation.py --data DATA_ROOT   # results/segmentation.json

- Chinese: the gold word tokens of UD Chinese-PUD (1,000 sentences, the treebank's own
  segmentation) against ``xmixup.core.words.split_words`` on the same sentence written without
  spaces, and against the previous rule (one word per Han character) as a baseline.
- Thai: no Thai treebank is in the data root; the reference is PyThaiNLP's ``newmm``
  dictionary segmenter (the language's own standard tool; measurement only, not a dependency:
  ``pip install pythainlp``) on the sentences below.

Agreement is word-level precision / recall / F1 over character spans (a word counts when both
its start and its end match), pooled over sentences.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xmixup.core.words import split_words  # noqa: E402

THAI = [
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
    "แมวนั่งอยู่บนเสื่อ",
    "ฉันชอบกินข้าวผัดกับไข่ดาว",
    "วันนี้อากาศร้อนมาก",
    "เขาไปโรงเรียนทุกวัน",
    "ประเทศไทยมีจังหวัดทั้งหมดเจ็ดสิบเจ็ดจังหวัด",
    "รถไฟฟ้าช่วยให้การเดินทางในเมืองสะดวกขึ้น",
    "นักเรียนกำลังอ่านหนังสือในห้องสมุด",
    "ผมอยากจองตั๋วเครื่องบินไปเชียงใหม่สัปดาห์หน้า",
    "โรงพยาบาลอยู่ใกล้สถานีตำรวจ",
    "ทีมฟุตบอลชนะการแข่งขันในนาทีสุดท้าย",
]


def spans(words: Iterable[str]) -> set[tuple[int, int]]:
    out, pos = set(), 0
    for w in words:
        out.add((pos, pos + len(w)))
        pos += len(w)
    return out


def agreement(pairs: list[tuple[list[str], list[str]]]) -> dict[str, float]:
    """Pooled word-span precision/recall/F1 of (predicted, reference) word lists."""
    hit = n_pred = n_ref = 0
    for pred, ref in pairs:
        assert "".join(pred) == "".join(ref), (pred, ref)
        p, r = spans(pred), spans(ref)
        hit, n_pred, n_ref = hit + len(p & r), n_pred + len(p), n_ref + len(r)
    precision, recall = hit / n_pred, hit / n_ref
    return {
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * 2 * precision * recall / (precision + recall),
        "sentences": len(pairs),
        "reference_words": n_ref,
    }


def _service_words(text: str) -> list[str]:
    return [w for w, _, _ in split_words(text)]


def chinese(data: Path) -> dict[str, object]:
    path = next((data / "tagging" / "ud_pud").glob("UD_Chinese-PUD/*.conllu"))
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append(words)
            words = []
        elif not line.startswith("#"):
            cols = line.split("\t")
            if cols[0].isdigit():  # skip multi-word ranges and empty nodes
                words.append(cols[1])
    if words:
        sentences.append(words)
    # PUD Chinese words never contain spaces; the service sees the sentence as written.
    icu = [(_service_words("".join(ws)), ws) for ws in sentences]
    per_char = [([w for w, _, _ in split_words(" ".join(ws))], ws) for ws in sentences]
    per_char = [(_per_char(p), r) for p, r in per_char]
    return {
        "reference": f"UD Chinese-PUD gold words ({path.name})",
        "icu": agreement(icu),
        "previous_rule_one_word_per_han_character": agreement(per_char),
    }


def _per_char(words: list[str]) -> list[str]:
    """The rule before ICU: every Han character a word of its own."""
    out: list[str] = []
    for w in words:
        han = all(0x3400 <= ord(c) <= 0x9FFF or 0xF900 <= ord(c) <= 0xFAFF for c in w)
        out += list(w) if han else [w]
    return out


def thai() -> dict[str, object]:
    try:
        from pythainlp.tokenize import word_tokenize
    except ImportError:
        return {"skipped": "pythainlp not installed (pip install pythainlp)"}
    pairs = [(_service_words(s), word_tokenize(s, engine="newmm")) for s in THAI]
    return {"reference": "PyThaiNLP newmm", "icu": agreement(pairs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="data root with tagging/ud_pud")
    p.add_argument("--out", default=str(REPO / "results" / "segmentation.json"))
    args = p.parse_args(argv)
    result = {"chinese": chinese(Path(args.data)), "thai": thai()}
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
