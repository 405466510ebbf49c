"""The helpdesk webhook of cases (EARFUL_CASES_WEBHOOK_URL): every case event POSTed as JSON, ready
to become a ticket (docs/care.md#helpdesk-webhook).

The events are the rows of `case_events` (earful.storage.cases), the same changes the case outbox
publishes to earful.cases.v1, delivered by the signed-webhook outbox shared with the CRM webhook of
leads (earful.storage.signed_webhook; marker `delivered_at`, migration 041): after the commit, at
least once, in id order (so a case's events arrive in version order), signed with
EARFUL_CASES_WEBHOOK_SECRET, with `webhook-id` = the event's `event_id` as the idempotency key.

The body (`case_payload`, pure) is `{"type": "case.<event>", "timestamp": <occurred_at>, "data"}`:
`data` is the earful.cases.v1 record (times as RFC 3339) plus what a ticket needs and the topic does
not carry (`kind`, `version`, `reason`, the question's `mention`), and `ticket`: the case already
mapped to the fields every helpdesk's "create ticket" has (`ticket_of`): title, description,
priority level, status, requester, assignee, links, SLA deadline and tags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from prometheus_client import Counter, Gauge

from earful.core.db import open_pool
from earful.core.settings import Settings
from earful.storage.cases import CASE_EVENTS_CHANNEL, event_record
from earful.storage.leads import profile_url
from earful.storage.signed_webhook import (
    SignedWebhookSink,
    WebhookOutbox,
    rfc3339,
    standard_body,
    webhook_client,
)
from earful.storage.table_outbox import INTERVAL_S, OutboxTable

_LOCK = 0x65617268  # "earh": the one deliverer of case events to the helpdesk webhook
TITLE_MAX = 150  # characters: the longest subject the common helpdesks take
# Priority levels by the 0-100 priority (docs/care.md#priority), highest first: quarters of the scale.
LEVELS = ((75, "urgent"), (50, "high"), (25, "normal"), (0, "low"))
STATUS = {"open": "open", "assigned": "open", "escalated": "escalated", "answered": "solved", "dismissed": "closed"}

DELIVERED = Counter("earful_case_webhook_delivered_total", "Case events the helpdesk webhook acknowledged.")
UNDELIVERED = Gauge("earful_case_webhook_undelivered",
                    "Case events not yet acknowledged by the helpdesk webhook, as of the last pass.")
FAILURES = Counter("earful_case_webhook_failures_total",
                   "Failed deliveries of a case event to the helpdesk webhook, by error kind.", ["kind"])

OUTBOX = OutboxTable("case_events", "delivered_at", _LOCK, CASE_EVENTS_CHANNEL, "case webhooks", DELIVERED,
                     UNDELIVERED, FAILURES)

# The undelivered events with what the ticket needs besides the event: the case's kind, reach and
# risk tags, and its question (left joined: an event whose post is no longer stored still goes, with
# a null mention).
PENDING = """
SELECT e.*, c.kind, c.author_followers, c.risk_tags,
       m.text AS mention_text, m.title AS mention_title, m.url AS mention_url, m.lang AS mention_lang,
       m.author_name AS mention_author_name
FROM case_events e
JOIN cases c ON c.case_id = e.case_id
LEFT JOIN mentions m ON m.source = e.source AND m.source_id = e.source_id AND m.created_at = e.opened_at
WHERE e.delivered_at IS NULL
ORDER BY e.id
LIMIT $1
"""


# --- the payload (pure) -------------------------------------------------------------------------


def priority_level(priority: int) -> str:
    """The helpdesk priority of a 0-100 case priority: urgent from 75, high from 50, normal from 25, else low."""
    return next(level for floor, level in LEVELS if priority >= floor)


def _snippet(text: str | None) -> str:
    """The question in one line, without the handles it opens with (`@AcmeAirHelp where is my bag?`)."""
    one_line = " ".join((text or "").split())
    return re.sub(r"^(?:@\S+\s+)+", "", one_line)


def ticket_title(kind: str, handle: str | None, source: str, text: str | None) -> str:
    """`Question from @jane on twitter: where is my bag?`, cut to TITLE_MAX characters (at a space
    where the question has one) with an ellipsis."""
    head = f"{kind.capitalize()} from @{handle} on {source}" if handle else f"{kind.capitalize()} on {source}"
    snippet = _snippet(text)
    title = f"{head}: {snippet}" if snippet else head
    if len(title) <= TITLE_MAX:
        return title
    cut = title[:TITLE_MAX - 1]
    if " " in cut[len(head) + 2:]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def _when(value: datetime | None) -> str:
    return rfc3339(value) if value is not None else "none"


def ticket_description(row: Mapping[str, Any], level: str) -> str:
    """The ticket's first comment: the question, where it is, and the evidence of its priority and deadline."""
    lines = [" ".join(str(row.get("mention_text") or "").split()) or "(the post's text is not stored)", ""]
    if row.get("mention_url"):
        lines.append(str(row["mention_url"]))
    reasons = "; ".join(row["priority_reasons"]) or "no points"
    lines.append(f"Priority {row['priority']}/100 ({level}): {reasons}")
    if row["deadline_at"] is not None:
        lines.append(f"Answer due {_when(row['deadline_at'])} (warning at {_when(row['warn_at'])}), "
                     f"asked {_when(row['opened_at'])}")
    else:
        lines.append(f"No response SLA; asked {_when(row['opened_at'])}")
    lines.append(f"Earful case {row['case_id']}, {row['event']} ({row['state']})")
    return "\n".join(lines)


