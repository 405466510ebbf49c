"""Webhook delivery: signed JSON POSTs with retries, per receiver.

Each receiver gets its own retry loop (exponential backoff with full jitter, honouring
Retry-After on 429/503), so one slow receiver never delays another. Every request carries an
idempotency key (alert id + status) so a receiver can drop the duplicates at-least-once
delivery produces, and, when a secret is set, an HMAC-SHA256 signature over
``"{timestamp}.{body}"`` (header ``X-Earful-Signature: v1=<hex>``, timestamp in
``X-Earful-Timestamp``) so receivers can reject forged or replayed requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter, Histogram

from earful.core.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

DELIVERIES = Counter("earful_webhook_deliveries_total", "Webhook deliveries by outcome.", ["outcome"])
ATTEMPTS = Counter("earful_webhook_attempts_total", "Webhook HTTP attempts by status class.", ["status"])
DELIVERY_SECONDS = Histogram("earful_webhook_delivery_seconds", "Time to deliver one alert to one receiver.",
                             buckets=LATENCY_BUCKETS)
RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Outcome:
    url: str
    delivered: bool
    attempts: int
    reason: str  # delivered | gave_up:<why> | rejected:<status>


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature receivers recompute: hex HMAC-SHA256 of b'{timestamp}.' + body."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Delivers one alert payload to every configured receiver, concurrently."""

    def __init__(
        self,
        urls: tuple[str, ...],
        secret: str | None,
        client: httpx.AsyncClient,
        max_attempts: int = 5,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
    ) -> None:
        self.urls = urls
        self.secret = secret
        self.client = client
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    async def deliver(self, payload: dict[str, Any], idempotency_key: str) -> list[Outcome]:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return list(await asyncio.gather(*(self._deliver_one(url, body, idempotency_key) for url in self.urls)))

    async def _deliver_one(self, url: str, body: bytes, key: str) -> Outcome:
        started = time.perf_counter()
        reason = "gave_up:no_attempt"
        for attempt in range(1, self.max_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "earful-alerting/1",
                       "X-Earful-Idempotency-Key": key, "X-Earful-Timestamp": timestamp}
            if self.secret:
                headers["X-Earful-Signature"] = "v1=" + sign(self.secret, timestamp, body)
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            try:
                resp = await self.client.post(url, content=body, headers=headers)
            except httpx.InvalidURL as exc:  # not retryable, and not an HTTPError
                ATTEMPTS.labels("error").inc()
                DELIVERIES.labels("rejected").inc()
                return Outcome(url, False, attempt, f"rejected:invalid_url:{exc}")
            except httpx.HTTPError as exc:
                ATTEMPTS.labels("error").inc()
                reason = f"gave_up:{type(exc).__name__}"
            else:
                ATTEMPTS.labels(f"{resp.status_code // 100}xx").inc()
                if resp.status_code < 300:
                    DELIVERIES.labels("delivered").inc()
                    DELIVERY_SECONDS.observe(time.perf_counter() - started)
                    return Outcome(url, True, attempt, "delivered")
                if resp.status_code not in RETRYABLE:
                    DELIVERIES.labels("rejected").inc()
                    return Outcome(url, False, attempt, f"rejected:{resp.status_code}")
                reason = f"gave_up:http_{resp.status_code}"
                delay = max(delay, _retry_after(resp))
            if attempt < self.max_attempts:
                log.warning("webhook attempt failed; retrying", extra={"url": url, "attempt": attempt, "reason": reason, "delay_s": round(delay, 2)})
                await asyncio.sleep(min(delay, self.max_delay_s))
        DELIVERIES.labels("gave_up").inc()
        return Outcome(url, False, self.max_attempts, reason)


def _retry_after(resp: httpx.Response) -> float:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0
