"""Webhook delivery against a real local HTTP receiver: retries, Retry-After, rejections, signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY

from earful.alerting.delivery import RETRYABLE, Outcome, WebhookSender, sign
from earful.core.http import HttpServer

PAYLOAD = {
    "alert_id": "25395b3dfe0ccc60-1741944600000",
    "status": "firing",
    "watchlist_id": "acme-air",
    "summary": "acme-air: 27 mentions in 10s, 14x the usual 2.0",
    "observed": 27.0,
    "labels": {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical"},
}
KEY = "25395b3dfe0ccc60-1741944600000:firing"
SECRET = "whsec-test-0123456789"


@dataclass
class Step:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    at: float
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Answers POST /hook/<name> with the planned steps (the last one repeats) and records requests."""

    def __init__(self) -> None:
        self.plans: dict[str, list[Step]] = {}
        self.seen: dict[str, list[Seen]] = {}
        self.app = FastAPI()

        @self.app.post("/hook/{name}")
        async def hook(name: str, request: Request) -> Response:
            body = await request.body()
            requests = self.seen.setdefault(name, [])
            requests.append(Seen(time.perf_counter(), dict(request.headers), body))
            plan = self.plans.get(name) or [Step()]
            step = plan[min(len(requests) - 1, len(plan) - 1)]
            if step.delay_s:
                await asyncio.sleep(step.delay_s)
            return Response(status_code=step.status, headers=step.headers)

    def reset(self) -> None:
        self.plans.clear()
        self.seen.clear()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    receiver: Receiver
    base: str

    def url(self, name: str) -> str:
        return f"{self.base}/hook/{name}"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    receiver = Receiver()
    port = _free_port()
    http = HttpServer(receiver.app, "127.0.0.1", port)
    await http.start()
    try:
        yield Server(receiver, f"http://127.0.0.1:{port}")
    finally:
        await http.stop()


@pytest.fixture
async def srv(server: Server) -> AsyncIterator[Server]:
    server.receiver.reset()
    yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as c:
        yield c


def _sender(client: httpx.AsyncClient, *urls: str, secret: str | None = None, **kw: Any) -> WebhookSender:
    kw.setdefault("base_delay_s", 0.001)
    kw.setdefault("max_delay_s", 1.0)
    return WebhookSender(tuple(urls), secret, client, **kw)


def _counter(outcome: str) -> float:
    return REGISTRY.get_sample_value("earful_webhook_deliveries_total", {"outcome": outcome}) or 0.0


# --- outcomes ---------------------------------------------------------------------------------


async def test_delivered_first_time(srv: Server, client: httpx.AsyncClient) -> None:
    before = _counter("delivered")
    outcomes = await _sender(client, srv.url("ok")).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(srv.url("ok"), True, 1, "delivered")]
    assert len(srv.receiver.seen["ok"]) == 1
    assert _counter("delivered") == before + 1


async def test_503_then_200_is_retried(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["flaky"] = [Step(503), Step(200)]
    outcomes = await _sender(client, srv.url("flaky")).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(srv.url("flaky"), True, 2, "delivered")]
    first, second = srv.receiver.seen["flaky"]
    assert first.body == second.body
    assert first.headers["x-earful-idempotency-key"] == second.headers["x-earful-idempotency-key"] == KEY


async def test_429_with_retry_after_zero_is_retried_at_once(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["throttled"] = [Step(429, {"Retry-After": "0"}), Step(429, {"Retry-After": "0"}), Step(200)]
    started = time.perf_counter()
    outcomes = await _sender(client, srv.url("throttled")).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(srv.url("throttled"), True, 3, "delivered")]
    assert time.perf_counter() - started < 0.5


