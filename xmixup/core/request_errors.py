"""Typed errors for input a model cannot take, shared by the HTTP service and the Python API.

The service answers a ``RequestError`` with its ``status`` as an RFC 9457 problem (422 invalid
content, 413 beyond a limit, 404 no such model); ``xmixup.Predictor`` raises the same errors,
so a caller sees the same field path and message either way. Each names the offending fields
(``errors[].loc``, e.g. ``inputs.0.target``). They are ``UserError``s: the CLI prints them
without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from xmixup.errors import UserError


class FieldError(BaseModel):
    loc: str = Field(description="Dotted path of the offending field, e.g. `inputs.0.target`.")
    msg: str


class RequestError(UserError):
    """An error with an HTTP status: what the service answers and the Python API raises."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


class InvalidInput(RequestError):
    """422: content the model cannot take (a missing or malformed field, no words, ...)."""


class InputTooLarge(RequestError):
    """413: beyond a limit (text over the model's max_length with truncation off, ...)."""


class ModelNotFound(RequestError):
    """404: no such model, or a model of another task."""

    def __init__(self, detail: str) -> None:
        super().__init__(404, "model-not-found", detail)


def field_error(status: int, loc: str, msg: str, kind: str = "validation") -> RequestError:
    """A client error about one input field (413 for limits, 422 for invalid content)."""
    cls = InputTooLarge if status == 413 else InvalidInput
    return cls(status, kind, f"{loc}: {msg}", errors=[FieldError(loc=loc, msg=msg)])


def item_index(error: RequestError) -> int | None:
    """The index of the input item an error is about (``inputs.N.…``), None for the request."""
    for err in error.errors or []:
        parts = err.loc.split(".")
        if len(parts) > 1 and parts[0] == "inputs" and parts[1].isdigit():
            return int(parts[1])
    return None


# pydantic names the branch of a union in the location ("str", "list[...]",
# "function-after[...]"): not a field the caller wrote.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def field_path(parts: Sequence[Any]) -> str:
    """A pydantic error location as the dotted field path a caller wrote (``inputs.0.target``).

    FastAPI prefixes body fields with "body", dropped so clients see their own field path.
    """
    items = [
        str(p)
        for p in parts
        if isinstance(p, int) or not ("[" in str(p) or "-" in str(p) or str(p) in _TYPE_TAGS)
    ]
    if len(items) > 1 and items[0] == "body":
        items = items[1:]
    return ".".join(items) or "body"


def invalid_input(errors: list[FieldError]) -> InvalidInput:
    """One 422 for validation failures: the first five in the detail, all in ``errors``."""
    detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
    if len(errors) > 5:
        detail += f"; and {len(errors) - 5} more"
    return InvalidInput(422, "validation", detail, errors=errors)


def validation_field_errors(exc: ValidationError, prefix: Iterable[Any] = ()) -> list[FieldError]:
    """pydantic's errors as ``FieldError``s, each location under ``prefix``."""
    head = tuple(prefix)
    return [
        FieldError(loc=field_path((*head, *err.get("loc", ()))), msg=str(err.get("msg", "invalid")))
        for err in exc.errors()
    ]
