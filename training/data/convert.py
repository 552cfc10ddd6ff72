"""Shared pieces of the converters: the result type, language codes, input resolution, output.

Each converter (``classification.py``, ``conllu.py``, ``squad.py``) turns one public format
into JSONL records of our schema and a :class:`ConvertResult` saying how many items each
language got and what was skipped and why. Every record is validated against the schema
before it is written, so ``xmixup data`` can never emit a file that training would reject.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.schema import validate_record, write_jsonl
from training.data.splits import deterministic_sample
from xmixup.errors import UserError

SOURCE_LANG = "en"

# FLORES/SIB-200 codes -> the ISO 639-1 codes every other set (and the reports) use, so that
# per-language metrics line up across tasks. Unmapped codes are kept as they are.
FLORES_TO_ISO = {
    "eng_Latn": "en", "deu_Latn": "de", "fra_Latn": "fr", "spa_Latn": "es", "rus_Cyrl": "ru",
    "zho_Hans": "zh", "jpn_Jpan": "ja", "arb_Arab": "ar", "por_Latn": "pt", "ita_Latn": "it",
    "fin_Latn": "fi", "ind_Latn": "id", "kor_Hang": "ko", "pol_Latn": "pl", "swe_Latn": "sv",
    "ces_Latn": "cs", "isl_Latn": "is", "bul_Cyrl": "bg", "ell_Grek": "el", "vie_Latn": "vi",
    "swh_Latn": "sw", "urd_Arab": "ur", "ron_Latn": "ro", "hin_Deva": "hi", "tha_Thai": "th",
    "tur_Latn": "tr",
}  # fmt: skip


@dataclass
class ConvertResult:
    """Records of one conversion plus its bookkeeping (printed and written to stats.json)."""

    task: str
    fmt: str
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    @property
    def per_lang(self) -> Counter[str]:
        return Counter(r["lang"] for r in self.records)

    def limit_per_lang(self, limit: int | None, seed: int) -> None:
        """Keep at most ``limit`` items per language (seeded, order kept)."""
        if limit is None:
            return
        by_lang: dict[str, list[dict[str, Any]]] = {}
        for r in self.records:
            by_lang.setdefault(r["lang"], []).append(r)
        kept: list[dict[str, Any]] = []
        for lang, items in by_lang.items():
            chosen = deterministic_sample(items, limit, seed, lang)
            if len(chosen) < len(items):
                self.skip(f"over --limit {limit} ({lang})", len(items) - len(chosen))
            kept.extend(chosen)
        self.records = kept

    def validate(self) -> None:
        """Run every record through the schema: a converter bug must not reach a file."""
        for i, rec in enumerate(self.records):
            _, problems = validate_record(rec, self.task)
            if problems:
                field_name, msg = problems[0]
                raise AssertionError(
                    f"converter {self.fmt} produced an invalid record #{i} "
                    f"(id {rec.get('id')}): field '{field_name}': {msg}"
                )

    def stats(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "format": self.fmt,
            "items": len(self.records),
            "per_lang": dict(sorted(self.per_lang.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "notes": self.notes,
        }

    def write(self, out: str | Path, extra_stats: dict[str, Any] | None = None) -> Path:
        """Write ``out`` (JSONL) and ``<out>.stats.json`` beside it; returns the stats path."""
        out = Path(out)
        self.validate()
        write_jsonl(self.records, out)
        stats_path = out.with_name(out.name + ".stats.json")
        stats = self.stats() | (extra_stats or {})
        stats_path.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
        return stats_path

    def summary(self) -> str:
        lines = [f"{len(self.records)} {self.task} items from {self.fmt}"]
        for lang, n in sorted(self.per_lang.items()):
            lines.append(f"  {lang}: {n}")
        if self.skipped:
            lines.append("skipped:")
            for reason, n in sorted(self.skipped.items()):
                lines.append(f"  {n} {reason}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def resolve_input(path: str | Path, default_subpath: str) -> Path:
    """Accept either the format's own directory/file or the data root containing it.

    ``--input DATA`` and ``--input DATA/classification/sib200`` both work,
    so users need not remember the layout under the data root.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"input {p} does not exist", "pass the data directory or file via --input")
    if p.is_dir():
        # The full layout under the data root, or just the set's own folder name under p.
        for nested in (p / default_subpath, p / Path(default_subpath).name):
            if nested.exists():
                return nested
    return p


def parse_langs(spec: str | Sequence[str] | None) -> list[str] | None:
    """``de,fr`` -> ``["de", "fr"]``; None/empty -> None (all available)."""
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    langs = [s.strip() for s in items if s.strip()]
    return langs or None


def select_langs(available: Sequence[str], wanted: Sequence[str] | None, fmt: str) -> list[str]:
    """Check requested languages against what the input has; default: all but English.

    English is left out by default because with no target language it is English-only
    (zero-shot) data; ask for ``en`` explicitly to get target = source = English items.
    """
    if wanted is None:
        return [lang for lang in available if lang != SOURCE_LANG]
    missing = [lang for lang in wanted if lang not in available]
    if missing:
        raise UserError(
            f"{fmt}: no data for language(s) {', '.join(missing)}",
            f"available: {', '.join(sorted(available))}",
        )
    return list(wanted)
