"""The consumer-lag metric the alert rules and the dashboard use for storage, on the real broker."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from earful.core.kafka import LagReporter, make_consumer
from earful.core.metrics import CONSUMER_LAG
from earful.core.topics import DLQ
from tests.support import eventually, produce

pytestmark = pytest.mark.integration


def lag(topic: str, partition: int) -> float | None:
    """The exported value for this test's consumer, or None when the series does not exist."""
    wanted = {"service": "lag-test", "topic": topic, "partition": str(partition)}
    return next((s.value for s in CONSUMER_LAG.collect()[0].samples if s.labels == wanted), None)


async def test_lag_follows_the_position_and_forgets_revoked_partitions(settings) -> None:
    await produce(settings, DLQ, [(b"k", b"record %d" % i) for i in range(50)])
    consumer = make_consumer(settings, "earful-lag-test", DLQ, session_timeout_ms=2000, heartbeat_interval_ms=500)
    await consumer.start()
    reporter = LagReporter(consumer, "lag-test")
    try:
        consumed = 0
        for _ in range(100):  # first the group join, then one small batch
            batch = await consumer.getmany(timeout_ms=500, max_records=20)
            consumed += sum(len(m) for m in batch.values())
            if consumed:
                break
        assert consumed == 20
        await reporter.report()
        assert lag(DLQ, 0) == 30

        while consumed < 50:
            batch = await consumer.getmany(timeout_ms=500, max_records=100)
            consumed += sum(len(m) for m in batch.values())
        await reporter.report()
        assert lag(DLQ, 0) == 0

        consumer.unsubscribe()  # as after a rebalance that took the partition away
        assert await eventually(lambda: TopicPartition(DLQ, 0) not in consumer.assignment(), timeout_s=10)
        await reporter.report()
        assert lag(DLQ, 0) is None, "a partition this consumer no longer owns must not keep reporting lag"
    finally:
        await consumer.stop()
