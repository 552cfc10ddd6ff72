"""The names every layer agrees on: tasks, methods, word-token rules, graph inputs and
outputs."""

from __future__ import annotations

TASKS: tuple[str, ...] = ("classify", "tag", "qa")
METHODS: tuple[str, ...] = ("xmixup", "translate-train", "translate-test", "zero-shot")
# How a tagged word picks the token it is read on (xmixup.core.featurize.word_tokens); the
# first is the rule of every model that records none.
WORD_TOKEN_RULES: tuple[str, ...] = ("first", "first-content")
# The paired-input graph's inputs, in the order the exporter declares them.
INPUT_NAMES: tuple[str, ...] = (
    "target_input_ids",
    "target_attention_mask",
    "source_input_ids",
    "source_attention_mask",
)
# The outputs each task's graph must produce; ``mixup_ratio`` (lambda per item) is always there.
TASK_OUTPUTS: dict[str, tuple[str, ...]] = {
    "classify": ("probabilities", "mixup_ratio"),
    "tag": ("logits", "mixup_ratio"),
    "qa": ("start_logits", "end_logits", "mixup_ratio"),
}
# Optional output, per item [B]: the probability that the source is a faithful translation
# (the trust head fitted post hoc on the source stream at the mixup layer). A graph has it
# only when its checkpoint has a fitted head; bundles without it serve ``null``.
TRUST_OUTPUT = "translation_trust"


def graph_outputs(task: str, trust: bool) -> tuple[str, ...]:
    """The outputs a task's graph gives, with the trust output when the head is fitted."""
    return TASK_OUTPUTS[task] + ((TRUST_OUTPUT,) if trust else ())
