"""Delivery against real local HTTP servers: retries, Retry-After, final rejections, a hanging
receiver, the circuit breaker, signatures and the SSRF guard. Backoff sleeps are recorded by an
injected sleep, so no test waits for real backoff."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from fastapi import FastAPI, Response
from fastapi import Request as HttpRequest
from prometheus_client import REGISTRY

from earful.alerting.notification.delivery import (
    RETRYABLE,
    CircuitBreaker,
    Deliverer,
    Outcome,
    make_client,
    retry_after_s,
)
from earful.alerting.notification.receivers import Request, sign, signed_headers
from earful.alerting.notification.routing import Receiver
from earful.alerting.notification.targets import TargetPolicy
from earful.core.http import HttpServer

SECRET = "whsec-test-0123456789"
BODY = json.dumps({"version": "4", "status": "firing", "alerts": [{"labels": {"watchlist": "acme-air"}}]}).encode()
KEY = "5f1d2c"
LOCAL = TargetPolicy(("127.0.0.0/8",))


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


class Hooks:
    """Answers POST /hook/<name> with the planned steps (the last one repeats) and records requests."""

    def __init__(self) -> None:
        self.plans: dict[str, list[Step]] = {}
        self.seen: dict[str, list[Seen]] = {}
        self.app = FastAPI()

        @self.app.post("/hook/{name}")
        async def hook(name: str, request: HttpRequest) -> Response:
            body = await request.body()
            requests = self.seen.setdefault(name, [])
            requests.append(Seen(time.perf_counter(), dict(request.headers), body))
            plan = self.plans.get(name) or [Step()]
            step = plan[min(len(requests) - 1, len(plan) - 1)]
            if step.delay_s:
                await asyncio.sleep(step.delay_s)  # not a wait: a receiver that is slow to answer, as scripted
            return Response(status_code=step.status, headers=step.headers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    hooks: Hooks
    port: int

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook/{name}"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    hooks = Hooks()
    port = _free_port()
    http = HttpServer(hooks.app, "127.0.0.1", port)
    await http.start()
    try:
        yield Server(hooks, port)
    finally:
        await http.stop()


@pytest.fixture
async def srv(server: Server) -> AsyncIterator[Server]:
    server.hooks.plans.clear()
    server.hooks.seen.clear()
    yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    c = make_client(2.0, LOCAL)
    yield c
    await c.aclose()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def deliverer(client: httpx.AsyncClient, url: str, *, secret: str | None = SECRET, sleeps: Sleeps | None = None,
              **kw: object) -> Deliverer:
    kw.setdefault("base_delay_s", 0.01)
    return Deliverer(Receiver("hook", "webhook", url, secret=secret), client, sleep=sleeps or Sleeps(), **kw)  # type: ignore[arg-type]


def request(secret: str | None = SECRET) -> Request:
    headers = {"Content-Type": "application/json", "User-Agent": "earful-alerting/2", "X-Earful-Idempotency-Key": KEY}
    return Request(BODY, signed_headers(headers, secret, BODY))


def _count(receiver: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("earful_webhook_deliveries_total", {"receiver": receiver, "outcome": outcome}) or 0.0


# --- outcomes ---------------------------------------------------------------------------------


async def test_delivered_first_time(srv: Server, client: httpx.AsyncClient) -> None:
    before = _count("hook", "delivered")
    outcome = await deliverer(client, srv.url("ok")).send(request())
    assert outcome == Outcome(True, 1, "delivered", 200) and outcome.outcome == "delivered"
    assert len(srv.hooks.seen["ok"]) == 1
    assert _count("hook", "delivered") == before + 1


async def test_500s_then_success_is_retried_with_the_same_body_and_key(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["flaky"] = [Step(500), Step(502), Step(503), Step(200)]
    sleeps = Sleeps()
    outcome = await deliverer(client, srv.url("flaky"), sleeps=sleeps).send(request())
    assert outcome == Outcome(True, 4, "delivered", 200)
    seen = srv.hooks.seen["flaky"]
    assert len({s.body for s in seen}) == 1
    assert {s.headers["x-earful-idempotency-key"] for s in seen} == {KEY}
    assert len(sleeps.delays) == 3 and all(0 <= d <= 0.01 * 2 ** i for i, d in enumerate(sleeps.delays))


async def test_429_with_retry_after_is_honoured(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["throttled"] = [Step(429, {"Retry-After": "7"}), Step(200)]
    sleeps = Sleeps()
    outcome = await deliverer(client, srv.url("throttled"), sleeps=sleeps).send(request())
    assert outcome.delivered and outcome.attempts == 2
    assert sleeps.delays == [7.0]  # the receiver's wish, not the (tiny) backoff


async def test_retry_after_as_an_http_date(srv: Server, client: httpx.AsyncClient) -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    srv.hooks.plans["dated"] = [Step(503, {"Retry-After": later}), Step(204)]
    sleeps = Sleeps()
    assert (await deliverer(client, srv.url("dated"), sleeps=sleeps).send(request())).delivered
    assert 25 < sleeps.delays[0] <= 30


async def test_retry_after_is_capped_by_the_longest_delay(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["hostile"] = [Step(503, {"Retry-After": "86400"}), Step(200)]
    sleeps = Sleeps()
    assert (await deliverer(client, srv.url("hostile"), sleeps=sleeps, max_delay_s=5.0).send(request())).delivered
    assert sleeps.delays == [5.0]


def test_retry_after_parsing() -> None:
    def resp(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value} if value else {})

    assert retry_after_s(resp("12")) == 12.0 and retry_after_s(resp("")) == 0.0
    assert retry_after_s(resp("soon")) == 0.0 and retry_after_s(resp("-3")) == 0.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_client_errors_are_final(srv: Server, client: httpx.AsyncClient, status: int) -> None:
    name = f"status-{status}"
    srv.hooks.plans[name] = [Step(status)]
    outcome = await deliverer(client, srv.url(name)).send(request())
    assert (outcome.delivered, outcome.attempts, outcome.reason, outcome.outcome) == (False, 1, f"rejected:{status}", "failed")
    assert len(srv.hooks.seen[name]) == 1


async def test_persistent_503_is_dead_lettered_after_max_attempts(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["down"] = [Step(503)]
    before = _count("hook", "dead_lettered")
    outcome = await deliverer(client, srv.url("down"), max_attempts=3).send(request())
    assert outcome == Outcome(False, 3, "gave_up:http_503", 503) and outcome.outcome == "dead_lettered"
    assert len(srv.hooks.seen["down"]) == 3
    assert _count("hook", "dead_lettered") == before + 1


async def test_unreachable_receiver_gives_up(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook/nobody"
    outcome = await deliverer(client, url, max_attempts=2).send(request())
    assert (outcome.delivered, outcome.attempts, outcome.reason) == (False, 2, "gave_up:ConnectError")


async def test_a_hanging_receiver_times_out_and_does_not_delay_another(srv: Server) -> None:
    srv.hooks.plans["hang"] = [Step(200, delay_s=2)]  # far beyond the 0.3 s timeout
    async with make_client(0.3, LOCAL) as short:
        started = time.perf_counter()
        hanging = asyncio.create_task(deliverer(short, srv.url("hang"), max_attempts=2).send(request()))
        prompt = await deliverer(short, srv.url("prompt")).send(request())
        prompt_done = time.perf_counter() - started
        outcome = await hanging
    assert prompt.delivered and prompt_done < 0.25
    assert (outcome.delivered, outcome.attempts, outcome.reason) == (False, 2, "gave_up:ReadTimeout")
    assert time.perf_counter() - started < 3


def test_retryable_statuses() -> None:
    assert {408, 425, 429, 500, 502, 503, 504} == RETRYABLE


# --- the circuit breaker ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_circuit_opens_after_consecutive_failures_and_a_trial_closes_it() -> None:
    clock = Clock()
    cb = CircuitBreaker("r", failures=3, open_s=30, clock=clock)
    for _ in range(2):
        cb.record(False)
    assert cb.state == "closed" and cb.wait_s() == 0
    cb.record(False)
    assert cb.state == "open" and cb.wait_s() == pytest.approx(30)
    clock.t += 30
    assert cb.state == "half_open" and cb.wait_s() == 0  # one trial goes through ...
    assert cb.wait_s() > 0  # ... and only one
    cb.record(False)
    assert cb.state == "open"  # the trial failed: open again
    clock.t += 31
    assert cb.wait_s() == 0
    cb.record(True)
    assert cb.state == "closed" and cb.consecutive == 0


async def test_an_open_circuit_sends_no_requests(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["broken"] = [Step(500)]
    clock = Clock()
    circuit = CircuitBreaker("broken", failures=2, open_s=60, clock=clock)
    sleeps = Sleeps()
    d = Deliverer(Receiver("broken", "webhook", srv.url("broken")), client, max_attempts=5, base_delay_s=0.01,
                  max_delay_s=120, circuit=circuit, sleep=sleeps)
    outcome = await d.send(request(None))
    assert outcome.outcome == "dead_lettered" and outcome.reason == "gave_up:circuit_open"
    assert len(srv.hooks.seen["broken"]) == 2  # the rest were refused by the open circuit
    assert sleeps.delays[2:] and all(s >= 59 for s in sleeps.delays[2:])  # waited for the circuit, not hammered


# --- signatures -----------------------------------------------------------------------------------


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over b'{timestamp}.' + body."""
    timestamp = headers["x-earful-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-earful-signature", ""), f"v1={expected}")


