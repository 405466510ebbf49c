"""Notification delivery on real PostgreSQL and real local HTTP receivers (webhook, Slack,
PagerDuty-shaped), with an injected clock: grouping, dedup across a restart, resolved, retries,
dead letters, silences and acknowledgements through the HTTP API (as the service builds it, behind
the request guard: hostile input, the silence cap, schemathesis), and the notification_log
contract storage reads."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from fastapi import FastAPI, Response
from fastapi import Request as HttpRequest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from earful.alerting.api import build_router
from earful.alerting.detection import fingerprint
from earful.alerting.notification.delivery import CircuitBreaker, Deliverer, Outcome, make_client
from earful.alerting.notification.dispatcher import Dispatcher
from earful.alerting.notification.routing import DEFAULT_INHIBIT, NotifyConfig, Receiver, Route
from earful.alerting.notification.store import AlertStore, reset_local_state
from earful.alerting.notification.targets import TargetPolicy
from earful.core.apikeys import parse_api_keys
from earful.core.auth import KeyRing
from earful.core.health import Health
from earful.core.http import HttpServer, RequestLimits, ops_app
from earful.core.migrate import migrate

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 7, 30, tzinfo=timezone.utc)
SECRET = "hook-secret"


@dataclass
class Hooks:
    plans: dict[str, list[int]] = field(default_factory=dict)
    seen: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{name}")
        async def hook(name: str, request: HttpRequest) -> Response:
            got = self.seen.setdefault(name, [])
            got.append((dict(request.headers), await request.body()))
            plan = self.plans.get(name) or [200]
            return Response(status_code=plan[min(len(got) - 1, len(plan) - 1)])

        return app

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.seen.get(name, [])]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
async def hooks() -> AsyncIterator[tuple[Hooks, str]]:
    h = Hooks()
    port = _free_port()
    server = HttpServer(h.app(), "127.0.0.1", port)
    await server.start()
    yield h, f"http://127.0.0.1:{port}"
    await server.stop()


@pytest.fixture(scope="module")
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_url, min_size=1, max_size=4)
    async with p.acquire() as conn:
        assert "020_alerting" in await migrate(conn)
    yield p
    await p.close()


@pytest.fixture
async def store(pool: asyncpg.Pool) -> AlertStore:
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE alert_state, alert_groups, alert_nflog, notification_log, silences, alert_acks")
    return AlertStore(pool)


def config(base: str) -> NotifyConfig:
    receivers = {
        "ops": Receiver("ops", "webhook", f"{base}/ops", secret=SECRET),
        "slack": Receiver("slack", "slack", f"{base}/slack"),
        "pd": Receiver("pd", "pagerduty", f"{base}/pd", routing_key="rk"),
        "flaky": Receiver("flaky", "webhook", f"{base}/flaky"),
        "down": Receiver("down", "webhook", f"{base}/down"),
    }
    route = Route("default", ("ops", "slack", "pd"), ("watchlist",), group_wait_s=0.5, group_interval_s=60,
                  repeat_interval_s=3600)
    return NotifyConfig(receivers, route, (), DEFAULT_INHIBIT)


@dataclass
class Harness:
    store: AlertStore
    cfg: NotifyConfig
    clock: Clock
    hooks: Hooks
    dispatcher: Dispatcher
    dead: list[tuple[str, str, Outcome]]
    client: httpx.AsyncClient

    async def record(self, event: dict[str, Any], receivers: tuple[str, ...] = ("ops", "slack", "pd")) -> datetime | None:
        labels = event["labels"]
        return await self.store.record(event, self.cfg.group_key(labels), receivers, self.cfg.route_for(labels), self.clock())

    async def flush(self, after_s: float = 0.0) -> int:
        self.clock.advance(after_s)
        n = await self.dispatcher.flush_due()
        for q in list(self.dispatcher.queues.values()):
            await q.idle()
        return n


@pytest.fixture
async def harness(store: AlertStore, hooks: tuple[Hooks, str]) -> AsyncIterator[Harness]:
    h, base = hooks
    h.plans.clear()
    h.seen.clear()
    cfg = config(base)
    clock = Clock()
    client = make_client(2.0, TargetPolicy(("127.0.0.0/8",)))
    dead: list[tuple[str, str, Outcome]] = []

    async def dead_letter(group_key: str, receiver: Receiver, body: bytes, outcome: Outcome) -> None:
        dead.append((group_key, receiver.name, outcome))

    deliverers = {n: Deliverer(r, client, max_attempts=3, base_delay_s=0.01, max_delay_s=0.05,
                               circuit=CircuitBreaker(n, failures=50)) for n, r in cfg.receivers.items()}
    d = Dispatcher(store, cfg, deliverers, dead_letter=dead_letter, clock=clock, external_url="http://dash/")
    yield Harness(store, cfg, clock, h, d, dead, client)
    await d.stop()
    await client.aclose()


def event(rule: str = "volume_spike", status: str = "firing", wid: str = "acme-air", severity: str = "critical",
          starts: datetime = T0, ends: datetime | None = None) -> dict[str, Any]:
    labels = {"watchlist": wid, "rule": rule, "severity": severity}
    fp = fingerprint(labels)
    iso = lambda t: None if t is None else t.isoformat().replace("+00:00", "Z")  # noqa: E731
    return {"schema_version": 2, "alert_id": f"{fp}-{int(starts.timestamp() * 1000)}", "fingerprint": fp,
            "status": status, "rule": rule, "watchlist_id": wid, "severity": severity, "labels": labels,
            "summary": f"{wid}: {rule} {status}", "observed": 27.0, "baseline": 2.0, "score": 20.0, "bucket_seconds": 10,
            "starts_at": iso(starts), "ends_at": iso(ends), "detected_at": iso(starts), "sample_mention_ids": [],
            "first_received_at": None, "annotations": {"summary": f"{wid}: {rule}"}, "group_key": f"watchlist={wid}",
            "explanation": None}


async def test_firing_then_resolved_once_per_receiver_and_nothing_twice(harness: Harness) -> None:
    h = harness
    due = await h.record(event())
    assert due == T0 + timedelta(seconds=0.5)
    assert await h.record(event()) is None  # a re-delivered event changes nothing
    assert await h.flush(0.2) == 0  # group_wait not over
    assert await h.flush(0.3) == 1
    for name in ("ops", "slack", "pd"):
        assert len(h.hooks.seen[name]) == 1, name
    (headers, raw), = h.hooks.seen["ops"]
    assert headers["x-earful-signature"] == "v1=" + hmac.new(
        SECRET.encode(), headers["x-earful-timestamp"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    ops = h.hooks.bodies("ops")[0]
    assert (ops["status"], ops["groupKey"], ops["externalURL"], len(ops["alerts"])) == ("firing", "watchlist=acme-air", "http://dash/", 1)
    assert h.hooks.bodies("slack")[0]["blocks"][0]["type"] == "header"
    trigger = h.hooks.bodies("pd")[0]
    assert trigger["event_action"] == "trigger" and trigger["routing_key"] == "rk"

    assert await h.flush(60) == 1  # the live group is flushed every group_interval ...
    assert all(len(h.hooks.seen[n]) == 1 for n in ("ops", "slack", "pd"))  # ... and deduplicated

    resolved = event(status="resolved", ends=T0 + timedelta(minutes=5))
    assert await h.record(resolved) is not None
    assert await h.record(event()) is None  # the old firing event, re-delivered late, cannot undo it
    await h.flush(61)
    assert [b["status"] for b in h.hooks.bodies("ops")] == ["firing", "resolved"]
    resolve = h.hooks.bodies("pd")[1]
    assert resolve == {"routing_key": "rk", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert await h.flush(3600) == 0  # a resolved group is not flushed again

    async with h.store.pool.acquire() as conn:  # the contract storage's GET /v1/alerts reads
        rows = await conn.fetch(
            "SELECT receiver, receiver_kind, status, attempts, outcome, http_status FROM notification_log"
            " WHERE $1 = ANY(alert_ids) ORDER BY id", resolved["alert_id"])
    assert [r["status"] for r in rows] == ["firing"] * 3 + ["resolved"] * 3  # receivers run concurrently
    assert sorted((r["status"], r["receiver"], r["outcome"], r["attempts"]) for r in rows) == [
        (s, n, "delivered", 1) for s in ("firing", "resolved") for n in ("ops", "pd", "slack")]
    assert {r["receiver_kind"] for r in rows} == {"webhook", "slack", "pagerduty"}


async def test_a_restart_does_not_resend(harness: Harness) -> None:
    h = harness
    await h.record(event())
    await h.flush(1)
    assert len(h.hooks.seen["ops"]) == 1
    # The process dies right after claiming the group again (nothing scheduled any more) ...
    await h.store.pool.execute("UPDATE alert_groups SET next_flush_at = NULL")
    # ... a new process, same database: on start every recent group is flushed again.
    restarted = Dispatcher(AlertStore(h.store.pool), h.cfg, h.dispatcher.deliverers, clock=h.clock)
    assert await restarted.store.recover(h.clock()) == 1
    await restarted.flush_due()
    for q in restarted.queues.values():
        await q.idle()
    assert len(h.hooks.seen["ops"]) == 1 and len(h.hooks.seen["pd"]) == 1
    assert restarted.last_plans[("watchlist=acme-air", "ops")].reason == "deduplicated"
    await restarted.stop()


async def test_group_wait_batches_two_rules_of_one_watchlist(harness: Harness) -> None:
    h = harness
    await h.record(event())
    h.clock.advance(0.2)
    await h.record(event("risk_mention", severity="critical"))
    await h.flush(0.4)
    (body,) = h.hooks.bodies("ops")
    assert sorted(a["labels"]["rule"] for a in body["alerts"]) == ["risk_mention", "volume_spike"]


async def test_group_wait_counts_from_the_alerts_detection_not_from_its_recording(harness: Harness) -> None:
    """An alert that spent 0.4 s on its topic waits only what is left of group_wait; one that waited
    longer than group_wait is due at once (never before it was recorded: it goes out on the next flush)."""
    h = harness
    h.clock.advance(0.4)
    assert await h.record(event()) == T0 + timedelta(seconds=0.5)
    assert await h.flush(0.1) == 1
    late = event(wid="globex", starts=T0 - timedelta(seconds=5))
    assert await h.record(late) == T0 - timedelta(seconds=4.5)
    assert await h.flush() == 1


async def test_inhibited_warnings_are_not_sent(harness: Harness) -> None:
    h = harness
    await h.record(event())
    await h.record(event("negative_surge", severity="warning"))
    await h.flush(1)
    (body,) = h.hooks.bodies("ops")
    assert [a["labels"]["rule"] for a in body["alerts"]] == ["volume_spike"]
    assert h.dispatcher.last_plans[("watchlist=acme-air", "ops")].muted  # the surge, inhibited


async def test_retries_dead_letters_and_independent_receivers(harness: Harness) -> None:
    h = harness
    h.hooks.plans["flaky"] = [500, 502, 200]
    h.hooks.plans["down"] = [503]
    await h.record(event(), receivers=("ops", "flaky", "down"))
    await h.flush(1)
    assert len(h.hooks.seen["ops"]) == 1 and len(h.hooks.seen["flaky"]) == 3 and len(h.hooks.seen["down"]) == 3
    assert [(g, r, o.outcome) for g, r, o in h.dead] == [("watchlist=acme-air", "down", "dead_lettered")]
    log = {n["receiver"]: n for n in await h.store.notifications()}
    assert (log["flaky"]["outcome"], log["flaky"]["attempts"]) == ("delivered", 3)
    assert (log["down"]["outcome"], log["down"]["attempts"], log["down"]["http_status"]) == ("dead_lettered", 3, 503)
    assert log["down"]["error"] == "gave_up:http_503"
    h.hooks.plans["down"] = [200]  # the receiver is back: the next group interval delivers
    await h.flush(60)
    assert len(h.hooks.seen["down"]) == 4 and len(h.hooks.seen["ops"]) == 1


def alerting_app(h: Harness, keys: KeyRing = KeyRing(parse_api_keys("k1")), changes: list[int] | None = None,
                 allowed_hosts: frozenset[str] = frozenset()) -> FastAPI:
    """The alerting service's app as it builds it: the ops app behind the request guard, and the API."""
    health = Health("alerting")
    health.started = True  # as once partitions are assigned
    app = ops_app(health, "Earful alerting", RequestLimits(1024 * 1024, None if keys.enabled else allowed_hosts))
    noted = changes if changes is not None else []
    app.include_router(build_router(h.store, h.cfg, keys, h.clock, lambda: noted.append(1), timedelta(days=90)))
    return app


