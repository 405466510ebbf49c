"""What the benchmarks in bench/ share: a fresh in-memory broker, a throw-away PostgreSQL database
and a webhook receiver on a free port.

Each is a context manager that stops, drops or closes what it started on the way out, so a
benchmark that fails half-way leaves no broker, database or server behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.http import HttpServer
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import LocalBroker, free_port
from earful_dev.stack.postgres import find_postgres


@contextlib.contextmanager
def local_broker(log_path: Path | None = None) -> Iterator[LocalBroker]:
    """A new in-memory Tansu broker (no topics yet: `earful.core.topics.create_topics`)."""
    broker = LocalBroker.start(log_path=log_path)
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def postgres_database(name: str, data_dir: Path, *, keep: bool = False,
                            log: Callable[[str], None] = print) -> AsyncIterator[str]:
    """The URL of database `name`, created if missing, on the PostgreSQL `earful run` would use.

    That is EARFUL_DATABASE_URL's server if set, else the machine's, else the embedded one in
    `data_dir` (started here and stopped on the way out). The database is dropped at the end
    unless `keep`.
    """
    handle = await find_postgres(name, os.environ.get("EARFUL_DATABASE_URL"), data_dir, log=log)
    url = with_database(handle.url, name)
    try:
        await ensure_database(url)
        yield url
    finally:
        try:
            if not keep:
                await drop_database(url)
                log(f"dropped database {name}")
        finally:
            await handle.stop()


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A receiver recording every alert, and the URL to point EARFUL_WEBHOOK_URLS at."""
    receiver = WebhookReceiver()
    server = HttpServer(receiver.app(), "127.0.0.1", free_port())
    await server.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.port}/alerts"
    finally:
        await server.stop()
