"""Target-side labels for tagging: gold ``target_tags`` or soft pseudo-labels.

Translate-train and X-Mixup train a target-side tagging loss. The target words carry either
gold tags or a per-word label distribution (``target_tag_probs``); the distribution can be
computed here by a (zero-shot) teacher checkpoint that tags the target words directly
(``pseudo``), or projected from the English gold tags through a word alignment
(``projected``, training/projection.py). Both train with the soft-label loss.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from training.collate import Collator
from training.features import Featurizer
from xmixup.errors import UserError

log = logging.getLogger(__name__)

# The methods whose loss reads the target side's labels.
TARGET_LOSS_METHODS = ("xmixup", "translate-train")
_TEACHER_INPUTS = (
    "target_input_ids",
    "target_attention_mask",
    "source_input_ids",
    "source_attention_mask",
)


def resolve_target_labels(
    records: list[dict[str, Any]],
    labels: list[str],
    *,
    task: str,
    method: str,
    requested: str | None,
    teacher: str | None,
    backbone: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """(training records, target label mode "gold" | "pseudo") for ``--target-labels``.

    The default is gold when every item has target_tags. Pseudo-labels come from the records'
    target_tag_probs or, with a teacher, are computed here (the records returned carry them);
    ``projected`` computes them from the source tags and an alignment made with ``backbone``.
    Only tagging with a target-side loss has a choice; everything else is "gold".
    """
    if task != "tag":
        return records, "gold"
    have_gold = all(r.get("target_tags") for r in records)
    mode = requested or ("gold" if have_gold else "pseudo")
    if method not in TARGET_LOSS_METHODS:
        return records, "gold"
    if mode == "projected":
        from training.projection import project_tags

        if backbone is None:
            raise UserError("--target-labels projected needs the backbone to align with")
        log.info("projected labels: aligning target to English words with %s", backbone)
        return project_tags(records, backbone, labels)[0], "pseudo"
    if mode == "gold" and not have_gold:
        raise UserError(
            "--target-labels gold but some training items have no target_tags",
            "use --target-labels pseudo (with target_tag_probs or --teacher CKPT)",
        )
    if mode == "pseudo":
        if teacher:
            log.info("pseudo-labels: tagging the target words with teacher %s", teacher)
            records = pseudo_label_with_teacher(records, teacher, labels)
        elif not all(r.get("target_tag_probs") for r in records):
            raise UserError(
                "--target-labels pseudo needs target_tag_probs on every training item",
                "pass --teacher CKPT (a zero-shot tagging checkpoint) to compute them",
            )
    return records, mode


def pseudo_label_with_teacher(
    records: list[dict[str, Any]], teacher_dir: str, labels: list[str], batch_size: int = 32
) -> list[dict[str, Any]]:
    """Per-word label distributions on the target words from a (zero-shot) teacher checkpoint.

    The source stream's predictions cannot be aligned to target words, so pseudo-labels come
    from a model that tags the target directly (the reference used such translate-train
    logits). Words the teacher never saw (truncated) get a uniform row.
    """
    from training.evaluate import load_predictor

    teacher = load_predictor(teacher_dir)
    if teacher.info.task != "tag":
        raise UserError(f"--teacher {teacher_dir} is a {teacher.info.task!r} model, not 'tag'")
    teacher_labels = list(teacher.info.labels)
    columns = _student_columns(teacher_labels, labels)
    # The teacher reads its words on the tokens of its own rule, whatever the student's.
    feat = Featurizer(
        "tag",
        teacher.tokenizer,
        labels=teacher_labels,
        max_length=teacher.info.max_length,
        word_token=teacher.info.word_token,
    )
    feats = feat(_teacher_view(records, teacher_labels[0]))
    collate = Collator("tag", teacher.pad_id)
    out = []
    for i in range(0, len(feats), batch_size):
        chunk = feats[i : i + batch_size]
        b = collate(chunk)
        res = teacher({k: b[k].numpy() for k in _TEACHER_INPUTS})
        for row, f in enumerate(chunk):
            n_words = len(records[f["example_index"]]["target_tokens"])
            probs = _word_distributions(
                res["logits"][row], f["target_word_index"], columns, n_words, len(labels)
            )
            out.append(probs)
    return [dict(r, target_tag_probs=p) for r, p in zip(records, out, strict=True)]


def _student_columns(teacher_labels: list[str], labels: list[str]) -> np.ndarray:
    """Where each teacher tag sits in the student's label list.

    A teacher trained on English alone may never have seen a rare tag (SYM, X) that some
    target language has: its distribution is placed into the student's label columns, with
    zero mass on the tags it does not know.
    """
    unknown = [t for t in teacher_labels if t not in labels]
    if unknown:
        raise UserError(
            f"--teacher predicts tag(s) {unknown} that the training data does not have "
            f"(training labels: {labels})",
            "train the teacher on a subset of the student's tag set",
        )
    return np.array([labels.index(t) for t in teacher_labels])


def _teacher_view(records: list[dict[str, Any]], placeholder_tag: str) -> list[dict[str, Any]]:
    """The records with the target words fed as their own source.

    Tags are not needed to tag: every word gets a placeholder label the featuriser accepts.
    """
    recs = []
    for r in records:
        placeholder = [placeholder_tag] * len(r["target_tokens"])
        recs.append(
            dict(
                r,
                source_tokens=r["target_tokens"],
                source_tags=placeholder,
                target_tags=placeholder,
                source_bt_tokens=None,
            )
        )
    return recs


def _word_distributions(
    logits: np.ndarray, word_index: list[int], columns: np.ndarray, n_words: int, n_labels: int
) -> list[list[float]]:
    """Softmax of the teacher's logits per target word, in the student's label columns."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p_teacher = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    p = np.zeros((len(p_teacher), n_labels))
    p[:, columns] = p_teacher
    probs = [[1.0 / n_labels] * n_labels for _ in range(n_words)]
    for pos, w in enumerate(word_index):
        if w >= 0:
            probs[w] = [float(x) for x in p[pos]]
    return probs