async def test_silences_and_acks_through_the_api(harness: Harness) -> None:
    h = harness
    changes: list[int] = []
    app = alerting_app(h, changes=changes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alerting",
                                 headers={"X-API-Key": "k1"}) as api:
        assert (await api.get("/v1/silences", headers={"X-API-Key": "wrong"})).status_code == 401
        bad = await api.post("/v1/silences", json={"matchers": [{"name": "rule", "value": "(", "is_regex": True}],
                                                   "duration_s": 60, "created_by": "jane", "comment": "x"})
        assert bad.status_code == 422 and "regular expression" in bad.text
        assert (await api.post("/v1/silences", json={"matchers": [{"name": "a", "value": "b"}], "created_by": "j",
                                                     "comment": "no end"})).status_code == 422
        resp = await api.post("/v1/silences", json={"matchers": [{"name": "watchlist", "value": "acme-.*", "is_regex": True}],
                                                    "duration_s": 3600, "created_by": "jane", "comment": "known issue"})
        assert resp.status_code == 201, resp.text
        silence = resp.json()
        assert silence["state"] == "active" and changes == [1]

        await h.record(event())
        await h.flush(1)
        assert "ops" not in h.hooks.seen  # silenced
        assert h.dispatcher.last_plans[("watchlist=acme-air", "ops")].reason == "silenced"
        (listed,) = (await api.get("/v1/alerts", params={"status": "firing"})).json()["alerts"]
        assert listed["silenced_by"] == f"silenced:{silence['id']}" and listed["acked_by"] is None

        assert (await api.delete(f"/v1/silences/{silence['id']}")).status_code == 204
        assert (await api.get(f"/v1/silences/{silence['id']}")).json()["state"] == "expired"
        assert (await api.get("/v1/silences/not-a-uuid")).status_code == 404
        assert await h.store.flush_firing_now(h.clock()) == 1  # what changed() does in the service
        await h.flush(0.1)
        assert [b["status"] for b in h.hooks.bodies("ops")] == ["firing"]

        fp = listed["fingerprint"]
        ack = await api.post(f"/v1/alerts/{fp}/ack", json={"by": "jane", "comment": "on it"})
        assert ack.status_code == 200 and ack.json()["acked_by"] == "jane"
        assert (await api.post("/v1/alerts/nope/ack", json={"by": "jane"})).status_code == 404
        await h.flush(3600)  # the repeat interval passed, but it is acknowledged
        assert len(h.hooks.seen["ops"]) == 1
        assert h.dispatcher.last_plans[("watchlist=acme-air", "ops")].reason == "acknowledged"
        detail = (await api.get(f"/v1/alerts/{fp}")).json()
        assert detail["acked_by"] == "jane" and detail["notifications"][0]["outcome"] == "delivered"

        await h.record(event(status="resolved", ends=T0 + timedelta(hours=1)))
        await h.flush(60)
        assert [b["status"] for b in h.hooks.bodies("ops")] == ["firing", "resolved"]  # resolved still goes out
        assert (await api.post(f"/v1/alerts/{fp}/ack", json={"by": "jane"})).status_code == 409
        log = (await api.get("/v1/notifications", params={"limit": 5})).json()["notifications"]
        assert log[0]["status"] == "resolved" and log[0]["receiver"] in ("ops", "pd", "slack")


