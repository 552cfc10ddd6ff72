"""Optional OpenTelemetry tracing (XMIXUP_OTLP_ENDPOINT). Soft dependency: the packages are
imported only when an endpoint is configured; without them the service logs a warning and
serves untraced rather than refusing to start."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from service.settings import Settings

logger = logging.getLogger("service.tracing")


def setup_tracing(app: FastAPI, settings: Settings) -> bool:
    if not settings.otlp_endpoint:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        logger.warning(
            "XMIXUP_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s); "
            "pip install 'xmixup[otel]'. Serving without tracing.",
            exc.name,
        )
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otlp_service_name})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
    )
    trace.set_tracer_provider(provider)
    # W3C trace-context propagation and one server span per request, probes excluded.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    logger.info("OpenTelemetry tracing to %s", settings.otlp_endpoint)
    return True
