"""`earful webhook-receiver`: records every notification POSTed to it (and verifies signatures).

With a secret, a request is accepted only when its Standard Webhooks signature verifies
(`webhook-signature` over `webhook-id`, `webhook-timestamp` and the body) and its timestamp is
within `tolerance_s` (5 minutes) of the clock, so a captured request cannot be replayed; a
repeated `webhook-id` is acknowledged and dropped (retries of one delivery share it).

The sink of local stacks, of the compose file's `webhook-sink` and of the tests; it sits beside
the CLI, not in the alerting service, which only sends to it.

Notifications have Alertmanager's webhook shape (`status`, `groupKey`, `alerts[]`, each alert
with `labels`, `annotations` and the Earful alert event under `earful`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from earful.alerting.notification.signing import DEFAULT_TOLERANCE_S, WEBHOOK_ID, SignatureError, verify
from earful.core.http import HttpServer
from earful.core.runtime import wait_for_shutdown


@dataclass
class Received:
    payload: dict[str, Any]
    received_at: float
    idempotency_key: str | None
    headers: dict[str, str] = field(default_factory=dict)  # as received (names lower-case)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of the notification (Alertmanager's alerts[])."""
        return [a for a in self.payload.get("alerts") or [] if isinstance(a, dict)]


@dataclass
class WebhookReceiver:
    """Collects alerts; dedups by webhook-id (else the idempotency key) like a well-behaved receiver should."""

    secret: str | None = None
    tolerance_s: float = DEFAULT_TOLERANCE_S
    url: str | None = None  # where alerts are posted to, once a server runs the app
    out: Path | None = None
    echo: bool = False
    alerts: list[Received] = field(default_factory=list)
    duplicates: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> FastAPI:
        app = FastAPI(title="Earful webhook receiver")

        @app.post("/", include_in_schema=False)
        @app.post("/alerts")
        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            if self.secret:
                try:
                    verify(self.secret, headers, body, tolerance_s=self.tolerance_s)
                except SignatureError as exc:
                    return JSONResponse({"error": f"bad signature: {exc}"}, status_code=401)
            try:
                payload = json.loads(body)
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
            key = headers.get(WEBHOOK_ID) or headers.get("x-earful-idempotency-key")
            if key and any(r.idempotency_key == key for r in self.alerts):
                self.duplicates += 1
                return JSONResponse({"ok": True, "duplicate": True})
            item = Received(payload, time.time(), key, headers)
            self.alerts.append(item)
            if self.out:
                with self.out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"received_at": item.received_at, "alert": payload}) + "\n")
            if self.echo:
                for alert in item.alerts:
                    summary = (alert.get("annotations") or {}).get("summary") or (alert.get("earful") or {}).get("summary")
                    print(f"ALERT {str(alert.get('status', '?')).upper()}: {summary}", flush=True)
            self.arrived.set()
            return JSONResponse({"ok": True})

        @app.get("/healthz")
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        return app

    def alerts_with(self, status: str) -> list[tuple[dict[str, Any], float]]:
        """Each distinct alert (by alert id) received with `status`, first receipt, in order."""
        seen: dict[str | None, tuple[dict[str, Any], float]] = {}
        for r in self.alerts:
            for a in r.alerts:
                event = a.get("earful") or {}
                alert_id: str | None = event.get("alert_id") or a.get("fingerprint")
                if a.get("status") == status and alert_id not in seen:
                    seen[alert_id] = (a, r.received_at)
        return list(seen.values())


def run_receiver(host: str, port: int, out: Path | None, secret: str | None) -> int:
    """`earful webhook-receiver`: run until SIGTERM/Ctrl-C, printing each alert."""

    async def main() -> None:
        receiver = WebhookReceiver(secret=secret, out=out, echo=True)
        server = HttpServer(receiver.app(), host, port)
        await server.start()
        print(f"webhook receiver listening on http://{host}:{port}/alerts", file=sys.stderr, flush=True)
        await wait_for_shutdown()
        await server.stop()

    asyncio.run(main())
    return 0
