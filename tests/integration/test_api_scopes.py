"""Scoped API keys against the real services: a storage process over a seeded PostgreSQL, and the
alerting API over its real store. A key without the scope gets a 403 naming it; every write and
admin request, refused or not, is in the audit log (the `api_audit` table, `GET /v1/audit`, and the
`earful.audit` log lines); errors are problem details."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from earful.alerting.api import build_router
from earful.alerting.notification.routing import DEFAULT_INHIBIT, NotifyConfig, Receiver, Route
from earful.alerting.notification.store import AlertStore
from earful.core.apikeys import parse_api_keys
from earful.core.auth import KeyRing
from earful.core.health import Health
from earful.core.http import PROBLEM_JSON, RequestLimits, ops_app
from earful.core.migrate import migrate
from earful_dev.seed import seed
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration
UTC = timezone.utc
KEYS = "reader:read:r-3cr3t-0001,writer:read+write:w-3cr3t-0002,dpo:admin:a-3cr3t-0003,pusher:ingest:i-3cr3t-0004"
READ, WRITE, ADMIN, INGEST = ({"X-API-Key": s} for s in ("r-3cr3t-0001", "w-3cr3t-0002", "a-3cr3t-0003", "i-3cr3t-0004"))


def is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status; its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return dict(body)


# --- storage ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def watchlists_file(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wl") / "watchlists.yaml"
    await seed(pg_url, mentions=300, days=1, watchlists=2, seed_value=5, watchlists_out=path, progress=lambda m: None)
    return path


@pytest.fixture(scope="module")
def storage(base_env: dict[str, str], pg_url: str, watchlists_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = free_port()
    log_path = tmp_path_factory.mktemp("scopes") / "storage.log"
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_API_KEYS": KEYS, "EARFUL_WATCHLISTS_DIR": str(watchlists_file)}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), log_path)
    svc.start()
    svc.wait_ready(60)
    yield svc, log_path
    assert svc.stop() == 0, svc.log_tail()


def test_no_key_is_a_401_and_a_key_without_the_scope_a_403_naming_it(storage: Any) -> None:
    svc, _ = storage
    body = is_problem(httpx.get(svc.url + "/v1/stats"), 401)
    assert body["instance"] == "/v1/stats" and "API key" in body["detail"]
    assert httpx.get(svc.url + "/v1/stats", headers=READ).status_code == 200
    assert httpx.get(svc.url + "/v1/stats", headers={"Authorization": "Bearer r-3cr3t-0001"}).status_code == 200
    assert "'read'" in is_problem(httpx.get(svc.url + "/v1/stats", headers=INGEST), 403)["detail"]
    assert "'read'" in is_problem(httpx.get(svc.url + "/v1/stats", headers=ADMIN), 403)["detail"]  # admin is not read
    erase = is_problem(httpx.delete(svc.url + "/v1/authors/twitter/someone", headers=READ), 403)
    assert "'admin'" in erase["detail"] and "reader" in erase["detail"]
    mention = httpx.get(svc.url + "/v1/mentions", params={"limit": 1}, headers=READ).json()["mentions"][0]["mention_id"]
    correct = httpx.post(f"{svc.url}/v1/mentions/{mention}/corrections", json={"sentiment": "negative"}, headers=READ)
    assert "'write'" in is_problem(correct, 403)["detail"]
    assert "'write'" in is_problem(httpx.post(svc.url + "/v1/watchlists", json={}, headers=READ), 403)["detail"]
    assert "'admin'" in is_problem(httpx.get(svc.url + "/v1/audit", headers=WRITE), 403)["detail"]


def test_validation_errors_are_problems_naming_the_parameter(storage: Any) -> None:
    svc, _ = storage
    body = is_problem(httpx.get(svc.url + "/v1/mentions", params={"limit": 0}, headers=READ), 422)
    (error,) = body["errors"]
    assert error["loc"] == ["query", "limit"] and error["path"] == "query.limit" and error["detail"]
    assert is_problem(httpx.get(svc.url + "/v1/nothing-here", headers=READ), 404)["instance"] == "/v1/nothing-here"


def test_writes_and_erasures_are_audited_with_who_what_and_outcome(storage: Any) -> None:
    svc, log_path = storage
    started = datetime.now(UTC).isoformat()
    mentions = httpx.get(svc.url + "/v1/mentions", params={"limit": 50, "source": "reddit"}, headers=READ).json()["mentions"]
    mention, victim = mentions[0]["mention_id"], mentions[-1]["author_handle"]
    assert httpx.post(f"{svc.url}/v1/mentions/{mention}/corrections", json={"sentiment": "negative"},
                      headers=WRITE).status_code == 201
    assert httpx.delete(f"{svc.url}/v1/authors/reddit/{victim}", headers=READ).status_code == 403
    erased = httpx.delete(f"{svc.url}/v1/authors/reddit/{victim}", headers=ADMIN, timeout=60)
    assert erased.status_code == 200, erased.text
    assert httpx.delete(f"{svc.url}/v1/authors/reddit/{victim}", headers={"X-API-Key": "wrong"}).status_code == 401

    page = httpx.get(svc.url + "/v1/audit", params={"since": started}, headers=ADMIN)
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    seen = [(e["key_name"], e["method"], e["scope"], e["status"], e["outcome"]) for e in entries]
    assert seen == [(None, "DELETE", "admin", 401, "denied"), ("dpo", "DELETE", "admin", 200, "ok"),
                    ("reader", "DELETE", "admin", 403, "denied"), ("writer", "POST", "write", 201, "ok")], seen
    assert entries[-1]["target"] == mention and entries[-1]["path"] == f"/v1/mentions/{mention}/corrections"
    assert f"erasure:{erased.json()['erasure_id']}" in entries[1]["target"]
    assert all(victim.lower() not in (e["target"] or "").lower() for e in entries)  # the erased handle is not kept
    assert all(e["service"] == "storage" and e["at"] >= started[:19] for e in entries)
    denied = httpx.get(svc.url + "/v1/audit", params={"outcome": "denied", "key": "reader", "since": started}, headers=ADMIN)
    assert [e["status"] for e in denied.json()["entries"]] == [403]
    # Each audited request is also one earful.audit log line; reads are not audited, but reading the
    # audit log (admin) is.
    lines = [json.loads(line) for line in Path(log_path).read_text().splitlines() if '"earful.audit"' in line]
    assert {(x["audit_key"], x["audit_status"]) for x in lines} >= {("writer", 201), ("dpo", 200), ("reader", 403)}
    assert {x["audit_path"] for x in lines if x["audit_method"] == "GET"} == {"/v1/audit"}


# --- alerting ---------------------------------------------------------------------------------------


@pytest.fixture
async def alert_store(pg_url: str) -> AsyncIterator[AlertStore]:
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn)
        await conn.execute("TRUNCATE alert_state, alert_groups, alert_nflog, notification_log, silences, alert_acks")
        await conn.execute("DELETE FROM api_audit WHERE service = 'alerting'")
    yield AlertStore(pool)
    await pool.close()


def alerting_app(store: AlertStore) -> FastAPI:
    """The alerting service's app as it builds it (ops app behind the request guard, and the API)."""
    route = Route("default", ("ops",), ("watchlist",), group_wait_s=0.5, group_interval_s=60, repeat_interval_s=3600)
    config = NotifyConfig({"ops": Receiver("ops", "webhook", "https://hooks.example.com/x")}, route, (), DEFAULT_INHIBIT)
    app = ops_app(Health("alerting"), "Earful alerting", RequestLimits(1024 * 1024, None))
    app.include_router(build_router(store, config, KeyRing(parse_api_keys(KEYS)), lambda: datetime.now(UTC), lambda: None))
    return app