async def test_every_attempt_is_signed_and_verifiable(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["signed"] = [Step(503), Step(204)]
    assert (await deliverer(client, srv.url("signed")).send(request())).delivered
    for seen in srv.hooks.seen["signed"]:
        h = seen.headers
        assert _verify(SECRET, h, seen.body)
        assert not _verify("another-secret", h, seen.body)
        assert not _verify(SECRET, h, seen.body.replace(b"firing", b"resolved"))
        assert not _verify(SECRET, {**h, "x-earful-timestamp": str(int(h["x-earful-timestamp"]) + 1)}, seen.body)
        assert abs(int(h["x-earful-timestamp"]) - time.time()) < 10
        assert h["content-type"] == "application/json" and h["x-earful-idempotency-key"] == KEY
        assert seen.body == BODY


async def test_no_signature_without_a_secret(srv: Server, client: httpx.AsyncClient) -> None:
    await deliverer(client, srv.url("unsigned"), secret=None).send(request(None))
    (seen,) = srv.hooks.seen["unsigned"]
    assert "x-earful-signature" not in seen.headers and "x-earful-timestamp" in seen.headers


def test_sign_known_value() -> None:
    body = b'{"alert_id":"a","status":"firing"}'
    assert sign("secret", "1741944604", body) == hmac.new(
        b"secret", b'1741944604.{"alert_id":"a","status":"firing"}', hashlib.sha256).hexdigest()
    assert len(sign("k", "0", b"")) == 64


# --- SSRF guard -----------------------------------------------------------------------------------


@pytest.mark.parametrize("address,refused", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.9", True), ("192.168.1.1", True), ("169.254.169.254", True),
    ("::1", True), ("fe80::1", True), ("fd00::1", True), ("0.0.0.0", True), ("::ffff:127.0.0.1", True),
    ("100.64.0.1", True), ("8.8.8.8", False), ("2606:4700:4700::1111", False),
])
def test_private_loopback_and_link_local_addresses_are_refused(address: str, refused: bool) -> None:
    assert (TargetPolicy().refusal(address) is not None) is refused


def test_the_allow_list_permits_named_networks_only() -> None:
    policy = TargetPolicy(("127.0.0.0/8", "10.9.0.0/16"))
    assert policy.refusal("127.0.0.1") is None and policy.refusal("10.9.3.4") is None
    assert policy.refusal("10.8.0.1") is not None and policy.refusal("192.168.0.1") is not None


async def test_a_loopback_target_is_refused_without_the_allow_list(srv: Server) -> None:
    async with make_client(2.0, TargetPolicy()) as guarded:
        for host in ("127.0.0.1", "localhost"):  # a literal address, and a name that resolves to one
            outcome = await deliverer(guarded, srv.url("private", host)).send(request())
            assert outcome.outcome == "failed" and outcome.reason.startswith("refused:") and outcome.attempts == 1
    assert "private" not in srv.hooks.seen  # nothing was sent


async def test_redirects_are_not_followed(srv: Server, client: httpx.AsyncClient) -> None:
    srv.hooks.plans["moved"] = [Step(307, {"Location": "http://169.254.169.254/latest/meta-data"})]
    outcome = await deliverer(client, srv.url("moved")).send(request())
    assert outcome.reason == "rejected:307" and outcome.outcome == "failed"
