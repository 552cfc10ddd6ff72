"""Errors a user can cause and fix. Torch-free: every package (service included) may import it."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (a path, a flag, a file) with a hint on what to do.

    The CLI prints ``str(error)`` without a traceback and exits with status 2.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
