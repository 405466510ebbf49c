"""The local broker's CPU at a steady rate, as the records it holds grow.

The local stack's broker (Tansu, memory storage) shares the machine's cores with the services in
`make bench-pipeline` and `make bench-chaos`. This measures what it costs at a fixed load (one
producer and one consumer at `--rate` records/s of 1.5 KB, 6 partitions) after it has been filled
with more and more records (`--fill`, cumulative), and once more after `--retention-wait` seconds
with a topic retention of 15 s, to see whether retention gives the cost back.

    .venv/bin/python bench/local_broker_cost.py [--rate 300] [--seconds 10] [--fill 30000,60000,120000]

Prints one line per step (records held, broker cores, records consumed), then JSON. About two
minutes with the defaults. Apache Kafka and Redpanda keep records in log segments on disk, and a
fetch at the end of a log does not read the rest; this only describes the local broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "services"), str(REPO / "dev"), str(REPO / "bench")]

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from benchmarks.resources import _proc_cpu_s as cpu_s  # noqa: E402  # the other benchmarks' /proc reading

from earful_dev.stack.broker import LocalBroker  # noqa: E402

TOPIC = "broker-cost"
VALUE = b"x" * 1500  # about an enriched mention


async def steady(bootstrap: str, pid: int, rate: float, seconds: float) -> tuple[float, int]:
    """Broker cores while one producer sends `rate` records/s and one consumer reads them at the end."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, fetch_max_wait_ms=100, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    consumed = 0
    try:
        await consumer.getmany(timeout_ms=1000)  # assigned, positioned at the end

        async def produce() -> None:
            started, sent = time.perf_counter(), 0
            while time.perf_counter() - started < seconds:
                sent += 1
                await producer.send(TOPIC, key=str(sent).encode(), value=VALUE)
                await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))

        async def consume() -> None:
            nonlocal consumed
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                batch = await consumer.getmany(timeout_ms=200)
                consumed += sum(len(records) for records in batch.values())

        before = cpu_s(pid)
        await asyncio.gather(produce(), consume())
        return (cpu_s(pid) - before) / seconds, consumed
    finally:
        await consumer.stop()
        await producer.stop()


async def fill(bootstrap: str, count: int) -> None:
    """`count` more records on the topic, as fast as the broker takes them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        deliveries = [await producer.send(TOPIC, key=str(i).encode(), value=VALUE) for i in range(count)]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def measure(rate: float, seconds: float, fills: list[int], retention_wait: float) -> list[dict[str, float]]:
    broker = LocalBroker.start()
    steps: list[dict[str, float]] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TOPIC, 6, 1, topic_configs={"retention.ms": "15000"})])
        finally:
            await admin.close()
        held = 0
        for target in [0, *fills]:
            if target > held:
                await fill(broker.bootstrap, target - held)
                held = target
            cores, consumed = await steady(broker.bootstrap, broker.process.pid, rate, seconds)
            held += consumed
            steps.append({"records_held": held, "broker_cores": round(cores, 3), "consumed": consumed})
            print(f"{held:>8} records held: broker {cores:.3f} cores at {rate:g}/s ({consumed} consumed)", flush=True)
        if retention_wait > 0:
            await asyncio.sleep(retention_wait)
            cores, consumed = await steady(broker.bootstrap, broker.process.pid, rate, seconds)
            held += consumed
            steps.append({"records_held": held, "broker_cores": round(cores, 3), "consumed": consumed,
                          "after_retention_wait_s": retention_wait})
            print(f"{held:>8} records held, {retention_wait:g} s past the 15-s retention: broker {cores:.3f} cores",
                  flush=True)
    finally:
        broker.stop()
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="records/s of the steady load (default 300)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each steady step (default 10)")
    parser.add_argument("--fill", default="30000,60000,120000",
                        help="records held before each further step, cumulative (default 30000,60000,120000)")
    parser.add_argument("--retention-wait", type=float, default=30.0,
                        help="seconds to wait before a last step, past the topic's 15-s retention (0: none)")
    args = parser.parse_args()
    try:
        fills = [int(n) for n in args.fill.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--fill {args.fill!r}: give rising record counts, e.g. 30000,60000")
    if fills != sorted(fills) or any(n <= 0 for n in fills) or args.rate <= 0 or args.seconds <= 0:
        parser.error("--fill must rise, --rate and --seconds must be positive")
    steps = asyncio.run(measure(args.rate, args.seconds, fills, args.retention_wait))
    print(json.dumps({"rate_per_s": args.rate, "steps": steps}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