async def test_a_second_local_stack_replaying_the_same_sample_alerts_again(harness: Harness) -> None:
    """The same replayed history gives the same alert id. Without resetting, a second local stack on
    the same database took it for the episode already notified and stayed silent (`make demo`, run
    twice); the local stack resets alert state because its broker (and detector) start empty."""
    h = harness
    await h.record(event())
    await h.flush(1)
    await h.record(event(status="resolved", ends=T0 + timedelta(minutes=5)))
    await h.flush(61)
    assert [b["status"] for b in h.hooks.bodies("ops")] == ["firing", "resolved"]
    assert await h.record(event()) is None  # the same episode again: taken for a stale event
    async with h.store.pool.acquire() as conn:
        await reset_local_state(conn)
    assert await h.record(event()) is not None
    await h.flush(1)
    assert [b["status"] for b in h.hooks.bodies("ops")] == ["firing", "resolved", "firing"]


def silence(**overrides: Any) -> dict[str, Any]:
    return {"matchers": [{"name": "watchlist", "value": "acme-air"}], "created_by": "jane", "comment": "known", **overrides}


async def test_a_silence_ends_within_the_cap(harness: Harness) -> None:
    """A forgotten silence must not mute a watchlist for years: 90 days from now at most."""
    h = harness
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=alerting_app(h)), base_url="http://alerting",
                                 headers={"X-API-Key": "k1"}) as api:
        ok = await api.post("/v1/silences", json=silence(ends_at=iso(T0 + timedelta(days=89))))
        assert ok.status_code == 201, ok.text
        assert (await api.post("/v1/silences", json=silence(duration_s=90 * 86400))).status_code == 201
        for body in (silence(ends_at=iso(T0 + timedelta(days=91))), silence(ends_at="9999-12-31T23:59:59Z"),
                     silence(duration_s=90 * 86400 + 1), silence(duration_s=1e300),
                     silence(starts_at="9999-12-31T23:59:00Z", duration_s=60),
                     silence(starts_at=iso(T0 + timedelta(days=89)), duration_s=2 * 86400)):
            r = await api.post("/v1/silences", json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["errors"][0]["loc"][0] == "body" and "90 days" in r.text, r.text
        huge = await api.post("/v1/silences", content=b'{"matchers": [{"name": "a", "value": "b"}], "created_by": "j",'
                                                      b' "comment": "c", "duration_s": 1e999}',
                              headers={"Content-Type": "application/json"})
        assert huge.status_code == 422, huge.text
        assert len((await api.get("/v1/silences")).json()["silences"]) == 2


async def test_regex_silences_run_in_linear_time_and_refuse_what_re2_cannot(harness: Harness) -> None:
    h = harness
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=alerting_app(h)), base_url="http://alerting",
                                 headers={"X-API-Key": "k1"}) as api:
        for pattern in ("(a)\\1", "(?<=a)b", "(?=x)", "a{2000}"):
            r = await api.post("/v1/silences", json=silence(matchers=[{"name": "watchlist", "value": pattern, "is_regex": True}],
                                                            duration_s=60))
            assert r.status_code == 422 and "regular expression" in r.text, (pattern, r.text)
        catastrophic = silence(matchers=[{"name": "watchlist", "value": "(a+)+$", "is_regex": True}], duration_s=3600)
        assert (await api.post("/v1/silences", json=catastrophic)).status_code == 201
        # Backtracking doubles its work with every "a" (seconds at 20, years at 60); RE2 grows linearly.
        await h.record(event(wid="a" * 20 + "b"))
        await h.record(event(wid="a" * 20))
        await h.flush(1)
        alerts = {a["labels"]["watchlist"]: a for a in (await api.get("/v1/alerts")).json()["alerts"]}
        assert alerts["a" * 20]["silenced_by"] and alerts["a" * 20 + "b"]["silenced_by"] is None
        assert [b["alerts"][0]["labels"]["watchlist"] for b in h.hooks.bodies("ops")] == ["a" * 20 + "b"]


