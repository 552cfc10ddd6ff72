"""The export's size step: trim the vocabulary, int8 embeddings and weights, dedupe weights.

Runs on the graph `convert_precision` chose. Each part is checked where it can be:

- trimming is exact on the pieces it keeps: the trimmed graph, fed remapped ids, must give
  what the graph before trimming gives on the same cases (fp32 tolerance), or the export
  fails (``AtolError``). Cases are remapped once: a dropped piece is read as ``<unk>`` by both
  sides (what the trimmed tokenizer does with text no kept piece covers);
- int8 embeddings and int8-stored weights are lossy: their agreement with PyTorch goes to
  ``manifest.parity``;
- deduplication is byte-exact by construction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model_export.compact import (
    dedupe_initializers,
    quantize_embedding_rows,
    store_weights_int8,
    word_embedding_name,
)
from model_export.parity import FP32_ATOL, Feeds, check_fp32, run_parity
from model_export.verifier import ort_runner
from model_export.vocab_trim import VocabPlan, plan_vocab, slice_embedding, write_trimmed_tokenizer
from xmixup.core.special_tokens import read_special_tokens

if TYPE_CHECKING:
    from model_export.export_log import ExportLog
    from model_export.options import ExportOptions
    from model_export.verifier import LoadedModel, Verifier

logger = logging.getLogger(__name__)


@dataclass
class Shrunk:
    """The graph and tokenizer to ship, the vocabulary manifest field, lossy figures."""

    graph: Path
    tokenizer: Path
    vocabulary: dict[str, Any]
    parity: dict[str, Any] | None


class IdRemap:
    """Old token ids -> a trimmed bundle's ids; dropped pieces read as ``<unk>``."""

    def __init__(self, plan: VocabPlan, rows: int, unk_id: int) -> None:
        table = plan.old_to_new(rows)
        self.as_kept = np.where(table >= 0, np.arange(rows), unk_id)  # old ids, dropped -> unk
        self.to_new = table[self.as_kept]

    def old_side(self, feeds: Feeds) -> Feeds:
        return {k: self.as_kept[v] if k.endswith("_input_ids") else v for k, v in feeds.items()}

    def new_side(self, feeds: Feeds) -> Feeds:
        return {k: self.to_new[v] if k.endswith("_input_ids") else v for k, v in feeds.items()}


def shrink(
    graph: Path,
    work: Path,
    loaded: LoadedModel,
    options: ExportOptions,
    verifier: Verifier,
    log: ExportLog,
) -> Shrunk:
    """Trim, quantise the embeddings, store the weights int8 (each when asked); dedupe."""
    source_tokenizer = options.checkpoint / "tokenizer.json"
    tokenizer = source_tokenizer
    rows = int(loaded.encoder_config.vocab_size)
    remap: IdRemap | None = None
    plan: VocabPlan | None = None
    if options.vocab_scripts or options.vocab_corpus:
        plan = plan_vocab(source_tokenizer, options.vocab_scripts, options.vocab_corpus)
        tokenizer = work / "tokenizer.trimmed.json"
        write_trimmed_tokenizer(source_tokenizer, tokenizer, plan)
        unk = read_special_tokens(source_tokenizer).unk
        remap = IdRemap(plan, rows, unk.id if unk is not None else 0)
        graph = _trim(graph, work, plan, remap, loaded, verifier, log)
    if options.embeddings == "int8":
        quantized = work / "embeddings-int8.onnx"
        log.embeddings = quantize_embedding_rows(graph, quantized)
        graph = quantized
    if options.weights == "int8":
        stored = work / "weights-int8.onnx"
        log.weights = store_weights_int8(graph, stored, options.weights_min_elements)
        graph = stored
    deduped = work / "deduped.onnx"
    log.dedupe = dedupe_initializers(graph, deduped)
    graph = deduped
    parity = None
    lossy = options.embeddings == "int8" or options.weights == "int8"
    if lossy or (remap is not None and options.precision != "fp32"):
        parity = _lossy_report(graph, verifier, remap).as_dict()
    size = plan.size if plan is not None else _tokenizer_size(source_tokenizer)
    vocabulary = {
        "size": size,
        "source_size": plan.source_size if plan is not None else size,
        "embedding_precision": _embedding_precision(options),
        "scripts": list(plan.scripts) if plan is not None else [],
        "corpus": list(plan.corpus) if plan is not None else [],
    }
    return Shrunk(graph=graph, tokenizer=tokenizer, vocabulary=vocabulary, parity=parity)


def _trim(
    graph: Path,
    work: Path,
    plan: VocabPlan,
    remap: IdRemap,
    loaded: LoadedModel,
    verifier: Verifier,
    log: ExportLog,
) -> Path:
    """Slice the embedding table; the trimmed graph must equal its parent on kept pieces."""
    import onnx

    table = word_embedding_name(onnx.load(str(graph), load_external_data=False))
    trimmed = work / "trimmed.onnx"
    before, after = slice_embedding(graph, trimmed, table, plan)
    parent = ort_runner(graph, loaded.outputs, inputs=loaded.inputs)
    child = ort_runner(trimmed, loaded.outputs, inputs=loaded.inputs)
    report = run_parity(
        verifier.task,
        [(name, remap.old_side(feeds)) for name, feeds in verifier.cases],
        parent,
        lambda feeds: child(remap.new_side(feeds)),
        max_answer_length=verifier.max_answer_length,
    )
    check_fp32(report, FP32_ATOL)  # slicing rows must not change a single kept lookup
    log.vocabulary = {**plan.as_dict(), "table_rows": [before, after]}
    logger.info("vocabulary trimmed: %d of %d pieces kept (%s)", after, before, plan.as_dict())
    return trimmed


def _lossy_report(graph: Path, verifier: Verifier, remap: IdRemap | None) -> Any:
    """The shipped graph against PyTorch on the same (remapped) cases."""
    if remap is None:
        return verifier.report(graph)
    run = ort_runner(graph, verifier.outputs, inputs=verifier.inputs)
    cases = [(name, remap.old_side(feeds)) for name, feeds in verifier.cases]
    return run_parity(
        verifier.task,
        cases,
        verifier.reference,
        lambda feeds: run(remap.new_side(feeds)),
        max_answer_length=verifier.max_answer_length,
    )


def _embedding_precision(options: ExportOptions) -> str:
    if options.embeddings == "int8":
        return "int8"
    return "fp16" if options.precision == "fp16" else "fp32"


def _tokenizer_size(path: Path) -> int:
    from tokenizers import Tokenizer

    return int(Tokenizer.from_file(str(path)).get_vocab_size())