def case_url(base: str | None, the_case: str) -> str | None:
    """The case in the storage API (GET /v1/cases/{case_id}) under the dashboard's address; None without one."""
    if not base:
        return None
    return base.rstrip("/") + "/v1/cases/" + quote(the_case, safe=":@")


def ticket_of(row: Mapping[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """The case of an event row (with the columns of PENDING) as a helpdesk ticket (docs/care.md#helpdesk-webhook)."""
    kind = str(row.get("kind") or "question")
    handle = row["author_handle"]
    level = priority_level(int(row["priority"]))
    requester = {"name": row.get("mention_author_name") or handle, "handle": handle, "source": row["source"],
                 "external_id": f"{row['source']}:{handle.lower()}" if handle else None,
                 "profile_url": profile_url(row["source"], handle), "followers": row.get("author_followers")}
    tags = ["earful", row["watchlist_id"], row["source"], kind, *(row.get("risk_tags") or ())]
    return {"external_id": row["case_id"],
            "title": ticket_title(kind, handle, row["source"], row.get("mention_text")),
            "description": ticket_description(row, level),
            "priority": level, "priority_score": int(row["priority"]),
            "status": STATUS[row["state"]],
            "requester": requester,
            "assignee": row["owner"],
            "link": row.get("mention_url"),
            "case_url": case_url(base_url, row["case_id"]),
            "due_at": row["deadline_at"], "warn_at": row["warn_at"],
            "tags": list(dict.fromkeys(tags))}


def case_payload(row: Mapping[str, Any], base_url: str | None = None) -> dict[str, Any]:
    """The webhook payload of a `case_events` row (joined as PENDING does), times as datetimes."""
    record = event_record(row)
    mention = None
    if row.get("mention_text") is not None or row.get("mention_url") is not None:
        mention = {"text": row.get("mention_text"), "title": row.get("mention_title"), "url": row.get("mention_url"),
                   "lang": row.get("mention_lang"), "author_name": row.get("mention_author_name")}
    data = {**record, "kind": row.get("kind"), "version": int(row["version"]), "reason": row.get("reason"),
            "mention": mention, "ticket": ticket_of(row, base_url)}
    return {"type": f"case.{row['event']}", "timestamp": row["occurred_at"], "data": data}


def case_body(row: Mapping[str, Any], base_url: str | None = None) -> bytes:
    """The request body: `case_payload` as compact JSON, times as RFC 3339."""
    payload = case_payload(row, base_url)
    return standard_body(payload["type"], rfc3339(payload["timestamp"]), payload["data"])


# --- delivery ----------------------------------------------------------------------------------


class CaseWebhookSink(SignedWebhookSink):
    """POSTs case events to the helpdesk webhook (earful.storage.signed_webhook says what counts as delivered)."""

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str | None = None, *,
                 base_url: str | None = None) -> None:
        super().__init__(client, url, secret, body=lambda row: case_body(row, base_url), failures=FAILURES,
                         name="helpdesk webhook")


class CaseWebhook(WebhookOutbox):
    """The delivery loop of the helpdesk webhook (`run`, `publish_pending`); `aclose` closes its client."""

    def __init__(self, pool: asyncpg.Pool, client: httpx.AsyncClient, url: str, secret: str | None = None, *,
                 base_url: str | None = None, interval_s: float = INTERVAL_S) -> None:
        super().__init__(pool, OUTBOX, CaseWebhookSink(client, url, secret, base_url=base_url), pending=PENDING,
                         interval_s=interval_s)


def case_webhook(pool: asyncpg.Pool, settings: Settings) -> CaseWebhook | None:
    """The helpdesk webhook of the settings, or None when EARFUL_CASES_WEBHOOK_URL is unset. Tickets link
    to the case under EARFUL_DASHBOARD_URL (else EARFUL_ALERT_DASHBOARD_URL; neither: no case_url)."""
    if not settings.cases_webhook_url:
        return None
    secret = settings.cases_webhook_secret.get_secret_value() if settings.cases_webhook_secret else None
    return CaseWebhook(pool, webhook_client(settings), settings.cases_webhook_url, secret,
                       base_url=settings.dashboard_url or settings.alert_dashboard_url)


async def start_case_webhook(settings: Settings, stack: AsyncExitStack) -> CaseWebhook | None:
    """`case_webhook` on a small pool of its own (its listening connection and one for a pass), so a slow
    helpdesk never holds a connection the writers need; `stack` closes both."""
    if not settings.cases_webhook_url:
        return None
    pool = await open_pool(settings.database_url.get_secret_value(), max_size=2, migrate_first=False)
    stack.push_async_callback(pool.close)
    webhook = case_webhook(pool, settings)
    if webhook is not None:
        stack.push_async_callback(webhook.aclose)
    return webhook
