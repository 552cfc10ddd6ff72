"""The X-Mixup model configuration: the `xmixup` section of a checkpoint's config.json.

Torch-free on purpose: the CLI, the exporter and tests read and validate configs without
importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from xmixup.core.vocab import METHODS, TASKS, WORD_TOKEN_RULES
from xmixup.errors import UserError

GATES = ("normalized", "paper")
POOLINGS = ("mean", "cls")
TAG_SCHEMES = ("BIO",)
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint directory that cannot be loaded: a missing file or a mismatched tensor."""


def default_mixup_layer(task: str, num_layers: int) -> int:
    """The mixup layer for the encoder depth (1-based).

    Paper (12/24-layer encoders): classification 1, tagging 4 of 12, QA 8 of 12 / 16 of 24.
    Tagging keeps the paper's a third of the depth (6 and 8 of 12 were no better: docs/RESULTS.md
    "Tagging"). Classification departs from it: on SIB-200 with multilingual-e5-small (300 steps,
    2 seeds, docs/RESULTS.md "What makes the mixing pay"), mixing at layer 1 left the mixed target
    stream at translate-train's level (82.0 vs 82.6: the later layers wash a near-lexical mix
    out), while layer 8 of 12 lifted it to 88.5; so classification mixes at two thirds of the
    depth. QA departs too, to half the depth: on XQuAD (200 steps x 8, 2 seeds, the layers below
    the mix fixed) layer 6 of 12 gave F1 39.0 on MLQA's dev set (no item of it trained on in any
    language), and it is the position, not the two extra trained layers: the mix at 8 with layers
    1-5 fixed gave 33.2, and a third of the depth (layer 4, layers 1-3 fixed) 28.4. On the older
    selection data (XQuAD items whose English was trained on) layer 6 gave 51.0 against 47.0 at
    the paper's 8 with layers 1-7 fixed (docs/RESULTS.md "Extractive QA").
    """
    if task == "tag":
        layer = round(num_layers / 3)
    elif task == "qa":
        layer = round(num_layers / 2)
    else:
        layer = round(2 * num_layers / 3)
    return min(max(layer, 1), num_layers)


# Paper / reference scripts: α (the source task-loss weight) per task (Table 10). Checked on
# dev with multilingual-e5-small, 2 seeds (docs/RESULTS.md): tagging α 0.4 gave 78.3 vs 78.5
# (dev 78.3 vs 78.4); QA α 0 fell from 43.2 to 37.0 (dev 39.7 vs 47.0; on MLQA's dev set 29.9,
# the lowest QA run). The paper's values stay.
DEFAULT_ALPHA = {"classify": 0.4, "tag": 0.8, "qa": 0.2}
# The learning rate of a full fine-tune, and of a QA / tagging run with its lower layers fixed.
BASE_LR = 5e-5
FROZEN_LR = 5e-4
# Tasks whose default run keeps the layers below the mixup layer fixed (`default_frozen_layers`).
FROZEN_BASE_TASKS = ("qa", "tag")


def default_frozen_layers(task: str, mixup_layer: int) -> int:
    """How many of the lowest encoder layers a run keeps fixed when `--freeze-layers` is not given.

    QA and tagging: every layer below the mixup layer (with `default_lr` 5e-4; QA: layers 1-5 of
    12 since the mix moved to layer 6, whose dev figures are in `default_mixup_layer`); classification:
    none. Both chosen on dev data with multilingual-e5-small at a CPU budget, 2 seeds
    (docs/RESULTS.md). XQuAD (200 steps x 8, length 192): the full fine-tune at 5e-5 was unstable
    (xmixup F1 32.6 +- 5.0, translate-train 32.5 +- 5.0, zero-shot 40.0 +- 0.2), while layers 1-7
    fixed and 5e-4 gave xmixup 43.2 +- 1.0 vs 40.1 / 40.1 at P = 0.15, and on the older dev 47.0 vs 45.5
    / 45.0. UD PUD tagging (200 steps x 16, length 64, mixup layer 4): layers 1-3 fixed and 5e-4
    lifted xmixup's dev accuracy from 76.7 to 78.4 (every method gained ~1.3 on the test side).
    Classification was selected with every layer trained (its ablation) and keeps it.
    """
    return max(mixup_layer - 1, 0) if task in FROZEN_BASE_TASKS else 0


def default_lr(task: str, frozen_layers: int) -> float:
    """5e-5, or 5e-4 for QA / tagging with lower layers fixed: the pair measured together
    (`default_frozen_layers`) and in the demo (scripts/demo_plan.py: frozen at 5e-4 beat every
    layer at 2e-4 on QA). Such a run with nothing fixed goes back to the full fine-tune's 5e-5."""
    return FROZEN_LR if task in FROZEN_BASE_TASKS and frozen_layers > 0 else BASE_LR


