"""Publishing erasures to `earful.erasures.v1` after they are committed (a transactional outbox).

An erasure is durable in PostgreSQL (table `erasures`, `published_at` null) before anything is
sent; the storage service's loop (`ErasureOutbox.run`) publishes every unpublished erasure, oldest
first, and marks it once the broker acknowledged it. The loop listens on the PostgreSQL channel
`earful_erasures`, which `erase_author` notifies in its transaction, so an erasure made through the
API or by `earful storage erase` in another process is published within moments of its commit;
it also looks every `interval_s` in case a notification was missed (a lost listening connection).
The machinery is the shared one of every storage outbox (earful.storage.table_outbox).
Delivery is at least once (a record acknowledged just before a crash is sent again): consumers
deduplicate by `erasure_id`. One publisher at a time (a transaction-level advisory lock), so
erasures go out in id order even with several storage replicas.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.topics import ERASURES
from earful.storage.erasure import ERASURES_CHANNEL
from earful.storage.table_outbox import KafkaSink, OutboxTable, TableOutbox

_LOCK = 0x65617277  # "earw": held by the one publisher of erasures
INTERVAL_S = 5.0  # how often the loop looks for erasures without a notification
SEND_TIMEOUT_S = 5.0  # longest one record may wait for the broker's acknowledgement
BATCH = 100  # erasures per pass

PUBLISHED = Counter("earful_erasures_published_total", "Erasures published to earful.erasures.v1.")
UNPUBLISHED = Gauge("earful_erasures_unpublished",
                    "Erasures committed but not yet acknowledged on earful.erasures.v1, as of the last pass.")
FAILURES = Counter("earful_erasure_publish_failures_total", "Failed attempts to publish an erasure, by error kind.",
                   ["kind"])

OUTBOX = OutboxTable("erasures", "published_at", _LOCK, ERASURES_CHANNEL, "erasures", PUBLISHED, UNPUBLISHED, FAILURES)


def erasure_record(row: Any) -> dict[str, Any]:
    """An `erasures` row → its earful.erasures.v1 record (pure)."""
    return {"schema_version": 1, "erasure_id": int(row["id"]), "source": row["source"], "author_key": row["author_key"],
            "author_hashes": sorted(row["author_hashes"]), "erased_before": _ceil_ms(row["requested_at"]),
            "requested_at": row["requested_at"], "requested_via": row["requested_via"],
            "mentions_erased": int(row["mentions_erased"])}


def _ceil_ms(at: datetime) -> datetime:
    """`at` rounded up to the millisecond: the topic carries milliseconds, and a mention created in
    the same millisecond after the erasure's microsecond is still erased, so downstream must erase it too."""
    extra = at.microsecond % 1000
    return at + timedelta(microseconds=1000 - extra) if extra else at


class ErasureOutbox(TableOutbox):
    """Publishes committed erasures (a `TableOutbox` over `erasures`): `publish_pending` for one pass,
    `run` as the service's loop, woken by `erase_author`'s notification."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, codec: AvroCodec, *,
                 interval_s: float = INTERVAL_S, send_timeout_s: float = SEND_TIMEOUT_S) -> None:
        sink = KafkaSink(producer, codec, ERASURES, erasure_record, lambda row: str(row["author_key"]),
                         send_timeout_s=send_timeout_s)
        super().__init__(pool, OUTBOX, sink, interval_s=interval_s, batch=BATCH)
