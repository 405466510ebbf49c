"""HTTP plumbing shared by the services: ops endpoints and an embeddable uvicorn server.

Every service exposes ``/healthz``, ``/readyz`` and ``/metrics``. Ingest and storage add their own
API routes to the same FastAPI app; enrichment and alerting serve only these. The server runs
inside the service's own event loop and leaves signal handling to the service, so one SIGTERM
handler decides the shutdown order (stop taking work, flush, commit, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timezone
from email.utils import parsedate_to_datetime

import uvicorn
from fastapi import FastAPI, HTTPException, Response, Security
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader

from earful.core.auth import ApiKeys
from earful.core.health import Health
from earful.core.metrics import render_latest


RETRY_AFTER_MAX_S = 3600.0  # a server asking for longer is not taken at its word: an hour at most


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds an HTTP Retry-After header asks for (delta-seconds or an HTTP date, which is always
    GMT), at most RETRY_AFTER_MAX_S; 0 when absent, unreadable, negative or not a finite number,
    so a broken header never stalls a client."""
    value = (value or "").strip()
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are GMT
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds <= 0:
        return 0.0
    return min(seconds, RETRY_AFTER_MAX_S)


def add_ops_routes(app: FastAPI, health: Health) -> None:
    """Attach /healthz, /readyz and /metrics to `app`."""

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process and its event loop run.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": health.service}

    @app.get("/readyz", tags=["ops"], summary="Readiness: every dependency is reachable.",
             responses={503: {"description": "Not ready: `checks` names each failing dependency"}})
    async def readyz() -> JSONResponse:
        ok, checks = await health.readiness()
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics.", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        body, content_type = render_latest()
        return Response(body, media_type=content_type)


def api_key_guard(api_keys: frozenset[str]) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency requiring one of `api_keys` in X-API-Key (none configured: open).

    Keys are compared in constant time (`ApiKeys`), and the header is declared as a security
    scheme, so the OpenAPI document tells clients how to authenticate.
    """
    keys = ApiKeys({str(i): key for i, key in enumerate(sorted(api_keys))})
    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of the configured API keys.")

    async def require_key(key: str | None = Security(header)) -> None:
        if keys.enabled and keys.identify(key) is None:
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header",
                                headers={"WWW-Authenticate": "X-API-Key"})

    return require_key


def ops_app(health: Health, title: str) -> FastAPI:
    """A FastAPI app with only the ops endpoints (for stream-processing services)."""
    app = FastAPI(title=title, version="1")
    add_ops_routes(app, health)
    return app


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the service owns signals
        yield


class HttpServer:
    """Runs a FastAPI app on uvicorn as a task of the current event loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self.host, self.port = host, port

    async def start(self) -> None:
        """Start serving; returns once the socket is bound (raises if the port is taken)."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the bind error
                raise OSError(f"HTTP server on {self.host}:{self.port} exited during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting connections and let in-flight requests finish."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
