"""`earful ingest`: read settings, build the producer and the HTTP API, run until SIGTERM."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError

from earful.core.errors import BrokerError
from earful.core.health import Health, tcp_check
from earful.core.http import HttpServer
from earful.core.kafka import Codecs, make_producer
from earful.core.runtime import run_service, wait_for_shutdown
from earful.core.settings import Settings
from earful.core.topics import RAW, create_topics
from earful.ingest.app import Publisher, build_app

log = logging.getLogger("earful.ingest")


async def serve(settings: Settings) -> None:
    health = Health("ingest")
    health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
    codecs = Codecs(settings)
    await create_topics(settings)
    producer = make_producer(settings, "earful-ingest")
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BrokerError(f"cannot connect producer to {settings.kafka_bootstrap}: {exc}") from exc
    server = HttpServer(build_app(settings, Publisher(producer, codecs.for_topic(RAW), settings.ingest_publish_timeout_s), health),
                        settings.http_host, settings.port_for("ingest"))
    try:
        await server.start()
        health.started = True
        log.info("ingest listening", extra={"url": f"http://{settings.http_host}:{server.port}"})
        sig = await wait_for_shutdown()
        log.info("shutting down", extra={"signal": sig.name})
        health.started = False
        await server.stop()  # finishes in-flight requests, each of which awaits its acks
    finally:
        await producer.stop()  # flushes anything still buffered


def main(settings: Settings) -> int:
    return run_service("ingest", lambda: serve(settings))
