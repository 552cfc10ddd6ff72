"""Service settings: one pydantic-settings class, read from ``XMIXUP_*`` environment variables.

``xmixup serve`` flags override the environment (the CLI passes only the flags a user gave).
Every limit a client can hit is here, so operators tune the service without code changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All knobs of the inference service (env prefix ``XMIXUP_``, e.g. ``XMIXUP_MAX_BATCH_SIZE``)."""

    model_config = SettingsConfigDict(env_prefix="XMIXUP_", extra="ignore", env_ignore_empty=True)

    # --- what to serve, where ---------------------------------------------------------------
    models_dir: Path | None = Field(
        default=None,
        description="Directory of bundles (one per subdirectory, the name being the model name) "
        "or a single bundle directory.",
    )
    default_models: dict[str, str] = Field(
        default_factory=dict,
        description='Default model per task, e.g. {"classify": "xnli"}; otherwise the first by name.',
    )
    device: Literal["cpu", "cuda"] = "cpu"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    intra_op_threads: int | None = Field(
        default=None, ge=1, description="onnxruntime intra-op threads (default: all cores)."
    )
    # On by default, as in onnxruntime itself: a worker that sleeps between a run's operators
    # pays a wake-up per operator. bench/serve.py, 2 cores, alternating turns against bare
    # onnxruntime: a lone client 0.78x bare batch 1 with spinning off, 0.90x with it on; at
    # 128 clients no difference beyond the noise (1.01x off, 0.95x on, in runs minutes apart).
    ort_spin: bool = Field(
        default=True,
        description=(
            "Let onnxruntime's worker threads spin-wait between operators and runs (its own "
            "default). Off saves idle CPU on a host shared with other work, at a cost in latency."
        ),
    )

    # --- dynamic batching -----------------------------------------------------------------
    max_batch_size: int = Field(default=32, ge=1, description="Rows (sequences) per batch.")
    max_batch_tokens: int = Field(
        default=16384, ge=1, description="Padded tokens (target + source) per batch."
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        description="How long a batch may wait to fill once a row is queued; only while "
        "requests arrive closer together than this (a lone request never waits).",
    )
    max_queue: int = Field(
        default=1024, ge=1, description="Rows queued per model; beyond it requests get 429."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Per-request deadline; expired work is dropped (504)."
    )

    # --- client limits --------------------------------------------------------------------
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    max_items_per_request: int = Field(default=64, ge=1)
    max_text_chars: int = Field(
        default=32_000, ge=1, description="Per text field, always enforced."
    )
    truncate: bool = Field(
        default=True,
        description="Over-long inputs are truncated to the model's max_length (True) or refused "
        "with 413 (False). Requests may override it with their own `truncate` field.",
    )
    max_top_k: int = Field(default=20, ge=1, description="Largest QA `top_k` a client may ask for.")

    # --- security / operations ------------------------------------------------------------
    api_key: SecretStr | None = Field(
        default=None, description="When set, model routes need `Authorization: Bearer <key>`."
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="Enables POST /v1/admin/reload, which then needs `Authorization: Bearer "
        "<key>` (a key of its own: clients holding the API key cannot reload models).",
    )
    watch_interval_s: float | None = Field(
        default=None,
        gt=0,
        description="Rescan the models directory this often and apply changes (off by default; "
        "SIGHUP and the admin route rescan on demand).",
    )
    cors_origins: list[str] = Field(default_factory=list)
    warmup: bool = True
    drain_grace_s: float = Field(
        default=0.0,
        ge=0,
        description="After SIGTERM, keep serving this long with /readyz=503 so load balancers "
        "stop routing before the listener closes (xmixup serve only).",
    )
    watchdog_timeout_s: float = Field(
        default=60.0, gt=0, description="A batch running longer than this marks the model unready."
    )
    watchdog_interval_s: float = Field(
        default=1.0, gt=0, description="How often the watchdog checks (and re-probes) workers."
    )
    max_consecutive_failures: int = Field(
        default=3, ge=1, description="Failed batches in a row before the model is marked unready."
    )
    log_json: bool = True
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint; enables OpenTelemetry tracing when set."
    )
    otlp_service_name: str = "xmixup"

    @field_validator("api_key", "admin_key")
    @classmethod
    def _no_blank_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # An empty key would make auth look enabled while every client fails; refuse it early.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(f"XMIXUP_{str(info.field_name).upper()} is blank; unset it instead")
        return value

    @field_validator("default_models")
    @classmethod
    def _known_tasks(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"classify", "tag", "qa"})
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; tasks are classify, tag, qa")
        return value

    @model_validator(mode="after")
    def _queue_fits_a_batch(self) -> Settings:
        if self.max_queue < self.max_batch_size:
            raise ValueError("max_queue must be >= max_batch_size or no batch can ever fill")
        return self
