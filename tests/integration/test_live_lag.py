"""`LiveLag` (earful.storage.history) against a real broker: the records a live consumer group has
still to read, read without joining the group; a group that never read counts nothing, and one
that is behind but has not moved for `stalled_s` (stopped or gone) is not waited for."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from earful.core.kafka import make_consumer, start_producer
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful.storage.history import LiveLag

pytestmark = pytest.mark.integration
GROUP = "earful-enrichment"


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of the live group with the raw topic's partitions assigned: it commits as the service does."""
    consumer = make_consumer(settings, GROUP)
    await consumer.start()
    await consumer.topics()
    consumer.assign([TopicPartition(RAW, p) for p in sorted(consumer.partitions_for_topic(RAW) or ())])
    yield consumer
    await consumer.stop()


async def produce(settings: Settings, n: int) -> None:
    producer = await start_producer(settings, "test-live-lag")
    try:
        for i in range(n):
            await producer.send_and_wait(RAW, b"x", key=f"k{i}".encode())
    finally:
        await producer.stop()


async def test_live_lag_counts_what_a_live_group_has_still_to_read(settings: Settings, live: AIOKafkaConsumer) -> None:
    now = [0.0]
    lag = LiveLag(settings, consumers=((GROUP, RAW),), stalled_s=60.0, clock=lambda: now[0])
    await lag.start()
    try:
        await produce(settings, 30)
        assert await lag() == 0 and lag.last == {}  # the group has never read the topic: nothing to wait for
        tps = sorted(live.assignment(), key=lambda tp: tp.partition)
        await live.commit(dict.fromkeys(tps, 0))
        assert await lag() == 30 and lag.last == {GROUP: 30}
        ends = await live.end_offsets(tps)
        await live.commit({tp: ends[tp] for tp in tps})
        now[0] = 10.0
        assert await lag() == 0
        await produce(settings, 20)
        now[0] = 30.0
        assert await lag() == 20  # behind, and it moved 20 s ago: a live consumer catching up
        now[0] = 71.0
        assert await lag() == 0 and lag.last == {}  # behind and still for 61 s: stopped, not waited for
        await live.commit({tp: ends[tp] + 1 for tp in tps if ends[tp] < (await live.end_offsets([tp]))[tp]})
        now[0] = 72.0
        assert 0 < await lag() < 20  # it moves again: waited for again
    finally:
        await lag.stop()
