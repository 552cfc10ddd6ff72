"""The tasks the evidence driver runs: where their data lives, which languages are held out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xmixup.core.vocab import METHODS


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's data comes from and which languages are held out."""

    fmt: str  # xmixup data --format
    sub: str  # folder under the data root
    unseen: tuple[str, ...]  # ISO codes never in training (evaluated)
    seen_eval: tuple[str, ...]  # trained languages that are also evaluated
    train_split: str
    eval_split: str
    # Selection data: the unseen languages' items of this split. A dataset's own dev split is
    # preferred: its items are in no training file in any language. The train split's items are
    # not, for parallel data: their English (the source a with-source evaluation reads) and
    # their other languages' versions were trained on, so the with-source score rewards
    # memorising them (SIB-200, 600 steps: 99.8 on those items with the translation, 92.6 on
    # test).
    dev_split: str
    max_length: int
    methods: tuple[str, ...]
    unseen_names: str  # for the report
    # Selection data from another data set, for a task whose own has no split free of trained
    # items: its folder under the data root ("" = ``sub``), its languages (() = ``unseen``) and
    # its items per language when --dev-limit is not given.
    dev_sub: str = ""
    dev_langs: tuple[str, ...] = ()
    dev_limit: int = 150

    @property
    def selection_langs(self) -> tuple[str, ...]:
        return self.dev_langs or self.unseen

    @property
    def selection_sub(self) -> str:
        return self.dev_sub or self.sub

    def selection_limit(self, given: int | None) -> int:
        """Selection items per language: --dev-limit when given, else the task's own."""
        return given or self.dev_limit


TASKS: dict[str, TaskSpec] = {
    "classify": TaskSpec(
        fmt="sib200",
        sub="classification/sib200",
        unseen=("ur", "sw", "is"),
        seen_eval=("de", "zh", "ar"),
        train_split="train",
        eval_split="test",
        dev_split="dev",
        max_length=64,
        methods=METHODS,
        unseen_names="urd_Arab, swh_Latn, isl_Latn",
    ),
    "tag": TaskSpec(
        fmt="conllu",
        sub="tagging/ud_pud",
        unseen=("is", "ko", "fi"),
        seen_eval=("de", "zh", "ar"),
        train_split="train",
        eval_split="eval",
        # No third split (a hash split of PUD items into two) and no other parallel treebank:
        # the unseen languages' train-side items, whose English versions were trained on.
        dev_split="train",
        max_length=128,
        methods=("xmixup", "translate-train", "zero-shot"),
        unseen_names="Icelandic, Korean, Finnish PUD",
    ),
    "qa": TaskSpec(
        fmt="squad",
        sub="qa/xquad",
        unseen=("el", "ro", "vi"),
        seen_eval=("de", "zh", "ar"),
        train_split="train",
        eval_split="eval",
        # XQuAD has no third split (a hash split of its articles into two), and its unseen
        # languages' train-side items have their English and other versions in training: the
        # English-only reader recalled them (dev 51.7 vs test 46.1). MLQA's dev set shares no
        # article with XQuAD (no title, no paragraph), and none of its items is in any training
        # file: all five of its languages (vi unseen, ar de es zh trained languages).
        dev_split="all",
        max_length=256,
        methods=("xmixup", "translate-train", "zero-shot"),
        unseen_names="XQuAD el, ro, vi",
        dev_sub="qa/mlqa/MLQA_V1/dev",
        dev_langs=("ar", "de", "es", "vi", "zh"),
        dev_limit=60,
    ),
}


def available_langs(task: str, root: Path) -> list[str]:
    """ISO codes of the languages the task's folder holds (English included)."""
    from training.data.convert import FLORES_TO_ISO

    folder = root / TASKS[task].sub
    if not folder.is_dir():
        raise SystemExit(f"data folder {folder} does not exist (see --data)")
    if task == "classify":
        return sorted(FLORES_TO_ISO.get(d.name, d.name) for d in folder.iterdir() if d.is_dir())
    if task == "tag":
        return sorted({p.name.split("_pud")[0] for p in folder.glob("*/*_pud-ud-test.conllu")})
    return sorted(p.name.split(".")[1] for p in folder.glob("xquad.*.json"))
