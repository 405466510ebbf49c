"""Signed webhooks of storage's outboxes: committed rows POSTed as JSON, signed, at least once, in order.

Shared by the CRM webhook of sales leads (earful.storage.lead_webhook) and the helpdesk webhook
of cases (earful.storage.case_webhook). Each is a `TableOutbox` (earful.storage.table_outbox)
over the table of its events with a marker column of its own (`delivered_at`), beside the loop
that publishes the same rows to their topic (`published_at`): the two go at their own pace, so a
webhook that is away never holds the topic back. Rows go out after their commit, oldest first,
one deliverer at a time, and a failure stops the pass, so a later event never overtakes an
earlier one; the loop retries with backoff while the receiver is away.

One request per row: the body is Standard Webhooks' shape, `{"type", "timestamp", "data"}`, made
by the webhook's own `body(row)`; the headers are

* `webhook-id`: the row's `event_id`, the idempotency key, the same on every attempt and every
  re-delivery, so the receiver drops repeats by it (`message_id`: characters other than letters,
  digits and ``-_~:@!$&'()*+,;=/`` are percent-encoded, a '.' too, since the signature scheme
  joins id, timestamp and body with dots; ids of letters, digits, ':' and '-' go as they are);
* `webhook-timestamp`: the attempt's time (Unix seconds);
* `webhook-signature` with a secret: ``v1,<base64 HMAC-SHA256>`` (earful.core.signing).

A 2xx acknowledges the row. A network error, a timeout, 408, 425, 429 or a 5xx raises
DeliveryError: the row and those after it wait and are tried again. Any other 4xx means the
receiver will never take this row: it is logged, counted (`<webhook failures>{kind="rejected"}`)
and skipped, so the rows after it go on. The client (`webhook_client`) connects only to public
addresses unless EARFUL_WEBHOOK_ALLOWED_NETWORKS allows others (earful.core.addresses), takes no
proxy from the environment and follows no redirect.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from prometheus_client import Counter

from earful.core.addresses import AddressPolicy, guarded_transport
from earful.core.errors import DeliveryError
from earful.core.settings import Settings
from earful.core.signing import WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, standard_signature
from earful.storage.table_outbox import BATCH, INTERVAL_S, OutboxTable, TableOutbox

log = logging.getLogger(__name__)
RETRIED = frozenset({408, 425, 429})  # besides every 5xx
_SAFE = ":@!$&'()*+,;=/"  # kept as they are, with letters, digits and -_~ (and '.', replaced below)


# --- the request (pure) -------------------------------------------------------------------------


def message_id(event_id: str) -> str:
    """The `webhook-id` of an event: its id, percent-encoded where a header or the signature scheme
    could not carry it as is (urllib.parse.unquote gives the id back)."""
    return quote(event_id, safe=_SAFE).replace(".", "%2E")


def rfc3339(value: datetime) -> str:
    """A time as the webhooks write it: UTC, milliseconds, a Z."""
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def standard_body(event_type: str, timestamp: str, data: Mapping[str, Any]) -> bytes:
    """Standard Webhooks' payload `{"type", "timestamp", "data"}` as compact UTF-8 JSON (datetimes in
    `data` as RFC 3339)."""
    payload = {"type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def webhook_headers(event_id: str, body: bytes, secret: str | None, now: float | None = None) -> dict[str, str]:
    """Content type and the Standard Webhooks headers of one attempt (signed with a secret)."""
    msg_id = message_id(event_id)
    timestamp = str(int(time.time() if now is None else now))
    headers = {"Content-Type": "application/json", WEBHOOK_ID: msg_id, WEBHOOK_TIMESTAMP: timestamp}
    if secret:
        headers[WEBHOOK_SIGNATURE] = standard_signature(secret, msg_id, timestamp, body)
    return headers


# --- delivery ------------------------------------------------------------------------------------


class SignedWebhookSink:
    """POSTs each row, as `body(row)`, to one URL (the module docstring says what counts as delivered);
    `name` says which webhook in errors and logs, `failures` counts refusals as kind "rejected"."""

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str | None, *,
                 body: Callable[[Mapping[str, Any]], bytes], failures: Counter, name: str) -> None:
        self.client = client
        self.url = url
        self.secret = secret
        self.body = body
        self.failures = failures
        self.name = name

    async def send(self, row: Mapping[str, Any]) -> None:
        body = self.body(row)
        event_id = str(row["event_id"])
        try:
            resp = await self.client.post(self.url, content=body, headers=webhook_headers(event_id, body, self.secret))
        except (httpx.HTTPError, OSError) as exc:
            raise DeliveryError(f"{self.name} not reached: {exc!r}") from exc
        if resp.is_success:
            return
        if resp.status_code in RETRIED or resp.status_code >= 500:
            raise DeliveryError(f"{self.name} answered {resp.status_code}")
        self.failures.labels("rejected").inc()
        log.error(f"the {self.name} refused an event; it is not sent again",
                  extra={"event_id": event_id, "status": resp.status_code, "body": resp.text[:300]})


class WebhookOutbox(TableOutbox):
    """The delivery loop of one signed webhook (`run`, `publish_pending`); `aclose` closes its client.
    `pending` is the query of the undelivered rows when the body needs more than the table's columns
    (see TableOutbox)."""

    def __init__(self, pool: asyncpg.Pool, table: OutboxTable, sink: SignedWebhookSink, *, pending: str | None = None,
                 interval_s: float = INTERVAL_S, batch: int = BATCH) -> None:
        self.client = sink.client
        super().__init__(pool, table, sink, interval_s=interval_s, batch=batch, pending=pending)

    async def aclose(self) -> None:
        await self.client.aclose()


def webhook_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client of storage's webhooks: SSRF-guarded (EARFUL_WEBHOOK_ALLOWED_NETWORKS), no proxies
    from the environment, no redirects, EARFUL_WEBHOOK_TIMEOUT_S per request."""
    policy = AddressPolicy(settings.webhook_allowed_networks, "EARFUL_WEBHOOK_ALLOWED_NETWORKS")
    return httpx.AsyncClient(transport=guarded_transport(policy, trust_env=False), follow_redirects=False,
                             timeout=httpx.Timeout(settings.webhook_timeout_s), trust_env=False)
