"""RFC 9457 problem details: every error the service returns has one JSON shape.

``{"type", "title", "status", "detail", "instance", "request_id", "errors"?}`` with media type
``application/problem+json``. Client mistakes map to 4xx naming the offending field; nothing a
client can send produces a 500 or a stack trace (unexpected exceptions are logged with the
request id and answered with a bare 500 problem).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from xmixup.core.request_errors import FieldError, RequestError, field_path, invalid_input

logger = logging.getLogger("service.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://xmixup.dev/problems/"  # stable identifiers; need not resolve

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Problem(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str = Field(examples=[_TYPE_BASE + "validation"])
    title: str = Field(examples=["Unprocessable Content"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["inputs.0.target: Field required"])
    instance: str | None = Field(default=None, examples=["/classify"])
    request_id: str | None = None
    errors: list[FieldError] | None = None


class ServiceError(RequestError):
    """An error with an HTTP status raised in request handling (429, 503, 504, ...); input
    errors are the core's ``RequestError`` subclasses, answered the same way."""


def problem_response(
    request: Request | None,
    status: int,
    kind: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + kind,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else None,
        "request_id": getattr(request.state, "request_id", None) if request is not None else None,
    }
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def install_error_handlers(app: FastAPI) -> None:
    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        return problem_response(
            request, exc.status, exc.kind, exc.detail, headers=exc.headers, errors=exc.errors
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for err in exc.errors():
            loc = field_path(err.get("loc", ()))
            msg = str(err.get("msg", "invalid"))
            if err.get("type") == "json_invalid":
                loc, msg = "body", f"malformed JSON ({err.get('ctx', {}).get('error', msg)})"
            errors.append(FieldError(loc=loc, msg=msg))
        problem = invalid_input(errors)
        return problem_response(request, 422, problem.kind, problem.detail, errors=errors)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            # FastAPI answers a body that is not UTF-8 with a bare 400 "error parsing the body";
            # it is malformed JSON (RFC 8259 mandates UTF-8), so it gets that 422, naming the byte.
            msg = f"not valid UTF-8 (byte {cause.start}: {cause.reason})"
            errors = [FieldError(loc="body", msg=msg)]
            return problem_response(request, 422, "validation", f"body: {msg}", errors=errors)
        kind = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http"
        )
        return problem_response(
            request, exc.status_code, kind, str(exc.detail), headers=dict(exc.headers or {})
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the request id so an operator can find it; the client gets no trace.
        logger.exception(
            "unhandled error on %s (request_id=%s)",
            request.url.path,
            getattr(request.state, "request_id", None),
        )
        return problem_response(request, 500, "internal", "internal error; see the server log")

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
