"""``xmixup serve``: run the inference service. Only argparse at module level (fast --help);
FastAPI, uvicorn and onnxruntime are imported by the handler."""

from __future__ import annotations

import argparse
from typing import Any

# flag → Settings field. Flags default to None so that unset flags leave env/defaults alone.
_FLAGS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "--models",
        "models_dir",
        {
            "metavar": "DIR",
            "help": "bundle directory, or a directory of "
            "bundles (one per subdirectory; its name is the model name) [XMIXUP_MODELS_DIR]",
        },
    ),
    ("--host", "host", {"help": "bind address (default 127.0.0.1) [XMIXUP_HOST]"}),
    ("--port", "port", {"type": int, "help": "port (default 8000) [XMIXUP_PORT]"}),
    (
        "--device",
        "device",
        {"choices": ["cpu", "cuda"], "help": "cpu or cuda (default cpu) [XMIXUP_DEVICE]"},
    ),
    ("--max-batch-size", "max_batch_size", {"type": int, "help": "rows per batch (default 32)"}),
    (
        "--max-batch-tokens",
        "max_batch_tokens",
        {"type": int, "help": "padded tokens per batch (default 16384)"},
    ),
    (
        "--max-wait-ms",
        "max_wait_ms",
        {"type": float, "help": "longest wait for a batch to fill (default 2)"},
    ),
    (
        "--max-queue",
        "max_queue",
        {"type": int, "help": "rows queued per model before 429 (default 1024)"},
    ),
    (
        "--request-timeout-s",
        "request_timeout_s",
        {"type": float, "help": "per-request deadline, 504 after it (default 30)"},
    ),
    (
        "--max-items",
        "max_items_per_request",
        {"type": int, "help": "inputs per request (default 64)"},
    ),
    ("--max-body-bytes", "max_body_bytes", {"type": int, "help": "default 2000000"}),
    (
        "--max-text-chars",
        "max_text_chars",
        {"type": int, "help": "characters per text field (default 32000)"},
    ),
    (
        "--intra-op-threads",
        "intra_op_threads",
        {"type": int, "help": "onnxruntime threads per run (default: all cores)"},
    ),
    (
        "--drain-grace-s",
        "drain_grace_s",
        {
            "type": float,
            "help": "after SIGTERM, seconds of /readyz=503 before the listener closes (default 0)",
        },
    ),
    ("--otlp-endpoint", "otlp_endpoint", {"help": "OTLP/HTTP traces endpoint (optional)"}),
]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve exported bundles over HTTP",
        description="Serve ONNX bundles: POST /classify, /tag, /qa; GET /healthz, /readyz, "
        "/metrics, /v1/models, /docs. Every setting can also come from an XMIXUP_<NAME> "
        "environment variable (e.g. XMIXUP_MAX_BATCH_SIZE); flags win. The API key is read "
        "from XMIXUP_API_KEY only (a flag would show in `ps`).",
    )
    for flag, field, kwargs in _FLAGS:
        parser.add_argument(flag, dest=field, default=None, **kwargs)
    parser.add_argument(
        "--truncate",
        dest="truncate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="truncate over-long inputs (default) or refuse them with 413 [XMIXUP_TRUNCATE]",
    )
    parser.add_argument(
        "--log-json",
        dest="log_json",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JSON log lines (default) or plain text [XMIXUP_LOG_JSON]",
    )
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from service.server import serve

    overrides = {
        field: getattr(args, field)
        for _, field, _ in _FLAGS
        if getattr(args, field, None) is not None
    }
    for field in ("truncate", "log_json"):
        if getattr(args, field, None) is not None:
            overrides[field] = getattr(args, field)
    return serve(overrides, log_level=getattr(args, "log_level", "INFO"))