async def test_hostile_input_is_a_4xx_never_a_5xx(harness: Harness) -> None:
    """NUL in every string parameter of every GET endpoint, text PostgreSQL cannot store in bodies, an
    oversized body."""
    h = harness
    await h.record(event())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=alerting_app(h)), base_url="http://alerting",
                                 headers={"X-API-Key": "k1"}) as api:
        doc = (await api.get("/openapi.json")).json()
        tried = []
        for path, item in doc["paths"].items():
            for p in (item.get("get") or {}).get("parameters", []):
                if p["in"] in ("path", "query") and "string" in json.dumps(p["schema"]):
                    url = path.format(key="a%00b", silence_id="a%00b") if p["in"] == "path" else path
                    r = await api.get(url, params={p["name"]: "a\x00b"} if p["in"] == "query" else None)
                    assert r.status_code == 422, (path, p["name"], r.status_code, r.text)
                    tried.append((path, p["name"]))
        assert {("/v1/alerts/{key}", "key"), ("/v1/notifications", "group_key"), ("/v1/silences/{silence_id}", "silence_id"),
                ("/v1/alerts", "status")} <= set(tried)
        fp = (await api.get("/v1/alerts")).json()["alerts"][0]["fingerprint"]
        for raw in (rb'{"by": "jane\u0000", "comment": ""}', rb'{"by": "\udfff"}'):
            r = await api.post(f"/v1/alerts/{fp}/ack", content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body"], r.text
        for hostile in ({"comment": "x\x00y"}, {"created_by": "\ud800"}, {"matchers": [{"name": "a\x00", "value": "b"}]}):
            body = json.dumps(silence(duration_s=60, **hostile)).encode()
            r = await api.post("/v1/silences", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (hostile, r.text)
        big = await api.post("/v1/silences", json=silence(duration_s=60, comment="x" * (2 * 1024 * 1024)))
        assert big.status_code == 413, big.text
        assert (await api.get("/v1/silences")).json()["silences"] == []


async def test_without_keys_the_alerting_api_answers_only_allowed_hosts(harness: Harness) -> None:
    app = alerting_app(harness, keys=KeyRing(), allowed_hosts=frozenset({"alerting.internal"}))
    for host, status in (("evil.example", 421), ("127.0.0.1:8082", 200), ("localhost", 200), ("alerting.internal", 200)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}") as api:
            assert (await api.get("/v1/silences")).status_code == status, host
            assert (await api.get("/healthz")).status_code == 200


async def test_alerting_openapi_contract(harness: Harness) -> None:
    """Schemathesis against the alerting API over real HTTP: every answer documented, never a 5xx."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    port = _free_port()
    server = HttpServer(alerting_app(harness), "127.0.0.1", port)
    await server.start()

    def run() -> int:
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            @given(case=operation.as_strategy())
            @hsettings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
            def check(case: Any) -> None:
                case.call_and_validate(headers={"X-API-Key": "k1"}, timeout=30, excluded_checks=[positive_data_acceptance])

            check()
        return len(operations)

    try:
        assert await asyncio.to_thread(run) >= 8
    finally:
        await server.stop()
