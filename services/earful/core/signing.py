"""Webhook signatures: the Standard Webhooks scheme (https://www.standardwebhooks.com/, spec 1.0).

Shared by every service that sends or receives webhooks (alerting's notifications, storage's CRM
webhook of sales leads, the webhook receiver): pure functions of the secret, the headers and the body.

Every webhook request carries

* ``webhook-id``: the delivery's id (the idempotency key of the notification), the same for every
  attempt of one delivery, so a receiver drops repeats by it;
* ``webhook-timestamp``: the attempt's time, integer Unix seconds (a retry gets a fresh one);
* ``webhook-signature`` (with a secret): ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``;
  the header is a space-separated list (the scheme allows several, for key rotation).

The HMAC key: a secret of the form ``whsec_<base64>`` (the scheme's format, what its libraries
take) is the decoded bytes; any other secret is its UTF-8 bytes. Receivers recompute the signature
and refuse a timestamp more than a tolerance (5 minutes) away from their clock, so a captured
request cannot be replayed later.

Deprecated, sent for one more release beside them: ``X-Earful-Timestamp`` and
``X-Earful-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed by the secret's UTF-8
bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from earful.core.errors import ConfigError, ValidationError

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
LEGACY_TIMESTAMP = "X-Earful-Timestamp"  # deprecated
LEGACY_SIGNATURE = "X-Earful-Signature"  # deprecated
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ValidationError):
    """A webhook request whose signature, timestamp or id does not verify."""

    kind = "signature_error"


def secret_key(secret: str) -> bytes:
    """The HMAC key of `secret`: base64-decoded behind ``whsec_``, else its UTF-8 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"a webhook secret starting with {SECRET_PREFIX} must be base64 after it: {exc}") from exc


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">``: one entry of webhook-signature."""
    mac = hmac.new(secret_key(secret), msg_id.encode() + b"." + timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The deprecated X-Earful-Signature value (after ``v1=``): hex HMAC-SHA256 of b'{timestamp}.' + body."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(headers: Mapping[str, str], secret: str | None, body: bytes,
                   now: float | None = None) -> dict[str, str]:
    """`headers` with this attempt's timestamps and, with a secret, its signatures (both schemes).

    The Standard Webhooks headers go where `headers` has a webhook-id (webhook receivers only)."""
    out = {k: v for k, v in headers.items()
           if k not in (LEGACY_TIMESTAMP, LEGACY_SIGNATURE, WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE)}
    timestamp = str(int(time.time() if now is None else now))
    out[LEGACY_TIMESTAMP] = timestamp
    msg_id = out.get(WEBHOOK_ID)
    if msg_id is not None:
        out[WEBHOOK_TIMESTAMP] = timestamp
    if secret:
        if msg_id is not None:
            out[WEBHOOK_SIGNATURE] = standard_signature(secret, msg_id, timestamp, body)
        out[LEGACY_SIGNATURE] = "v1=" + sign(secret, timestamp, body)
    return out


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> str:
    """The webhook-id of a request whose Standard Webhooks signature verifies; SignatureError otherwise.

    Refuses a missing header, an id with a '.', a timestamp more than `tolerance_s` from `now` (a
    replay) and a request none of whose ``v1`` signatures matches (compared in constant time)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp, signatures = (lower.get(WEBHOOK_ID), lower.get(WEBHOOK_TIMESTAMP), lower.get(WEBHOOK_SIGNATURE))
    if not msg_id or not timestamp or not signatures:
        raise SignatureError(f"missing {WEBHOOK_ID}, {WEBHOOK_TIMESTAMP} or {WEBHOOK_SIGNATURE} header")
    if "." in msg_id:
        raise SignatureError(f"{WEBHOOK_ID} must not contain '.'")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise SignatureError(f"{WEBHOOK_TIMESTAMP} {timestamp[:40]!r} is not integer Unix seconds") from exc
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_s:
        raise SignatureError(f"{WEBHOOK_TIMESTAMP} is {current - sent_at:+.0f} s from now, beyond ±{tolerance_s:.0f} s")
    expected = standard_signature(secret, msg_id, timestamp, body).removeprefix("v1,")
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return msg_id
    raise SignatureError("no v1 signature matches")
