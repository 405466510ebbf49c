"""Webhook signatures of alert notifications: the Standard Webhooks scheme, defined in
earful.core.signing (shared with storage's CRM webhook) and re-exported here for the alerting code
and the tools that import it from this module."""

from __future__ import annotations

from earful.core.signing import (
    DEFAULT_TOLERANCE_S,
    LEGACY_SIGNATURE,
    LEGACY_TIMESTAMP,
    SECRET_PREFIX,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    SignatureError,
    secret_key,
    sign,
    signed_headers,
    standard_signature,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_S", "LEGACY_SIGNATURE", "LEGACY_TIMESTAMP", "SECRET_PREFIX", "WEBHOOK_ID", "WEBHOOK_SIGNATURE",
    "WEBHOOK_TIMESTAMP", "SignatureError", "secret_key", "sign", "signed_headers", "standard_signature", "verify",
]