SILENCE = {"matchers": [{"name": "watchlist", "value": "acme-air"}], "duration_s": 600, "created_by": "jane", "comment": "known"}


async def test_a_read_key_cannot_silence_expire_or_acknowledge(alert_store: AlertStore,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="earful.audit")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=alerting_app(alert_store)), base_url="http://alerting") as api:
        is_problem(await api.get("/v1/silences"), 401)
        assert (await api.get("/v1/silences", headers=READ)).status_code == 200
        assert "'write'" in is_problem(await api.post("/v1/silences", json=SILENCE, headers=READ), 403)["detail"]
        created = await api.post("/v1/silences", json=SILENCE, headers=WRITE)
        assert created.status_code == 201, created.text
        silence_id = created.json()["id"]
        is_problem(await api.delete(f"/v1/silences/{silence_id}", headers=READ), 403)
        is_problem(await api.post("/v1/alerts/some-fingerprint/ack", json={"by": "jane"}, headers=READ), 403)
        is_problem(await api.post("/v1/alerts/some-fingerprint/ack", json={"by": "jane"}, headers=WRITE), 404)
        assert (await api.delete(f"/v1/silences/{silence_id}", headers=WRITE)).status_code == 204
        invalid = is_problem(await api.post("/v1/silences", json={**SILENCE, "duration_s": None}, headers=WRITE), 422)
        assert invalid["errors"][0]["loc"] == ["body", "ends_at"]
    rows = await alert_store.pool.fetch("SELECT key_name, method, path, target, status, outcome FROM api_audit"
                                        " WHERE service = 'alerting' ORDER BY id")
    assert [(r["key_name"], r["method"], r["status"], r["outcome"]) for r in rows] == [
        ("reader", "POST", 403, "denied"), ("writer", "POST", 201, "ok"), ("reader", "DELETE", 403, "denied"),
        ("reader", "POST", 403, "denied"), ("writer", "POST", 404, "refused"), ("writer", "DELETE", 204, "ok"),
        ("writer", "POST", 422, "refused")]
    assert rows[1]["target"] == silence_id and rows[5]["target"] == silence_id and rows[4]["target"] == "some-fingerprint"
    logged = [r for r in caplog.records if r.name == "earful.audit"]
    assert [(r.__dict__["audit_key"], r.__dict__["audit_status"]) for r in logged] == [
        (r["key_name"], r["status"]) for r in rows]


async def test_audit_rows_cannot_be_changed(alert_store: AlertStore) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=alerting_app(alert_store)), base_url="http://alerting") as api:
        assert (await api.post("/v1/silences", json=SILENCE, headers=WRITE)).status_code == 201
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await alert_store.pool.execute("UPDATE api_audit SET key_name = 'someone-else' WHERE service = 'alerting'")
    assert await alert_store.pool.fetchval("SELECT count(*) FROM api_audit WHERE service = 'alerting' AND at > $1",
                                           datetime.now(UTC) - timedelta(minutes=5)) == 1
