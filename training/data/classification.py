"""Converters for the classification sets: SIB-200, XNLI dev, PAWS-X dev.

All three are parallel: each target item has a human-translated English counterpart, which
becomes the ``source`` side (the oracle translate-test source).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.data.convert import (
    FLORES_TO_ISO,
    SOURCE_LANG,
    ConvertResult,
    resolve_input,
    select_langs,
)
from training.data.splits import ROW_SPLITS, parse_rows
from xmixup.errors import UserError

SIB_SPLITS = ("train", "dev", "test")
XNLI_LABELS = ("contradiction", "entailment", "neutral")
# PAWS-X labels 0/1 become names so that served responses are readable.
PAWSX_LABELS = {"0": "not_paraphrase", "1": "paraphrase"}
_PAWSX_MISSING = "NS"  # translators' placeholder for an untranslated sentence


def _read_tsv(path: Path, n_cols: int, *, header: bool) -> list[tuple[int, list[str] | None]]:
    """(line number, columns) per data line; columns is None for a malformed line."""
    rows: list[tuple[int, list[str] | None]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if header and lineno == 1:
                continue
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            rows.append((lineno, cols if len(cols) == n_cols else None))
    return rows


# ---------------------------------------------------------------------------------- SIB-200
def _sib_lang_dirs(root: Path) -> dict[str, Path]:
    dirs = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        dirs[FLORES_TO_ISO.get(d.name, d.name)] = d
    return dirs


def convert_sib200(
    input_path: str | Path, *, langs: Sequence[str] | None = None, split: str = "train"
) -> ConvertResult:
    """Join ``<lang>/<split>.tsv`` with ``eng_Latn/<split>.tsv`` on ``index_id``.

    ``langs`` may be ISO codes (``de``) or the set's own (``deu_Latn``); items carry ISO codes.
    """
    root = resolve_input(input_path, "classification/sib200")
    if split not in SIB_SPLITS:
        raise UserError(f"sib200 has no split {split!r}", f"use one of {', '.join(SIB_SPLITS)}")
    dirs = _sib_lang_dirs(root)
    if SOURCE_LANG not in dirs:
        raise UserError(f"{root} has no eng_Latn/ directory", "point --input at the sib200 folder")
    wanted = None
    if langs is not None:
        wanted = [FLORES_TO_ISO.get(lang, lang) for lang in langs]
    chosen = select_langs(list(dirs), wanted, "sib200")
    res = ConvertResult(task="classify", fmt="sib200")
    en_path = dirs[SOURCE_LANG] / f"{split}.tsv"
    english: dict[str, tuple[str, str]] = {}
    for lineno, cols in _read_tsv(en_path, 3, header=True):
        if cols is None:
            res.skip(f"malformed English line ({en_path}:{lineno})")
            continue
        english[cols[0]] = (cols[1], cols[2])
    for lang in chosen:
        path = dirs[lang] / f"{split}.tsv"
        if not path.is_file():
            raise UserError(f"{path} does not exist", f"sib200 splits are {', '.join(SIB_SPLITS)}")
        for lineno, cols in _read_tsv(path, 3, header=True):
            if cols is None:
                res.skip(f"malformed line ({path}:{lineno})")
                continue
            index_id, label, text = cols
            if index_id not in english:
                res.skip(f"no English item with this index_id ({lang})")
                continue
            en_label, en_text = english[index_id]
            if en_label != label:
                res.skip(f"label differs from English ({lang})")
                continue
            res.records.append(
                {
                    "id": f"sib200-{split}-{index_id}-{lang}",
                    "lang": lang,
                    "group": f"sib200:{index_id}",
                    "target": text,
                    "source": en_text,
                    "label": label,
                }
            )
    return res


# ----------------------------------------------------------------------------- XNLI, PAWS-X
def _dev_files(root: Path, fmt: str) -> dict[str, Path]:
    files = {p.stem.removeprefix("dev-"): p for p in sorted(root.glob("dev-*.tsv"))}
    if SOURCE_LANG not in files:
        raise UserError(f"{root} has no dev-en.tsv", f"point --input at the {fmt} folder")
    return files


def _row_range(fmt: str, rows: str | None, split: str | None) -> tuple[int, int]:
    if rows is not None:
        return parse_rows(rows)
    if split is None or split == "all":
        return 0, 1 << 62
    try:
        return ROW_SPLITS[fmt][split]
    except KeyError:
        raise UserError(
            f"{fmt} has no split {split!r}",
            f"use --split train|eval (rows {ROW_SPLITS[fmt]}) or --rows A:B",
        ) from None


def convert_row_aligned(
    fmt: str,
    input_path: str | Path,
    *,
    langs: Sequence[str] | None = None,
    rows: str | None = None,
    split: str | None = None,
) -> ConvertResult:
    """XNLI / PAWS-X dev: row i of dev-xx.tsv is row i of dev-en.tsv (the source).

    ``rows``/``split`` select a row range; since row i is the same item in every language,
    disjoint row ranges are leakage-safe train/eval splits.
    """
    if fmt not in ("xnli", "pawsx"):
        raise ValueError(fmt)
    root = resolve_input(input_path, f"classification/{fmt}")
    files = _dev_files(root, fmt)
    chosen = select_langs(list(files), langs, fmt)
    start, stop = _row_range(fmt, rows, split)
    res = ConvertResult(task="classify", fmt=fmt)
    english = _read_tsv(files[SOURCE_LANG], 3, header=False)
    for lang in chosen:
        target = _read_tsv(files[lang], 3, header=False)
        if len(target) != len(english):
            # Row alignment is the only link between languages; a length mismatch means the
            # rows cannot be trusted to be the same items.
            raise UserError(
                f"{files[lang]} has {len(target)} rows but dev-en.tsv has {len(english)}",
                "the files must be row-aligned (XTREME format)",
            )
        for row in range(start, min(stop, len(target))):
            _, t_cols = target[row]
            _, e_cols = english[row]
            if t_cols is None or e_cols is None:
                res.skip(f"malformed row ({lang})")
                continue
            label = t_cols[2]
            if fmt == "pawsx":
                if _PAWSX_MISSING in (t_cols[0], t_cols[1], e_cols[0], e_cols[1]):
                    res.skip(f"untranslated 'NS' row ({lang})")
                    continue
                if label != e_cols[2]:
                    res.skip(f"label differs from English ({lang})")
                    continue
                if label not in PAWSX_LABELS:
                    res.skip(f"unknown label ({lang})")
                    continue
                label = PAWSX_LABELS[label]
            elif label != e_cols[2]:
                res.skip(f"label differs from English ({lang})")
                continue
            res.records.append(
                {
                    "id": f"{fmt}-{row}-{lang}",
                    "lang": lang,
                    "group": f"{fmt}:{row}",
                    "target": t_cols[0],
                    "target_pair": t_cols[1],
                    "source": e_cols[0],
                    "source_pair": e_cols[1],
                    "label": label,
                }
            )
    res.notes.append(f"rows {start}:{min(stop, len(english))} of {len(english)}")
    return res
