"""Every operation of the three APIs' OpenAPI documents: an explicit operationId, and a security
requirement naming its scope wherever a key is needed (every /v1 route); key parsing and scopes.

Auto-generated operation ids (FastAPI's `<function>_<path>_<method>`) change whenever a function or
path is renamed and break generated clients; ours are explicit camelCase names.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from earful.alerting.api import build_router as alerting_router
from earful.alerting.notification.routing import DEFAULT_INHIBIT, NotifyConfig, Receiver, Route
from earful.core.apikeys import LEGACY_SCOPES, Scope, configured_keys, parse_api_keys
from earful.core.auth import AuditedRoute, KeyRing, route_scope
from earful.core.errors import ConfigError
from earful.core.health import Health
from earful.core.http import OPS_PATHS, RequestLimits, ops_app
from earful.core.kafka import Codecs, make_producer
from earful.core.settings import Settings, load_settings
from earful.core.topics import RAW
from earful.ingest.app import build_app as build_ingest_app
from earful.ingest.publisher import Publisher
from earful.storage.api import (
    alerts,
    audit,
    build_api,
    cases,
    corrections,
    dashboard,
    entities,
    erasure,
    mentions,
    questions,
    storage_auth,
    trends,
)
from earful.watchlists.registry import WatchlistRegistry

SETTINGS = Settings(api_keys="a:read:x", ingest_api_keys=None)
LIMITS = RequestLimits.from_settings(SETTINGS, keys_configured=True)
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
OPERATION_ID = re.compile(r"^[a-z][A-Za-z0-9]*$")
#: The scope each write or admin operation needs; every other /v1 operation needs read (ingest: ingest).
EXPECTED = {("post", "/v1/mentions/{mention_id}/corrections"): "write", ("delete", "/v1/authors/{source}/{author}"): "admin",
            ("get", "/v1/audit"): "admin", ("post", "/v1/watchlists"): "write", ("put", "/v1/watchlists/{watchlist_id}"): "write",
            ("delete", "/v1/watchlists/{watchlist_id}"): "admin", ("post", "/v1/silences"): "write",
            ("delete", "/v1/silences/{silence_id}"): "write", ("post", "/v1/alerts/{key}/ack"): "write",
            ("post", "/v1/watchlists/{watchlist_id}/backfill"): "write",
            **{("post", f"/v1/cases/{{case_id}}/{action}"): "write"
               for action in ("assign", "answer", "dismiss", "escalate", "reopen")}}


@pytest.fixture(params=["storage", "alerting", "ingest"])
async def app(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FastAPI]]:
    keys = KeyRing.from_settings(SETTINGS)
    if request.param == "storage":
        pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/unused", min_size=0, max_size=1)
        api = build_api(pool, Health("storage"), keys, limits=LIMITS)
        api.include_router(WatchlistRegistry.for_settings(SETTINGS).router(storage_auth(pool, keys)))
        yield "storage", api
        await pool.close()
    elif request.param == "alerting":
        route = Route("default", ("ops",), ("watchlist",), group_wait_s=0.5, group_interval_s=60, repeat_interval_s=3600)
        config = NotifyConfig({"ops": Receiver("ops", "webhook", "https://hooks.example.com/x")}, route, (), DEFAULT_INHIBIT)
        api = ops_app(Health("alerting"), "Earful alerting", LIMITS)
        api.include_router(alerting_router(lambda: None, config, keys, lambda: datetime.now(timezone.utc), lambda: None))
        yield "alerting", api
    else:
        producer = make_producer(SETTINGS, "test")  # never started
        yield "ingest", build_ingest_app(SETTINGS, Publisher(producer, Codecs(SETTINGS).for_topic(RAW)), Health("ingest"))
        await producer.stop()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items() if method in METHODS]


def test_every_operation_has_an_explicit_id_and_the_scope_it_needs(app: tuple[str, FastAPI]) -> None:
    service, api = app
    doc = api.openapi()
    ops = operations(doc)
    assert len(ops) >= {"storage": 24, "alerting": 11, "ingest": 4}[service]
    ids = [op.get("operationId", "") for _, _, op in ops]
    assert all(OPERATION_ID.match(i) for i in ids), ids  # FastAPI's generated ids hold underscores
    assert len(set(ids)) == len(ids)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {**schemes["ApiKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerKey"]["scheme"] == "bearer"
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        if path in OPS_PATHS:
            assert "security" not in op, where  # probes and scrapers need no key
            continue
        expected = "ingest" if service == "ingest" else EXPECTED.get((method, path), "read")
        assert op.get("security") == [{"ApiKeyHeader": [expected]}, {"BearerKey": [expected]}], where
        assert f"scope `{expected}`" in op["description"], where
        for status in ("401", "403", "422") if method != "get" or "{" in path else ("401", "403"):
            if status in op["responses"]:
                assert list(op["responses"][status]["content"]) == ["application/problem+json"], (where, status)
        assert {"401", "403"} <= set(op["responses"]), where


def test_every_write_and_admin_route_is_audited() -> None:
    """A route needing write or admin is audited only on a router whose routes are `AuditedRoute`s."""
    keys = KeyRing.from_settings(SETTINGS)
    route = Route("default", ("ops",), ("watchlist",), group_wait_s=0.5, group_interval_s=60, repeat_interval_s=3600)
    config = NotifyConfig({"ops": Receiver("ops", "webhook", "https://hooks.example.com/x")}, route, (), DEFAULT_INHIBIT)
    routers = [m.router for m in (alerts, audit, cases, corrections, entities, erasure, mentions, questions, trends)]
    routers += [dashboard.summary, alerting_router(lambda: None, config, keys, lambda: datetime.now(timezone.utc), lambda: None)]
    found = 0
    for router in routers:
        for r in router.routes:
            assert isinstance(r, APIRoute)
            scope = route_scope(r)
            assert scope is not None, r.path  # every /v1 route declares its scope
            if scope in (Scope.WRITE, Scope.ADMIN):
                assert isinstance(r, AuditedRoute), r.path
                found += 1
    assert found >= 6


def test_key_formats_and_scopes() -> None:
    keys = configured_keys("dash:read:s1, oncall:read+write:s2:with:colons,legacy-plain,legacy-plain", "crm:s3,s4")
    assert [(k.name, sorted(k.scopes), k.secret) for k in keys] == [
        ("dash", ["read"], "s1"), ("oncall", ["read", "write"], "s2:with:colons"),
        (keys[2].name, sorted(LEGACY_SCOPES), "legacy-plain"), ("crm", ["ingest"], "s3"), ("key2", ["ingest"], "s4")]
    assert keys[2].name.startswith("legacy-") and "legacy-plain" not in repr(keys)  # secrets are never shown
    ring = KeyRing(keys)
    assert ring.identify("s2:with:colons") == keys[1] and ring.identify("s2") is None and ring.identify(None) is None
    assert not KeyRing(parse_api_keys(None)).enabled


@pytest.mark.parametrize(("api_keys", "ingest", "message"), [
    ("dash:s1", None, "one colon"),
    ("dash:reed:s1", None, "unknown scope"),
    ("dash:read+:s1", None, "unknown scope"),
    ("dash:read:", None, "empty secret"),
    ("bad name:read:s1", None, "must be 1-64"),
    ("a:read:s1,a:write:s2", None, "two API keys are named 'a'"),
    ("a:read:s1,b:write:s1", None, "same secret"),
    ("crm:ingest:s1", "crm:s2", "two API keys are named 'crm'"),
])
def test_a_malformed_key_setting_stops_start_up(api_keys: str, ingest: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(api_keys=api_keys, ingest_api_keys=ingest)
    assert message in str(refused.value) and "s1" not in str(refused.value)


def test_settings_expose_the_keys() -> None:
    s = load_settings(api_keys="pusher:ingest:p1,reader:read:r1", ingest_api_keys="crm:c1")
    assert s.ingest_api_key_map() == {"pusher": "p1", "crm": "c1"}  # what `earful replay` may send
    assert s.api_key_set() == frozenset({"p1", "r1", "c1"})  # any key set: the Host allow-list is off


async def test_the_push_api_needs_the_ingest_scope() -> None:
    """A read key cannot push; an ingest key gets past the guard (its empty batch is then a 422)."""
    import httpx

    settings = Settings(api_keys="reader:read:r1,pusher:ingest:p1", ingest_api_keys=None)
    producer = make_producer(settings, "test")  # never started: nothing is sent
    app = build_ingest_app(settings, Publisher(producer, Codecs(settings).for_topic(RAW)), Health("ingest"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest.example") as api:
        assert (await api.post("/v1/mentions", json={"mentions": []})).status_code == 401
        refused = await api.post("/v1/mentions", json={"mentions": []}, headers={"X-API-Key": "r1"})
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        assert "'ingest'" in refused.json()["detail"] and "reader" in refused.json()["detail"]
        passed = await api.post("/v1/mentions", json={"mentions": []}, headers={"Authorization": "Bearer p1"})
        assert passed.status_code == 422 and passed.json()["errors"][0]["path"] == "mentions"
    await producer.stop()