async def test_retry_after_is_honoured(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["busy"] = [Step(503, {"Retry-After": "0.3"}), Step(200)]
    outcomes = await _sender(client, srv.url("busy")).deliver(PAYLOAD, KEY)
    assert outcomes[0].delivered and outcomes[0].attempts == 2
    first, second = srv.receiver.seen["busy"]
    assert second.at - first.at >= 0.29


async def test_retry_after_is_capped_by_max_delay(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["hostile"] = [Step(503, {"Retry-After": "3600"}), Step(200)]
    started = time.perf_counter()
    outcomes = await _sender(client, srv.url("hostile"), max_delay_s=0.05).deliver(PAYLOAD, KEY)
    assert outcomes[0].delivered
    assert time.perf_counter() - started < 1.0


async def test_400_is_not_retried(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["bad"] = [Step(400)]
    before = _counter("rejected")
    outcomes = await _sender(client, srv.url("bad")).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(srv.url("bad"), False, 1, "rejected:400")]
    assert len(srv.receiver.seen["bad"]) == 1
    assert _counter("rejected") == before + 1


@pytest.mark.parametrize("status", [401, 404, 410, 422])
async def test_other_client_errors_are_not_retried(srv: Server, client: httpx.AsyncClient, status: int) -> None:
    name = f"status-{status}"
    srv.receiver.plans[name] = [Step(status)]
    (outcome,) = await _sender(client, srv.url(name)).deliver(PAYLOAD, KEY)
    assert (outcome.delivered, outcome.attempts, outcome.reason) == (False, 1, f"rejected:{status}")


async def test_persistent_503_gives_up_after_max_attempts(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["down"] = [Step(503)]
    before = _counter("gave_up")
    outcomes = await _sender(client, srv.url("down"), max_attempts=3).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(srv.url("down"), False, 3, "gave_up:http_503")]
    assert len(srv.receiver.seen["down"]) == 3
    assert _counter("gave_up") == before + 1


async def test_unreachable_receiver_gives_up(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook/nobody"  # nothing listens there
    outcomes = await _sender(client, url, max_attempts=2).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(url, False, 2, "gave_up:ConnectError")]


async def test_slow_receiver_times_out_and_gives_up(srv: Server) -> None:
    srv.receiver.plans["slow"] = [Step(200, delay_s=0.5)]
    async with httpx.AsyncClient(timeout=0.1, trust_env=False) as short:
        outcomes = await _sender(short, srv.url("slow"), max_attempts=2).deliver(PAYLOAD, KEY)
    assert outcomes == [Outcome(srv.url("slow"), False, 2, "gave_up:ReadTimeout")]


def test_retryable_statuses() -> None:
    assert {429, 503, 502, 504, 500, 408} <= RETRYABLE
    assert not ({400, 401, 403, 404, 409, 410, 422} & RETRYABLE)


# --- request contents and signatures ----------------------------------------------------------


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over b'{timestamp}.' + body."""
    timestamp = headers["x-earful-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-earful-signature", ""), f"v1={expected}")


async def test_request_is_signed_and_verifiable(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["signed"] = [Step(503), Step(204)]
    outcomes = await _sender(client, srv.url("signed"), secret=SECRET).deliver(PAYLOAD, KEY)
    assert outcomes[0].delivered
    for seen in srv.receiver.seen["signed"]:
        h = seen.headers
        assert _verify(SECRET, h, seen.body)
        assert h["x-earful-signature"] == "v1=" + sign(SECRET, h["x-earful-timestamp"], seen.body)
        assert not _verify("another-secret", h, seen.body)
        assert not _verify(SECRET, h, seen.body.replace(b"firing", b"resolved"))
        assert not _verify(SECRET, {**h, "x-earful-timestamp": str(int(h["x-earful-timestamp"]) + 1)}, seen.body)
        assert abs(int(h["x-earful-timestamp"]) - time.time()) < 10
        assert h["content-type"] == "application/json"
        assert h["user-agent"] == "earful-alerting/1"
        assert h["x-earful-idempotency-key"] == KEY
        assert json.loads(seen.body) == PAYLOAD
        assert seen.body == json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True).encode()


async def test_no_signature_without_a_secret(srv: Server, client: httpx.AsyncClient) -> None:
    await _sender(client, srv.url("unsigned")).deliver(PAYLOAD, KEY)
    (seen,) = srv.receiver.seen["unsigned"]
    assert "x-earful-signature" not in seen.headers
    assert "x-earful-timestamp" in seen.headers


def test_sign_known_value() -> None:
    body = b'{"alert_id":"a","status":"firing"}'
    assert sign("secret", "1741944604", body) == hmac.new(
        b"secret", b'1741944604.{"alert_id":"a","status":"firing"}', hashlib.sha256
    ).hexdigest()
    assert sign("secret", "1741944604", body) != sign("secret", "1741944605", body)
    assert len(sign("k", "0", b"")) == 64


# --- several receivers ------------------------------------------------------------------------


async def test_every_receiver_gets_its_own_outcome_in_order(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["r-bad"] = [Step(400)]
    srv.receiver.plans["r-flaky"] = [Step(502), Step(200)]
    urls = (srv.url("r-ok"), srv.url("r-bad"), srv.url("r-flaky"))
    outcomes = await _sender(client, *urls).deliver(PAYLOAD, KEY)
    assert [(o.url, o.delivered, o.attempts, o.reason) for o in outcomes] == [
        (urls[0], True, 1, "delivered"),
        (urls[1], False, 1, "rejected:400"),
        (urls[2], True, 2, "delivered"),
    ]


async def test_a_slow_receiver_does_not_delay_another(srv: Server, client: httpx.AsyncClient) -> None:
    srv.receiver.plans["laggard"] = [Step(503, {"Retry-After": "0.4"}), Step(200)]
    started = time.perf_counter()
    outcomes = await _sender(client, srv.url("laggard"), srv.url("prompt")).deliver(PAYLOAD, KEY)
    assert all(o.delivered for o in outcomes)
    (prompt,) = srv.receiver.seen["prompt"]
    assert prompt.at - started < 0.3
    assert srv.receiver.seen["laggard"][1].at - started >= 0.39


async def test_no_receivers(client: httpx.AsyncClient) -> None:
    assert await _sender(client).deliver(PAYLOAD, KEY) == []


async def test_a_malformed_url_fails_only_its_own_delivery(srv: Server, client: httpx.AsyncClient) -> None:
    bad = "http://127.0.0.1:80a/hook/typo"
    outcomes = await _sender(client, srv.url("fine"), bad, max_attempts=1).deliver(PAYLOAD, KEY)
    assert [(o.url, o.delivered) for o in outcomes] == [(srv.url("fine"), True), (bad, False)]
