"""``xmixup predict --ray``: the same scoring as a Ray Data job, on a laptop or a cluster.

    read (JSONL lines as text, or Parquet rows) → map_batches(_Scorer) → write JSONL/Parquet

``_Scorer`` is a Ray actor class: each of ``workers`` actors loads the model once and scores
its batches with ``xmixup.batch.records.score_chunk``, the step ``xmixup predict`` runs, so
the rows are the same (without ``line``: Ray Data does not number the lines it reads).
``ray.init()`` joins the cluster ``RAY_ADDRESS`` names and otherwise starts a local Ray, so
the command is the same on both; on a cluster, the bundle, input and output paths must be
reachable from every node (shared storage, or s3:// etc. for input and output).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from typing import Any

from xmixup.batch.run import PredictOptions
from xmixup.errors import UserError

logger = logging.getLogger(__name__)


class _Scorer:
    """One model per actor; a batch of records in, a table of result rows out."""

    def __init__(self, model: str, kwargs: dict[str, Any], top_k: int, skip_bad: bool) -> None:
        from xmixup.predictor import Predictor

        self.predictor = Predictor(model, **kwargs)
        self.top_k = top_k
        self.skip_bad = skip_bad

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from xmixup.batch.records import score_chunk

        if batch.column_names == ["text"]:  # read_text: one JSONL line per row
            raw: list[Any] = batch.column("text").to_pylist()
        else:
            raw = batch.to_pylist()
        scored = score_chunk(self.predictor, [(None, r) for r in raw], top_k=self.top_k)
        for bad in scored.bad:
            if not self.skip_bad:
                raise UserError(bad.describe("input"), "fix the record, or pass --skip-bad")
            logger.warning("skipped %s", bad.describe("input"))
        return pa.Table.from_pylist(scored.rows)


def build_dataset(opts: PredictOptions) -> Any:
    """The Ray Data pipeline (lazy) that scores ``opts.input``."""
    import ray.data

    from xmixup.batch.files import is_parquet

    path = str(opts.input)
    ds = ray.data.read_parquet(path) if is_parquet(opts.input) else ray.data.read_text(path)
    kwargs = opts.predictor_kwargs()
    threads = kwargs["threads"] = opts.threads or 1
    return ds.map_batches(
        _Scorer,
        fn_constructor_kwargs={
            "model": str(opts.model),
            "kwargs": kwargs,
            "top_k": opts.top_k,
            "skip_bad": opts.skip_bad,
        },
        batch_size=opts.chunk_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=opts.workers),
        num_cpus=threads,
        num_gpus=1 if opts.device == "cuda" else 0,  # Ray hides GPUs from actors not asking
    )


def score_with_ray(opts: PredictOptions, output_format: str = "jsonl") -> Sequence[str]:
    """Run the job and write ``opts.output`` (a directory of files); the lines to print."""
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise UserError(
            "--ray needs Ray Data", "pip install 'xmixup[ray]' (or 'ray[data]')"
        ) from None
    if opts.resume:
        raise UserError("--resume is not supported with --ray", "rerun the job instead")
    if opts.output.is_dir() and any(opts.output.iterdir()):
        if not opts.overwrite:
            raise UserError(f"--output {opts.output} is not empty", "pass --overwrite")
        shutil.rmtree(opts.output)  # Ray adds files to a directory; stale ones would stay
    if not ray.is_initialized():
        ray.init(include_dashboard=False)  # RAY_ADDRESS: that cluster; else a local Ray
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = build_dataset(opts)
    if output_format == "parquet":
        ds.write_parquet(str(opts.output))
    else:
        ds.write_json(str(opts.output))
    return [f"scored {opts.input} with {opts.model} into {opts.output}/ ({output_format}, Ray)"]
