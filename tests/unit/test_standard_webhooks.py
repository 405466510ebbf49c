"""Webhook signatures per Standard Webhooks: the published test vector, what a webhook request
carries (and keeps across retries), and the verifier's refusals (stale or future timestamps,
tampered id, body or signature, missing headers)."""

from __future__ import annotations

import json
import re
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from earful.alerting.detection import fingerprint
from earful.alerting.notification.grouping import Alert, Plan
from earful.alerting.notification.receivers import build_request, sign
from earful.alerting.notification.routing import Receiver
from earful.alerting.notification.signing import SignatureError, secret_key, signed_headers, standard_signature, verify
from earful.core.errors import ConfigError, ValidationError

# The specification's published test vector (its reference libraries all reproduce it).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID, VECTOR_TS, VECTOR_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = 1614265330.0


def vector_headers(**changes: str) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": VECTOR_TS, "webhook-signature": VECTOR_SIGNATURE, **changes}


def test_the_specifications_test_vector() -> None:
    assert standard_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    assert verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=NOW) == VECTOR_ID
    # Header names are case-insensitive in HTTP.
    assert verify(VECTOR_SECRET, {k.title(): v for k, v in vector_headers().items()}, VECTOR_BODY, now=NOW) == VECTOR_ID


def test_secret_formats() -> None:
    assert secret_key("plain-secret") == b"plain-secret"
    assert secret_key("whsec_c2VjcmV0") == b"secret"
    with pytest.raises(ConfigError, match="base64"):
        secret_key("whsec_not base64!")


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_a_timestamp_beyond_the_tolerance_is_refused(offset: int) -> None:
    """An old request replayed (or one from a clock far ahead) fails even with a valid signature."""
    ts = str(int(NOW) + offset)
    headers = vector_headers(**{"webhook-timestamp": ts,
                                "webhook-signature": standard_signature(VECTOR_SECRET, VECTOR_ID, ts, VECTOR_BODY)})
    with pytest.raises(SignatureError, match="beyond"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=NOW)
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=NOW, tolerance_s=7200) == VECTOR_ID


def test_within_the_tolerance_is_accepted() -> None:
    assert verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=NOW + 299) == VECTOR_ID
    assert verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=NOW - 299) == VECTOR_ID


@pytest.mark.parametrize("headers,body,fragment", [
    (vector_headers(**{"webhook-id": "msg_other"}), VECTOR_BODY, "no v1 signature matches"),  # tampered id
    (vector_headers(), b'{"test": 2432232315}', "no v1 signature matches"),  # tampered body
    (vector_headers(**{"webhook-signature": "v1,AAAA"}), VECTOR_BODY, "no v1 signature matches"),
    (vector_headers(**{"webhook-signature": VECTOR_SIGNATURE.replace("v1,", "v1a,")}), VECTOR_BODY, "no v1 signature"),
    (vector_headers(**{"webhook-id": "a.b"}), VECTOR_BODY, "must not contain"),
    (vector_headers(**{"webhook-timestamp": "soon"}), VECTOR_BODY, "not integer"),
    ({"webhook-id": VECTOR_ID, "webhook-timestamp": VECTOR_TS}, VECTOR_BODY, "missing"),
])
def test_tampered_or_incomplete_requests_are_refused(headers: dict[str, str], body: bytes, fragment: str) -> None:
    with pytest.raises(SignatureError, match=fragment) as info:
        verify(VECTOR_SECRET, headers, body, now=NOW)
    assert isinstance(info.value, ValidationError)  # one error hierarchy


def test_a_wrong_secret_is_refused_and_rotation_lists_are_read() -> None:
    with pytest.raises(SignatureError):
        verify("whsec_c2VjcmV0", vector_headers(), VECTOR_BODY, now=NOW)
    rotated = vector_headers(**{"webhook-signature": f"v1,bm90LXRoaXMtb25l {VECTOR_SIGNATURE}"})
    assert verify(VECTOR_SECRET, rotated, VECTOR_BODY, now=NOW) == VECTOR_ID


