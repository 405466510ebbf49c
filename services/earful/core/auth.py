"""API keys compared in constant time.

A presented key is hashed and compared with the digest of every configured key, always all of
them, with `hmac.compare_digest`: neither the position of the first differing byte nor the
length of a key, nor which key matched, shows in the response time. Every API checks keys
through `ApiKeys`: the push API (ingest) with its own guard, the others with `api_key_guard`.
Keys are only read from headers, never from the URL (URLs end up in logs, history and Referer).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class ApiKeys:
    """Named API keys (name → key); `identify` returns the name of the key presented, or None."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._digests = [(name, _digest(key)) for name, key in keys.items() if key]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str | None) -> str | None:
        if not presented:
            return None
        given = _digest(presented)
        found = None
        for name, digest in self._digests:
            if hmac.compare_digest(given, digest) and found is None:
                found = name
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `X-API-Key`, else from `Authorization: Bearer <key>`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def api_key_guard(api_keys: frozenset[str]) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency requiring one of `api_keys` in X-API-Key (none configured: open).

    Keys are compared in constant time (`ApiKeys`), and the header is declared as a security
    scheme, so the OpenAPI document tells clients how to authenticate.
    """
    keys = ApiKeys({str(i): key for i, key in enumerate(sorted(api_keys))})
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of the configured API keys.")

    async def require_key(key: str | None = Security(header)) -> None:
        if keys.enabled and keys.identify(key) is None:
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header (a key in the URL is not accepted)",
                                headers={"WWW-Authenticate": "X-API-Key"})

    return require_key
