"""Delivering one notification to one receiver: retries, backoff, Retry-After, a circuit breaker.

Each receiver has its own `Deliverer` (and circuit), and the dispatcher runs receivers
concurrently, so a slow, failing or hanging receiver never delays another. An attempt that fails
with a retryable status (408, 425, 429, 5xx) or a network error or timeout is retried after an
exponential backoff with full jitter, at least as long as the receiver's Retry-After asks (capped
by the longest delay); other 4xx answers are final. After `webhook_circuit_failures` consecutive
failed attempts the receiver's circuit opens: no request for `webhook_circuit_open_s`, then one
trial request decides. After `max_attempts` the notification is given up (the caller
dead-letters it). Connections only go to addresses the SSRF guard allows, checked on the address
actually connected to, so a hostname that resolves (or re-resolves) to a private address is
refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import Counter, Gauge, Histogram

from earful.alerting.notification.receivers import Request
from earful.alerting.notification.routing import NotifyConfig, Receiver
from earful.alerting.notification.targets import TargetPolicy
from earful.core.addresses import AddressRefused, guarded_transport
from earful.core.http import parse_retry_after
from earful.core.metrics import LATENCY_BUCKETS
from earful.core.retry import FULL_JITTER, backoff_delay

log = logging.getLogger(__name__)

ATTEMPTS = Counter("earful_webhook_attempts_total", "Notification HTTP attempts by receiver and result.",
                   ["receiver", "result"])
DELIVERIES = Counter("earful_webhook_deliveries_total", "Notifications by receiver and final outcome.",
                     ["receiver", "outcome"])
DELIVERY_SECONDS = Histogram("earful_webhook_delivery_seconds", "Time to deliver one notification, retries included.",
                             ["receiver"], buckets=LATENCY_BUCKETS)
CIRCUIT_OPEN = Gauge("earful_webhook_circuit_open", "1 while a receiver's circuit is open.", ["receiver"])
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    reason: str  # delivered | rejected:<status> | refused:<why> | gave_up:<why>
    http_status: int | None = None

    @property
    def outcome(self) -> str:
        """The notification_log outcome: delivered, failed (final refusal) or dead_lettered (gave up)."""
        if self.delivered:
            return "delivered"
        return "dead_lettered" if self.reason.startswith("gave_up") else "failed"


class CircuitBreaker:
    """Closed → (N consecutive failures) → open for `open_s` → half-open: one trial decides."""

    def __init__(self, name: str, failures: int = 5, open_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.failures, self.open_s, self.clock = name, failures, open_s, clock
        self.consecutive = 0
        self.open_until: float | None = None
        self.trial_running = False

    @property
    def state(self) -> str:
        if self.open_until is None:
            return "closed"
        return "open" if self.clock() < self.open_until else "half_open"

    def wait_s(self) -> float:
        """0 when a request may go now, else how long until the circuit lets a trial through."""
        state = self.state
        if state == "closed":
            return 0.0
        if state == "half_open" and not self.trial_running:
            self.trial_running = True
            return 0.0
        return max(0.05, (self.open_until or 0) - self.clock()) if state == "open" else 0.25

    def record(self, ok: bool) -> None:
        self.trial_running = False
        if ok:
            self.consecutive, self.open_until = 0, None
            CIRCUIT_OPEN.labels(self.name).set(0)
            return
        self.consecutive += 1
        if self.consecutive >= self.failures or self.open_until is not None:
            self.open_until = self.clock() + self.open_s
            CIRCUIT_OPEN.labels(self.name).set(1)


def make_client(timeout_s: float, policy: TargetPolicy) -> httpx.AsyncClient:
    """An HTTP client for receivers: SSRF-guarded connections, no proxies from the environment,
    no redirects (a redirect could lead anywhere), and `timeout_s` for connect, read and write."""
    return httpx.AsyncClient(transport=guarded_transport(policy, trust_env=False), timeout=httpx.Timeout(timeout_s),
                             follow_redirects=False, trust_env=False)


def retry_after_s(resp: httpx.Response) -> float:
    """Retry-After of a response as seconds (see `parse_retry_after`)."""
    return parse_retry_after(resp.headers.get("Retry-After"))


class Deliverer:
    """Delivers requests to one receiver, with retries and that receiver's circuit breaker."""

    def __init__(self, receiver: Receiver, client: httpx.AsyncClient, *, max_attempts: int = 8,
                 base_delay_s: float = 1.0, max_delay_s: float = 60.0, circuit: CircuitBreaker | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.receiver = receiver
        self.client = client
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.circuit = circuit or CircuitBreaker(receiver.name)
        self.sleep = sleep

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (many notifications retrying at once spread out)."""
        return backoff_delay(attempt, self.base_delay_s, self.max_delay_s, FULL_JITTER)

    async def send(self, request: Request) -> Outcome:
        started = time.perf_counter()
        name = self.receiver.name
        reason, status = "gave_up:no_attempt", None
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                request = request.resigned(self.receiver.secret if self.receiver.kind == "webhook" else None)
            wait = self.circuit.wait_s()
            delay = self._backoff(attempt)
            if wait > 0:
                ATTEMPTS.labels(name, "circuit_open").inc()
                reason = "gave_up:circuit_open"
                delay = max(delay, min(wait, self.max_delay_s))
            else:
                try:
                    resp = await self.client.post(self.receiver.url, content=request.body, headers=request.headers)
                except AddressRefused as exc:
                    self.circuit.record(True)  # our refusal, not the receiver's failure
                    ATTEMPTS.labels(name, "refused").inc()
                    DELIVERIES.labels(name, "failed").inc()
                    return Outcome(False, attempt, f"refused:{exc}")
                except httpx.InvalidURL as exc:
                    ATTEMPTS.labels(name, "error").inc()
                    DELIVERIES.labels(name, "failed").inc()
                    return Outcome(False, attempt, f"rejected:invalid_url:{exc}")
                except httpx.HTTPError as exc:
                    self.circuit.record(False)
                    ATTEMPTS.labels(name, "error").inc()
                    reason, status = f"gave_up:{type(exc).__name__}", None
                else:
                    status = resp.status_code
                    ATTEMPTS.labels(name, f"{status // 100}xx").inc()
                    if status < 300:
                        self.circuit.record(True)
                        DELIVERIES.labels(name, "delivered").inc()
                        DELIVERY_SECONDS.labels(name).observe(time.perf_counter() - started)
                        return Outcome(True, attempt, "delivered", status)
                    if status not in RETRYABLE:
                        self.circuit.record(True)  # the receiver answered: it is up, it refused this one
                        DELIVERIES.labels(name, "failed").inc()
                        return Outcome(False, attempt, f"rejected:{status}", status)
                    self.circuit.record(False)
                    reason = f"gave_up:http_{status}"
                    delay = max(delay, min(retry_after_s(resp), self.max_delay_s))
            if attempt < self.max_attempts:
                log.warning("notification attempt failed; retrying",
                            extra={"receiver": name, "attempt": attempt, "reason": reason, "delay_s": round(delay, 2)})
                await self.sleep(delay)
        DELIVERIES.labels(name, "dead_lettered").inc()
        return Outcome(False, self.max_attempts, reason, status)


def deliverers_for(config: NotifyConfig, client: httpx.AsyncClient, settings: Any) -> dict[str, Deliverer]:
    """One deliverer (with its own circuit) per configured receiver, with the service's retry settings."""
    return {
        name: Deliverer(r, client, max_attempts=settings.webhook_max_attempts, base_delay_s=settings.webhook_retry_base_s,
                        max_delay_s=settings.webhook_retry_max_s,
                        circuit=CircuitBreaker(name, settings.webhook_circuit_failures, settings.webhook_circuit_open_s))
        for name, r in config.receivers.items()
    }
