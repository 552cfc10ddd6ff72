"""Prometheus metrics, in a registry per app (several apps in one process stay independent)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Geometric latency buckets from 0.5 ms to ~60 s: tiny CPU models and big GPU batches both land
# in the middle of the range rather than in the overflow bucket.
_LATENCY = tuple(round(0.0005 * 2**i, 6) for i in range(18))
_SIZES = tuple(2**i for i in range(11))  # 1 .. 1024 rows per batch


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "xmixup_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "xmixup_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.in_flight = Gauge(
            "xmixup_in_flight_requests", "HTTP requests being served", registry=r
        )
        self.tokenization = Histogram(
            "xmixup_tokenization_seconds",
            "Tokenisation time per request",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_wait = Histogram(
            "xmixup_queue_wait_seconds",
            "Time a row waited in the batch queue",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.inference = Histogram(
            "xmixup_inference_seconds",
            "onnxruntime time per batch",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "xmixup_batch_size", "Rows per executed batch", ["model"], buckets=_SIZES, registry=r
        )
        self.tokens = Counter(
            "xmixup_batch_tokens_total",
            "Tokens in executed batches; kind=real (attended) or padded (computed)",
            ["model", "kind"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "xmixup_queue_depth", "Rows waiting per model", ["model"], registry=r
        )
        self.rejected = Counter(
            "xmixup_rejected_rows_total",
            "Rows not run: reason=queue_full, deadline or failed",
            ["model", "reason"],
            registry=r,
        )
        self.model_ready = Gauge(
            "xmixup_model_ready", "1 when the model's worker is healthy", ["model"], registry=r
        )
        self._add_reload_metrics(r)
        # (route, status) -> (counter child, histogram child): label lookups take a lock and
        # a dict probe each, and this runs once per request.
        self._request_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _add_reload_metrics(self, r: CollectorRegistry) -> None:
        self.reloads = Counter(
            "xmixup_reloads_total",
            "Rescans of the models directory (SIGHUP, admin route, watcher); outcome=ok, or "
            "failed when any bundle was refused",
            ["outcome"],
            registry=r,
        )
        self.model_reloads = Counter(
            "xmixup_model_reloads_total",
            "Per model changes found by a rescan: outcome=loaded, removed or refused",
            ["model", "outcome"],
            registry=r,
        )
        self.model_info = Gauge(
            "xmixup_model_info",
            "1 for each served model and its version (the manifest's sha256 prefix)",
            ["model", "version", "task"],
            registry=r,
        )

    def request_done(self, route: str, status: str, seconds: float) -> None:
        children = self._request_children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, status), self.latency.labels(route))
            self._request_children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)