def _alert() -> Alert:
    labels = {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical", "alertname": "volume_spike"}
    fp = fingerprint(labels)
    return Alert(fp, f"{fp}-1", "firing", labels, datetime(2026, 11, 2, 7, 30, tzinfo=timezone.utc), None,
                 "watchlist=acme-air", ("ops",), {"annotations": {"summary": "acme-air: spike"}})


def test_a_webhook_request_carries_both_schemes_and_keeps_its_id_across_retries() -> None:
    receiver = Receiver("ops", "webhook", "https://hooks.example.com/earful", secret=VECTOR_SECRET)
    req = build_request(Plan(True, "new_alerts", (_alert(),)), receiver, "g", {}, "idem-1")
    h = req.headers
    assert h["webhook-id"] == h["X-Earful-Idempotency-Key"] == "idem-1"
    assert h["webhook-timestamp"] == h["X-Earful-Timestamp"]
    assert verify(VECTOR_SECRET, h, req.body) == "idem-1"
    assert h["X-Earful-Signature"] == "v1=" + sign(VECTOR_SECRET, h["X-Earful-Timestamp"], req.body)  # deprecated, still sent
    retry = req.resigned(VECTOR_SECRET)
    assert retry.headers["webhook-id"] == "idem-1" and retry.body == req.body
    assert verify(VECTOR_SECRET, retry.headers, retry.body) == "idem-1"
    assert json.loads(req.body)["version"] == "4"


def test_a_retry_gets_a_fresh_timestamp_and_signature() -> None:
    first = signed_headers({"webhook-id": "idem-1"}, "k", b"{}", now=1_000_000)
    later = signed_headers(first, "k", b"{}", now=1_000_100)
    assert later["webhook-id"] == "idem-1" and later["webhook-timestamp"] == "1000100"
    assert later["webhook-signature"] != first["webhook-signature"]
    assert verify("k", later, b"{}", now=1_000_100) == "idem-1"
    with pytest.raises(SignatureError):
        verify("k", {**later, "webhook-timestamp": first["webhook-timestamp"]}, b"{}", now=1_000_100)


def test_unsigned_and_non_webhook_requests() -> None:
    unsigned = build_request(Plan(True, "new_alerts", (_alert(),)), Receiver("ops", "webhook", "https://h.example/"),
                             "g", {}, "i")
    assert unsigned.headers["webhook-id"] == "i" and "webhook-signature" not in unsigned.headers
    slack = build_request(Plan(True, "new_alerts", (_alert(),)),
                          Receiver("s", "slack", "https://hooks.slack.com/x", secret="k"), "g", {}, "i")
    assert not {"webhook-id", "webhook-signature", "X-Earful-Signature"} & set(slack.headers)


def test_the_documented_verifier_accepts_earfuls_requests() -> None:
    """docs/alerting.md's verifier, run as printed, on real requests, the test vector and a replay."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "alerting.md").read_text(encoding="utf-8")
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)^\s*```", doc, re.DOTALL | re.MULTILINE)]
    code = next((b for b in blocks if "def valid(" in b and "webhook-signature" in b), None)
    assert code, "docs/alerting.md lost its verifier"
    scope: dict[str, Any] = {}
    exec(code, scope)  # our own documentation
    valid = scope["valid"]
    for secret in (VECTOR_SECRET, "plain-secret"):
        receiver = Receiver("ops", "webhook", "https://hooks.example.com/earful", secret=secret)
        req = build_request(Plan(True, "new_alerts", (_alert(),)), receiver, "g", {}, "idem-1")
        assert valid(secret, req.headers, req.body)
        assert not valid(secret, {**req.headers, "webhook-id": "idem-2"}, req.body)
        stale = signed_headers(req.headers, secret, req.body, now=time.time() - 600)
        assert not valid(secret, stale, req.body)
    assert valid(VECTOR_SECRET, vector_headers(), VECTOR_BODY, tolerance_s=10**10)
