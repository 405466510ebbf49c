"""Liveness and readiness.

``/healthz`` answers 200 while the process's event loop runs (a wedged loop cannot answer).
``/readyz`` runs every registered dependency check (broker reachable, database reachable, model
loaded...) with a timeout and answers 503 naming each failing dependency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

Check = Callable[[], Awaitable[None]]


class Health:
    """The set of readiness checks of one service."""

    def __init__(self, service: str, timeout_s: float = 2.0) -> None:
        self.service = service
        self.timeout_s = timeout_s
        self._checks: dict[str, Check] = {}
        self.started = False

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """(all ok, name → 'ok' or the failure) — checks run concurrently."""
        results: dict[str, str] = {}

        async def run(name: str, check: Check) -> None:
            try:
                await asyncio.wait_for(check(), self.timeout_s)
                results[name] = "ok"
            except TimeoutError:
                results[name] = f"timed out after {self.timeout_s:g}s"
            except Exception as exc:  # a readiness probe reports, never raises
                results[name] = f"{type(exc).__name__}: {exc}"

        await asyncio.gather(*(run(n, c) for n, c in self._checks.items()))
        if not self.started:
            results["started"] = "still starting"
        return all(v == "ok" for v in results.values()), results


def tcp_check(hostports: str, default_port: int) -> Check:
    """A check that at least one of `host:port,...` accepts a TCP connection."""

    async def check() -> None:
        errors = []
        for hp in hostports.split(","):
            parts = urlsplit("//" + hp.strip())
            try:
                _, writer = await asyncio.open_connection(parts.hostname, parts.port or default_port)
                writer.close()
                return
            except OSError as exc:
                errors.append(f"{hp.strip()}: {exc.strerror or exc}")
        raise ConnectionError("; ".join(errors))

    return check
