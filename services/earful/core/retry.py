"""One way to wait and try again: exponential backoff with jitter, stoppable by an event.

Every loop that retries (the ingest publisher and its connectors, the storage writer, alerting's
start-up and delivery, the live watchlists) takes its delays from here, so a broker or database
outage is ridden out the same way everywhere and a shutdown never waits for a backoff to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

#: The share of the computed delay actually slept: uniform(low, high) × delay. Half to full
#: spreads replicas that failed together without ever retrying at once.
DEFAULT_JITTER = (0.5, 1.0)
#: Full jitter (uniform(0, 1) × delay): the spread AWS recommends for many clients of one server.
FULL_JITTER = (0.0, 1.0)


def backoff_delay(attempt: int, base_s: float, max_s: float,
                  jitter: tuple[float, float] = DEFAULT_JITTER) -> float:
    """The delay before retry number `attempt` (1-based): min(max, base × 2^(attempt-1)) × jitter."""
    low, high = jitter
    return min(max_s, base_s * 2.0 ** min(max(attempt, 1) - 1, 30)) * random.uniform(low, high)


@dataclass
class Backoff:
    """Consecutive-failure counter that hands out growing delays; a success resets it."""

    base_s: float = 0.5
    max_s: float = 30.0
    jitter: tuple[float, float] = DEFAULT_JITTER
    attempt: int = 0

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before trying again."""
        self.attempt += 1
        return backoff_delay(self.attempt, self.base_s, self.max_s, self.jitter)

    def reset(self) -> None:
        """The operation succeeded: the next failure starts from the base delay again."""
        self.attempt = 0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if `stop` was set meanwhile (the caller should return)."""
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def retry(operation: Callable[[], Awaitable[T]], *, retry_on: tuple[type[BaseException], ...],
                backoff: Backoff, stop: asyncio.Event | None = None,
                on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """Await `operation()` until it succeeds, waiting `backoff`'s delays after each failure in `retry_on`.

    `on_retry(exc, delay)` is called before each wait (log it, count it). When `stop` is set during
    a wait, asyncio.CancelledError is raised from the last failure: the caller is shutting down and
    must not act as if the operation succeeded.
    """
    while True:
        try:
            result = await operation()
        except retry_on as exc:
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            elif await wait_or_stop(stop, delay):
                raise asyncio.CancelledError("stopped before the operation succeeded") from exc
        else:
            backoff.reset()
            return result


async def unless_stopped(coro: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await `coro` unless `stop` is set first, then cancel it and return None (for reads that may block for long)."""
    work = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if work.done():
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return None
