"""API keys compared in constant time.

A presented key is hashed and compared with the digest of every configured key, always all of
them, with `hmac.compare_digest`: neither the position of the first differing byte nor the
length of a key, nor which key matched, shows in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


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
