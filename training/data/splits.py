"""Leakage-safe splits of parallel data.

In a parallel set the same item exists in every language. If English row i is in training
and German row i in evaluation, the model has seen the answer through the translation, so
every split here works on the *parallel group* (row index, sentence id, article title), never
on individual items: a group is wholly on one side.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from xmixup.errors import UserError

T = TypeVar("T")

# Fixed, documented row ranges (half-open, 0-based) for the row-aligned dev sets:
# XNLI dev has 2490 rows -> train 0-1244, eval 1245-2489 (training/data/README.md, leakage);
# PAWS-X dev has 2000 rows -> halves.
ROW_SPLITS: dict[str, dict[str, tuple[int, int]]] = {
    "xnli": {"train": (0, 1245), "eval": (1245, 2490)},
    "pawsx": {"train": (0, 1000), "eval": (1000, 2000)},
}
# The salt is a constant (not the run's --seed) so that train and eval files converted in
# separate runs, with any seeds, always agree on which groups are held out.
_SPLIT_SALT = "xmixup-split-v1"
HASH_SPLITS = ("train", "eval")


def parse_rows(spec: str) -> tuple[int, int]:
    """Parse ``A:B`` (half-open, 0-based, either end may be empty) into ``(start, stop)``."""
    try:
        left, right = spec.split(":")
        start = int(left) if left.strip() else 0
        stop = int(right) if right.strip() else 1 << 62
    except ValueError:
        raise UserError(
            f"--rows {spec!r} is not a row range",
            "write A:B (0-based, B excluded), e.g. --rows 0:1245",
        ) from None
    if start < 0 or stop <= start:
        raise UserError(f"--rows {spec!r} is empty or negative", "use 0 <= A < B")
    return start, stop


def group_fraction(group: str) -> float:
    """A stable pseudo-random number in [0, 1) for a group key (same on every machine)."""
    digest = hashlib.sha256(f"{_SPLIT_SALT}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_hash_split(group: str, split: str, eval_fraction: float) -> bool:
    """Whether ``group`` belongs to ``split`` (``train`` or ``eval``) of a hash split."""
    if split not in HASH_SPLITS:
        raise UserError(f"unknown split {split!r}", f"use one of {', '.join(HASH_SPLITS)}")
    if not 0.0 < eval_fraction < 1.0:
        raise UserError(f"--eval-fraction {eval_fraction} is not in (0, 1)", "e.g. 0.5")
    is_eval = group_fraction(group) < eval_fraction
    return is_eval if split == "eval" else not is_eval


def split_by_group(
    items: Iterable[T], group_of: Callable[[T], str], eval_fraction: float
) -> tuple[list[T], list[T]]:
    """Split items into (train, eval) so that no group is on both sides."""
    train: list[T] = []
    evaluation: list[T] = []
    for item in items:
        (evaluation if group_fraction(group_of(item)) < eval_fraction else train).append(item)
    return train, evaluation


def shared_groups(a: Iterable[T], b: Iterable[T], group_of: Callable[[T], str]) -> set[str]:
    """Groups present on both sides: must be empty for a leakage-free train/eval pair."""
    return {group_of(x) for x in a} & {group_of(y) for y in b}


def deterministic_sample(items: Sequence[T], limit: int | None, seed: int, key: str) -> list[T]:
    """At most ``limit`` items, a seeded random subset kept in the original order.

    The RNG is seeded from (seed, key) — key is the language — so adding a language to a run
    does not change which items the other languages get.
    """
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise UserError(f"--limit {limit} is negative", "use a positive number")
    rng = random.Random(f"{seed}:{key}")
    keep = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in keep]
