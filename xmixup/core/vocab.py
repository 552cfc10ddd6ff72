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
# Output of X-Mixup classification graphs, per item [B, C]: the source stream's class
# probabilities. The source stream is never mixed, so when a request sends no translation (the
# target stands in for the source) this is the target read with the mixing off: the
# "unmixed" no-translation fallback. Older bundles lack it and can only serve "self".
SOURCE_PROBS_OUTPUT = "source_probabilities"
# What a request without a translation is answered with (manifest ``no_source_fallback``):
# "self", the target read against itself (both streams on the target, as served with a
# translation); "unmixed", the target stream with the mixing off (classification only).
NO_SOURCE_FALLBACKS: tuple[str, ...] = ("self", "unmixed")


def graph_outputs(task: str, trust: bool, method: str) -> tuple[str, ...]:
    """The outputs a task's graph gives: the task's, the source stream's class probabilities
    for X-Mixup classification, the trust output when the head is fitted."""
    outputs = TASK_OUTPUTS[task]
    if task == "classify" and method == "xmixup":
        outputs = (outputs[0], SOURCE_PROBS_OUTPUT, *outputs[1:])
    return outputs + ((TRUST_OUTPUT,) if trust else ())
