"""The request guard's refusals are in every API's OpenAPI document, as they are sent.

The guard (earful.core.http) answers before routing: 413 for a body over EARFUL_HTTP_MAX_BODY_BYTES
(storage, its watchlist API, alerting; ingest bounds its body itself) and 421 for a Host that is not
allowed while the API has no keys (every path but the ops ones). Each operation of each API must
declare them, and what the server sends must match the schema it declares.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from earful.alerting.api import build_router as alerting_router
from earful.alerting.notification.routing import DEFAULT_INHIBIT, NotifyConfig, Receiver, Route
from earful.core.auth import KeyRing
from earful.core.health import Health
from earful.core.http import OPS_PATHS, RequestLimits, ops_app
from earful.core.kafka import Codecs, make_producer
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful.ingest.app import build_app as build_ingest_app
from earful.ingest.publisher import Publisher
from earful.storage.api import build_api, storage_auth
from earful.watchlists.registry import WatchlistRegistry

LIMIT = 2048
SETTINGS = Settings(http_max_body_bytes=LIMIT, ingest_api_keys=None, api_keys=None)
LIMITS = RequestLimits.from_settings(SETTINGS, keys_configured=False)


def storage_app(pool: asyncpg.Pool) -> FastAPI:
    """The query API as the storage service builds it, with the watchlist API."""
    app = build_api(pool, Health("storage"), KeyRing(), limits=LIMITS)
    app.include_router(WatchlistRegistry.for_settings(SETTINGS).router(storage_auth(pool, KeyRing())))
    return app


def alerting_app() -> FastAPI:
    """The alerting service's app as `attach_ops_server` builds it: the ops app and the API router."""
    route = Route("default", ("ops",), ("watchlist",), group_wait_s=0.5, group_interval_s=60, repeat_interval_s=3600)
    config = NotifyConfig({"ops": Receiver("ops", "webhook", "https://hooks.example.com/x")}, route, (), DEFAULT_INHIBIT)
    app = ops_app(Health("alerting"), "Earful alerting", LIMITS)
    app.include_router(alerting_router(lambda: None, config, KeyRing(), lambda: datetime.now(timezone.utc), lambda: None))
    return app


@pytest.fixture(params=["storage", "alerting", "ingest"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FastAPI]]:
    if request.param == "storage":
        # Never connected (min_size 0): a refused request reaches no handler, and the document needs none.
        pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/unused", min_size=0, max_size=1)
        yield "storage", storage_app(pool)
        await pool.close()
    elif request.param == "alerting":
        yield "alerting", alerting_app()
    else:
        producer = make_producer(SETTINGS, "test")  # never started: nothing is sent
        yield "ingest", build_ingest_app(SETTINGS, Publisher(producer, Codecs(SETTINGS).for_topic(RAW)), Health("ingest"))
        await producer.stop()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items() if method in methods]


def conforms(doc: dict[str, Any], path: str, method: str, status: str, body: Any) -> None:
    """`body` is valid against the schema the document declares for this answer (references resolved in it)."""
    pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in
                       ("", "paths", path, method, "responses", status, "content", "application/problem+json", "schema"))
    registry: Registry[Any] = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(doc))
    jsonschema.Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=registry).validate(body)


def concrete(path: str) -> str:
    """A request path for an operation's template (every path parameter a plain word)."""
    return re.sub(r"\{[^}]+\}", "acme-air", path)


async def test_every_operation_declares_the_guards_refusals_as_sent(api: tuple[str, FastAPI]) -> None:
    service, app = api
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost:8083") as local:
        doc = (await local.get("/openapi.json")).json()
    ops = operations(doc)
    assert len(ops) >= {"storage": 20, "alerting": 10, "ingest": 4}[service], [p for p, _, _ in ops]
    bounded = service != "ingest"  # the push API bounds its body after the key check (EARFUL_INGEST_MAX_BODY_BYTES)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evil.example:8083") as foreign:
        for path, method, op in ops:
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            if path in OPS_PATHS:
                assert "421" not in responses, where  # probes are answered whatever the Host
            else:
                assert "421" in responses and "EARFUL_HTTP_ALLOWED_HOSTS" in responses["421"]["description"], where
                refused = await foreign.request(method.upper(), concrete(path))
                assert refused.status_code == 421, (where, refused.text)
                conforms(doc, path, method, "421", refused.json())
            assert ("413" in responses) is (bounded or path == "/v1/mentions"), where
            if bounded:
                assert "EARFUL_HTTP_MAX_BODY_BYTES" in responses["413"]["description"], where
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as local:
                    too_large = await local.request(method.upper(), concrete(path), content=b"{" + b" " * LIMIT + b"}",
                                                    headers={"Content-Type": "application/json"})
                assert too_large.status_code == 413, (where, too_large.text)
                conforms(doc, path, method, "413", too_large.json())
