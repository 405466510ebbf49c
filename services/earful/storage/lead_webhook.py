"""The CRM webhook of sales leads (EARFUL_LEADS_WEBHOOK_URL): every lead event POSTed as JSON.

The events are the rows of `lead_events` (storage/leads.py), delivered by the signed-webhook
outbox shared with the helpdesk webhook of cases (earful.storage.signed_webhook, marker
`delivered_at`): after the commit, at least once, in order, with backoff while the CRM is away.
The body follows Standard Webhooks' shape, `{"type": "lead.created" | "lead.evidence_added",
"timestamp", "data"}`, where `data` is the record of earful.leads.v1 (times as RFC 3339); the
headers are `webhook-id` (the event id, the same on every attempt: the receiver drops repeats by
it), `webhook-timestamp` and, with EARFUL_LEADS_WEBHOOK_SECRET, `webhook-signature`.

A 2xx acknowledges the event. A network error, a timeout, 408, 425, 429 or a 5xx is retried (the
event and those after it wait). Any other 4xx means the CRM will never take this event: it is
logged and counted (`earful_lead_webhook_failures_total{kind="rejected"}`) and the next ones go on.
Connections go only to public addresses unless EARFUL_WEBHOOK_ALLOWED_NETWORKS allows others
(earful.core.addresses); redirects are not followed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg
import httpx

from earful.core.settings import Settings
from earful.storage.leads import WEBHOOK_FAILURES, WEBHOOK_OUTBOX
from earful.storage.signed_webhook import SignedWebhookSink, WebhookOutbox, webhook_client, webhook_headers
from earful.storage.table_outbox import INTERVAL_S

__all__ = ["LeadWebhook", "WebhookSink", "lead_webhook", "webhook_body", "webhook_headers"]


def webhook_body(row: Mapping[str, Any]) -> bytes:
    """The request body of a `lead_events` row (pure)."""
    record = json.loads(row["record"]) if isinstance(row["record"], str) else dict(row["record"])
    payload = {"type": f"lead.{row['event']}", "timestamp": record["detected_at"], "data": record}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSink(SignedWebhookSink):
    """POSTs lead events to one URL (see the module docstring for what counts as delivered)."""

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str | None = None) -> None:
        super().__init__(client, url, secret, body=webhook_body, failures=WEBHOOK_FAILURES, name="CRM webhook")


class LeadWebhook(WebhookOutbox):
    """The outbox loop of the CRM webhook (`run`, `publish_pending`); `aclose` closes its client."""

    def __init__(self, pool: asyncpg.Pool, client: httpx.AsyncClient, url: str, secret: str | None = None, *,
                 interval_s: float = INTERVAL_S) -> None:
        super().__init__(pool, WEBHOOK_OUTBOX, WebhookSink(client, url, secret), interval_s=interval_s)


def lead_webhook(pool: asyncpg.Pool, settings: Settings) -> LeadWebhook | None:
    """The CRM webhook of the settings, or None when EARFUL_LEADS_WEBHOOK_URL is unset (its client:
    earful.storage.signed_webhook.webhook_client)."""
    if not settings.leads_webhook_url:
        return None
    secret = settings.leads_webhook_secret.get_secret_value() if settings.leads_webhook_secret else None
    return LeadWebhook(pool, webhook_client(settings), settings.leads_webhook_url, secret)
