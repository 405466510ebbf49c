"""Running a Faust app as an Earful service: our ops HTTP server, topics first, clean SIGTERM.

Faust's worker owns the event loop and the signals (SIGTERM → stop agents, commit acked offsets,
exit 0). Topics are created before the worker starts, on the same loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust
import mode
from fastapi import APIRouter

from earful.core.codec import AvroCodec
from earful.core.errors import DecodeError, EarfulError
from earful.core.health import Health
from earful.core.http import HttpServer, RequestLimits, ops_app
from earful.core.kafka import Codecs, DeadLetters
from earful.core.metrics import MESSAGES
from earful.core.settings import Settings
from earful.core.topics import DLQ, create_topics

log = logging.getLogger(__name__)


def attach_ops_server(app: faust.App, settings: Settings, health: Health, service: str,
                      routers: Sequence[APIRouter] = ()) -> None:
    """Serve /healthz, /readyz and /metrics (and the service's own `routers`) on the service's
    port for as long as `app` runs, behind the request guard (EARFUL_API_KEYS decides the Host check)."""
    limits = RequestLimits.from_settings(settings, keys_configured=bool(settings.api_key_set()))

    class OpsServer(mode.Service):
        async def on_start(self) -> None:
            api = ops_app(health, f"Earful {service}", limits)
            for router in routers:
                api.include_router(router)
            self.http = HttpServer(api, settings.http_host, settings.port_for(service))
            await self.http.start()
            log.info("%s ops endpoints listening", service, extra={"port": self.http.port})

        async def on_stop(self) -> None:
            health.started = False
            await self.http.stop()

    app.service(OpsServer)

    @app.on_partitions_assigned.connect
    async def _ready(app: Any, /, *args: Any, **kwargs: Any) -> None:  # first assignment = consuming
        health.started = True


class FaustDeadLetters(DeadLetters):
    """Dead letters sent through the Faust app's own producer, from an event being processed."""

    def __init__(self, app: faust.App, codecs: Codecs, service: str) -> None:
        topic = app.topic(DLQ, key_serializer="raw", value_serializer="raw", internal=False)

        class _Producer:
            async def send_and_wait(self, name: str, value: bytes, key: bytes | None = None) -> None:
                await (await topic.send(key=key, value=value))

        super().__init__(_Producer(), codecs, service)

    async def decode(self, event: Any, codec: AvroCodec) -> dict[str, Any] | None:
        """The event's record, or None after dead-lettering it when its bytes do not decode."""
        try:
            return codec.decode(event.message.value)
        except DecodeError as exc:
            await self.send_event(event, exc)
            return None

    async def send_event(self, event: Any, error: EarfulError) -> None:
        """Dead-letter the record behind a Faust event (its original key and value bytes)."""
        msg = event.message
        await self.send(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                        error=error)
        MESSAGES.labels(self.service, msg.topic, "dead_lettered").inc()


def run_faust_service(app: faust.App, settings: Settings, service: str) -> int:
    """Create topics, then run the Faust worker until SIGTERM/SIGINT; return the exit code."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(create_topics(settings))
    except EarfulError as exc:
        log.error("%s cannot start: %s", service, exc, extra={"error_kind": exc.kind})
        return 1
    worker = faust.Worker(app, loop=loop, loglevel=settings.log_level, quiet=True, override_logging=False)
    worker.spinner = None  # a terminal spinner only writes escape codes into service logs
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
