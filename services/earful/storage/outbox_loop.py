"""The loop of a transactional outbox woken by PostgreSQL notifications (shared by outboxes).

An outbox keeps records committed in PostgreSQL until the broker acknowledged them. Its loop
listens on a channel that the committing transactions notify, so a record is published moments
after its commit, and also looks every `interval_s` in case a notification was missed (a lost
listening connection). A pass that publishes nothing while records wait (the broker refuses them)
waits longer each time; a database outage is retried with the same backoff. A subclass says what
one pass is (`publish_pending`), the channel, and the failure counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from prometheus_client import Counter

from earful.core.metrics import ERRORS
from earful.core.retry import Backoff

log = logging.getLogger(__name__)


class NotifiedOutbox:
    """Base of an outbox publisher: `publish_pending` (one pass) is the subclass's; `run` is the loop."""

    channel: str = ""  # the PostgreSQL channel committing transactions notify
    what: str = "records"  # what the log lines call the records
    service: str = "storage"

    def __init__(self, pool: asyncpg.Pool, failures: Counter, *, interval_s: float) -> None:
        self.pool = pool
        self.failures = failures  # labelled by error kind
        self.interval_s = interval_s
        self._wake = asyncio.Event()

    async def publish_pending(self) -> tuple[int, int]:
        """One pass: (published, still unpublished); unpublished -1 when another publisher is at it."""
        raise NotImplementedError

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish as records are committed until `stopping` is set; outages are waited out with backoff."""
        listener: asyncpg.Connection | None = None
        backoff = Backoff(self.interval_s, 60.0)
        try:
            while not stopping.is_set():
                delay = self.interval_s
                try:
                    if listener is None:
                        listener = await self.pool.acquire()
                        await listener.add_listener(self.channel, self._notified)
                    self._wake.clear()
                    published, left = await self.publish_pending()
                    if left > 0 and not published:  # the broker refuses: wait longer each time
                        delay = backoff.next_delay()
                    else:
                        backoff.reset()
                        if published and left > 0:  # more than one pass's worth: go on at once
                            delay = 0
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    self.failures.labels("storage_error").inc()
                    ERRORS.labels(self.service, "storage_error").inc()
                    log.warning(f"could not read unpublished {self.what}; retrying", extra={"error": repr(exc)})
                    await self._release(listener)
                    listener = None
                    delay = backoff.next_delay()
                if await wait_for_wake(stopping, self._wake, delay):
                    return
        finally:
            await self._release(listener)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _release(self, listener: asyncpg.Connection | None) -> None:
        """Stop listening and give the connection back to the pool."""
        if listener is not None:
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
                await listener.remove_listener(self.channel, self._notified)
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
                await self.pool.release(listener)


async def wait_for_wake(stopping: asyncio.Event, wake: asyncio.Event, delay: float) -> bool:
    """Wait up to `delay` for a notification or the stop; True when stopping."""
    if delay > 0 and not wake.is_set():
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())}
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
    return stopping.is_set()
