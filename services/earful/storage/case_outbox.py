"""Publishing case events to `earful.cases.v1` after they are committed (a transactional outbox).

Every change of a case is a row of `case_events` written in the transaction that made the change
(the writer's, or an API request's: earful.storage.cases), with `published_at` null. The storage
service's loop (`CaseOutbox.run`) publishes the unpublished rows in id order and marks them once
the broker acknowledged them; every such transaction notifies the channel `earful_case_events`,
so an event is on the topic moments after its commit (the alerting service times SLA warnings
from it). The machinery is the shared one of every storage outbox (earful.storage.table_outbox):
one publisher at a time, in id order, stopping at the first failure, so a case's events go out in
version order. Delivery is at least once: a record published again carries the same `event_id`
(`<case_id>:<version>`), which consumers deduplicate by.

With EARFUL_CASES_WEBHOOK_URL the same events also go to a helpdesk (earful.storage.case_webhook):
a loop of its own beside this one (`webhook`), with its own marker (`delivered_at`), so a helpdesk
that is away never holds the topic back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.topics import CASES
from earful.storage.cases import CASE_EVENTS_CHANNEL, event_record
from earful.storage.table_outbox import KafkaSink, OutboxTable, TableOutbox

_LOCK = 0x65617263  # "earc": held by the one publisher of case events
INTERVAL_S = 5.0  # how often the loop looks for events without a notification
SEND_TIMEOUT_S = 5.0  # longest one record may wait for the broker's acknowledgement
BATCH = 500  # events per pass

PUBLISHED = Counter("earful_case_events_published_total", "Case events published to earful.cases.v1.")
UNPUBLISHED = Gauge("earful_case_events_unpublished",
                    "Case events committed but not yet acknowledged on earful.cases.v1, as of the last pass.")
FAILURES = Counter("earful_case_event_publish_failures_total", "Failed attempts to publish a case event, by error kind.",
                   ["kind"])

OUTBOX = OutboxTable("case_events", "published_at", _LOCK, CASE_EVENTS_CHANNEL, "case events", PUBLISHED, UNPUBLISHED,
                     FAILURES)


def _key(row: Mapping[str, Any]) -> str:
    return str(row["case_id"])


class CaseOutbox(TableOutbox):
    """Publishes committed case events (a `TableOutbox` over `case_events`): `publish_pending` for
    one pass, `run` as the service's loop (and the helpdesk webhook's loop beside it, if given)."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, codec: AvroCodec, *,
                 interval_s: float = INTERVAL_S, send_timeout_s: float = SEND_TIMEOUT_S,
                 webhook: TableOutbox | None = None) -> None:
        sink = KafkaSink(producer, codec, CASES, event_record, _key, send_timeout_s=send_timeout_s)
        super().__init__(pool, OUTBOX, sink, interval_s=interval_s, batch=BATCH)
        self.webhook = webhook

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish to the topic, and deliver to the helpdesk webhook if there is one, until `stopping`."""
        if self.webhook is None:
            await super().run(stopping)
        else:
            await asyncio.gather(super().run(stopping), self.webhook.run(stopping))
