"""Per-client rate limiting of the push API: a token bucket of mentions per API key."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """`rate` mentions per second per client with bursts up to `burst`; rate 0 = unlimited.

    Buckets of clients idle long enough to be full again are dropped, so memory stays bounded
    by the number of clients active within one burst period.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str, n: int) -> float:
        """Take `n` tokens for `client`: 0.0 if allowed, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        need = min(float(n), self.burst)  # a batch larger than the burst waits for a full bucket
        if tokens >= need:
            tokens -= need
            wait = 0.0
        else:
            wait = (need - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # re-inserted: most recently active last
        self._forget_idle(now)
        return wait

    def give_back(self, client: str, n: int) -> None:
        """Return tokens taken for a batch that was not accepted after all (503), so its retry is not a 429."""
        if self.enabled and client in self._buckets:
            tokens, at = self._buckets[client]
            self._buckets[client] = (min(self.burst, tokens + min(float(n), self.burst)), at)

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        while self._buckets:
            oldest = next(iter(self._buckets))
            _tokens, at = self._buckets[oldest]
            if len(self._buckets) > self._max_clients or now - at >= full_after:
                del self._buckets[oldest]
            else:
                break


def retry_after_header(seconds: float) -> str:
    """Seconds for a Retry-After header: a whole number, at least 1."""
    return str(max(1, math.ceil(seconds)))
