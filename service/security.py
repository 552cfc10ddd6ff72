"""Optional API key: ``Authorization: Bearer <XMIXUP_API_KEY>`` on model routes; the admin
routes (``/v1/admin/``) take ``XMIXUP_ADMIN_KEY`` instead and are off without it.

Checked in the ASGI middleware (before the body is read or validated, so an unauthenticated
client learns nothing about its payload); ``bearer`` only documents the scheme in OpenAPI.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer

bearer = HTTPBearer(auto_error=False, description="Needed when the server sets XMIXUP_API_KEY.")

# Paths open without a key: probes, metrics scrapes and the docs.
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")
PROTECTED_PREFIXES = ("/classify", "/tag", "/qa", "/v1/")
ADMIN_PREFIX = "/v1/admin/"


def needs_key(path: str) -> bool:
    """Whether the API key guards ``path`` (admin paths have their own key)."""
    return path.startswith(PROTECTED_PREFIXES) and not is_admin(path)


def is_admin(path: str) -> bool:
    return path.startswith(ADMIN_PREFIX)


def key_matches(authorization: str | None, key: str) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    # Constant-time: the comparison must not leak how many leading characters matched.
    return hmac.compare_digest(given.strip().encode(), key.encode())
