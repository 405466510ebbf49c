"""`send_keyed_batches` on the real broker: the partitions `producer.send` would choose, in order,
acknowledged per batch."""

from __future__ import annotations

import asyncio

import pytest

from earful.core.kafka import send_keyed_batches, start_producer
from earful.core.topics import ENRICHED, RAW
from tests.support import consume_all

pytestmark = pytest.mark.integration


async def test_records_land_where_send_puts_them_in_order(settings) -> None:
    producer = await start_producer(settings, "keyed-batches-test")
    try:
        # ~700-byte values, as enriched mentions are: more than one batch per partition.
        records = [(f"key-{i % 97}".encode(), b"%06d|" % i + b"x" * 700) for i in range(600)]
        futures = await send_keyed_batches(producer, ENRICHED, records)
        assert 6 <= len(futures) < 100  # a few batches, not a future per record
        await asyncio.gather(*futures)

        # Where producer.send puts the same keys (on another topic with the same partition count).
        where = {}
        for key in {k for k, _ in records}:
            where[key] = (await (await producer.send(RAW, b"probe", key=key))).partition
        assert len(set(where.values())) > 1
    finally:
        await producer.stop()

    got = await consume_all(settings, ENRICHED, expect=len(records))
    assert len(got) == len(records)
    for message in got:
        assert message.partition == where[message.key]
    # Records of one key keep their order (the sequence number leads each value).
    by_key: dict[bytes, list[int]] = {}
    for message in sorted(got, key=lambda m: (m.partition, m.offset)):
        by_key.setdefault(message.key, []).append(int(message.value[:6]))
    assert all(seq == sorted(seq) for seq in by_key.values())
    assert sum(len(seq) for seq in by_key.values()) == len(records)


async def test_no_records_sends_nothing(settings) -> None:
    producer = await start_producer(settings, "keyed-batches-empty")
    try:
        assert await send_keyed_batches(producer, ENRICHED, []) == []
    finally:
        await producer.stop()