@dataclass
class XMixupConfig:
    """What a trained X-Mixup model is: task, labels, method and the mixing hyper-parameters.

    `mixup_layer=None` means "the task default for this encoder's depth"; it is resolved (and
    then stored) when the model is built, see `resolve(num_layers)`. `max_length=None` means
    128 (384 for QA). `trust_head`: the model holds a fitted translation-trust head
    (training/trust.py); checkpoints written before it existed load with False.
    `word_token`: the token a tagged word is read on (xmixup.core.featurize.word_tokens);
    checkpoints written before it existed load with "first", the rule they were trained with.
    """

    task: str
    labels: list[str] = field(default_factory=list)
    method: str = "xmixup"
    mixup_layer: int | None = None
    lambda0: float = 0.5
    gate: str = "normalized"
    tag_scheme: str | None = None
    pair_input: bool = False
    pooling: str = "mean"
    max_length: int | None = None
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    backbone: str = ""
    trust_head: bool = False
    word_token: str = "first"
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.max_length is None:
            self.max_length = 384 if self.task == "qa" else 128
        self.labels = list(self.labels)
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise UserError naming the first invalid field."""
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}", f"use one of: {', '.join(TASKS)}")
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}", f"use one of: {', '.join(METHODS)}")
        if self.method == "translate-test" and self.task != "classify":
            # Tags and spans must land on the target's tokens; a source-only model cannot do that.
            raise UserError(
                f"method 'translate-test' is only defined for task 'classify', not {self.task!r}",
                "use 'translate-train' or 'zero-shot' as the baseline for tagging and QA",
            )
        if self.trust_head and self.method != "xmixup":
            raise UserError(
                f"trust_head is only defined for method 'xmixup', not {self.method!r}",
                "only X-Mixup graphs run the source stream the trust head reads",
            )
        if self.gate not in GATES:
            raise UserError(f"unknown gate {self.gate!r}", f"use one of: {', '.join(GATES)}")
        if self.pooling not in POOLINGS:
            raise UserError(
                f"unknown pooling {self.pooling!r}", f"use one of: {', '.join(POOLINGS)}"
            )
        if self.word_token not in WORD_TOKEN_RULES:
            raise UserError(
                f"unknown word_token {self.word_token!r}",
                f"use one of: {', '.join(WORD_TOKEN_RULES)}",
            )
        if self.tag_scheme is not None and self.tag_scheme not in TAG_SCHEMES:
            raise UserError(f"unknown tag_scheme {self.tag_scheme!r}", "use 'BIO' or null")
        if self.task in ("classify", "tag") and len(self.labels) < 2:
            raise UserError(
                f"task {self.task!r} needs at least 2 labels, got {self.labels!r}",
                "list the label names in the config",
            )
        if len(set(self.labels)) != len(self.labels):
            raise UserError(f"duplicate labels in {self.labels!r}", "label names must be unique")
        if not 0.0 < float(self.lambda0) <= 1.0:
            raise UserError(f"lambda0 must be in (0, 1], got {self.lambda0}", "the paper uses 0.5")
        if self.mixup_layer is not None and (
            isinstance(self.mixup_layer, bool) or int(self.mixup_layer) < 1
        ):
            raise UserError(
                f"mixup_layer is 1-based and must be >= 1, got {self.mixup_layer}",
                "layer 1 is the first encoder layer",
            )
        for name in ("max_length", "doc_stride", "max_query_length", "max_answer_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.format_version != FORMAT_VERSION:
            raise UserError(
                f"xmixup config format_version {self.format_version} is not supported "
                f"(this version reads {FORMAT_VERSION})",
                "re-train or convert the checkpoint with a matching xmixup version",
            )

    def resolve(self, num_layers: int) -> XMixupConfig:
        """Fill in the default mixup layer for an encoder of `num_layers` and check the range."""
        if self.mixup_layer is None:
            self.mixup_layer = default_mixup_layer(self.task, num_layers)
        if not 1 <= self.mixup_layer <= num_layers:
            raise UserError(
                f"mixup_layer {self.mixup_layer} is outside the encoder's 1..{num_layers} layers",
                f"pick a layer between 1 and {num_layers}",
            )
        return self

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> XMixupConfig:
        """Build from a dict (e.g. config.json["xmixup"]); unknown or missing keys are UserErrors."""
        if not isinstance(data, dict):
            raise UserError(f"xmixup config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"unknown xmixup config field(s): {', '.join(unknown)}",
                f"known fields: {', '.join(sorted(known))}",
            )
        if "task" not in data:
            raise UserError("xmixup config has no 'task'", f"use one of: {', '.join(TASKS)}")
        return cls(**data)
