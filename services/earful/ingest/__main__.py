"""`earful ingest`: read settings, build the producer, the push API and the enabled connectors, run until SIGTERM.

`serve` is the whole composition: the push API is `earful.ingest.app`, every connector publishes
through `earful.ingest.publisher.Publisher`, and each connector is one module of
`earful.ingest.connectors`, run under `_supervise`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from earful.core.health import Health, tcp_check
from earful.core.http import HttpServer
from earful.core.kafka import Codecs, start_producer
from earful.core.retry import Backoff, retry
from earful.core.runtime import run_service, stopped_by, wait_for_shutdown
from earful.core.settings import Settings
from earful.core.topics import RAW, create_topics
from earful.ingest.app import build_app
from earful.ingest.connectors.base import Connector
from earful.ingest.connectors.bluesky import BlueskyConnector
from earful.ingest.connectors.feeds import FeedPoller, load_feeds
from earful.ingest.connectors.mastodon import MastodonConnector, configured_streams
from earful.ingest.publisher import Dedup, Publisher, record_error
from earful.watchlists import WatchlistSet
from earful.watchlists.live import WatchlistStore, seed_from_folder

log = logging.getLogger("earful.ingest")
SHUTDOWN_FLUSH_S = 3.0


def build_connectors(settings: Settings, publisher: Publisher,
                     watchlists: Callable[[], WatchlistSet] | None = None) -> list[Connector]:
    """Every connector the settings enable (the push API is always on). `watchlists` gives the set in
    force now (the Bluesky filter asks for it on every post); required when Bluesky is enabled."""
    connectors: list[Connector] = []
    feeds = load_feeds(settings)
    if feeds:
        connectors.append(FeedPoller(publisher, settings, feeds))
    streams = configured_streams(settings)
    if streams:
        connectors.append(MastodonConnector(publisher, settings, streams))
    if settings.ingest_bluesky_url:
        if watchlists is None:
            raise ValueError("the Bluesky connector needs the watchlists")
        connectors.append(BlueskyConnector(publisher, settings, watchlists))
    return connectors


def build_publisher(settings: Settings, producer: AIOKafkaProducer, codecs: Codecs) -> Publisher:
    """The one publisher every connector and the push API hand their records to."""
    return Publisher(producer, codecs.for_topic(RAW), settings.ingest_publish_timeout_s,
                     max_in_flight=settings.ingest_max_in_flight,
                     dedup=Dedup(settings.ingest_dedup_entries, settings.ingest_dedup_ttl_s))


async def serve(settings: Settings) -> None:
    """Run the push API and the connectors until SIGTERM, then finish what is in flight and flush."""
    health = Health("ingest")
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
    codecs = Codecs(settings)
    await create_topics(settings)
    producer = await start_producer(settings, "earful-ingest")
    publisher = build_publisher(settings, producer, codecs)
    server = HttpServer(build_app(settings, publisher, health), settings.http_host, settings.port_for("ingest"))
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    store: WatchlistStore | None = None
    try:
        if settings.ingest_bluesky_url:  # the firehose is filtered by the watchlists in force, followed live
            store = WatchlistStore(settings, seed=seed_from_folder(settings, "ingest"), service="ingest")
            await store.start()
            health.add_check("watchlists", store.check)
        connectors = build_connectors(settings, publisher, store.current if store else None)
        await server.start()
        for connector in connectors:
            tasks.append(asyncio.create_task(_supervise(connector, stop), name=f"connector-{connector.name}"))
        health.started = True
        log.info("ingest listening", extra={"url": f"http://{settings.http_host}:{server.port}",
                                            "connectors": ["push"] + [c.name for c in connectors]})
        sig = await wait_for_shutdown()
        log.info("shutting down", extra={"signal": sig.name})
        health.started = False
        stop.set()  # connectors finish what they are publishing and save their state
        await server.stop()  # finishes in-flight requests, each of which awaits its acks
        if tasks:
            await asyncio.wait(tasks, timeout=settings.ingest_publish_timeout_s + 5)
    finally:
        stop.set()
        await _cancel(tasks)
        if store is not None:
            await store.stop()
        await _flush(producer)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the connectors still running and wait until each has ended (they were asked to stop)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _flush(producer: AIOKafkaProducer) -> None:
    """Flush what is still buffered. Every request and connector batch has been answered or given up
    by now, so nothing left in the buffer was promised to anyone: with the broker gone, do not wait
    for the producer's own request timeout."""
    try:
        await asyncio.wait_for(producer.stop(), SHUTDOWN_FLUSH_S)
    except TimeoutError:
        log.warning("broker unreachable at shutdown; unacknowledged records dropped (their senders got a 503)")


async def _supervise(connector: Connector, stop: asyncio.Event) -> None:
    """Run a connector; an unexpected crash is logged and the connector restarted (the others go on)."""

    def crashed(exc: BaseException, delay: float) -> None:  # a connector bug must not take the push API down
        record_error(connector.name, "crash")
        log.exception("connector crashed; restarting", extra={"connector": connector.name, "error": repr(exc)[:300]})

    if stop.is_set():
        return
    try:
        await retry(lambda: connector.run(stop), retry_on=(Exception,), backoff=Backoff(1.0, 60.0), stop=stop,
                    on_retry=crashed)
    except asyncio.CancelledError:
        if not stopped_by(stop):
            raise


def main(settings: Settings) -> int:
    return run_service("ingest", lambda: serve(settings))
