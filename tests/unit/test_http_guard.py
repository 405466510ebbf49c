"""What every API refuses before a handler runs (earful.core.http.guard_requests): bodies over the
limit (413), a Host that is not allowed while no API keys are set (421, against DNS rebinding),
NUL characters and lone surrogates in the path, the query or a JSON body (422); and API keys
compared in constant time, only from the X-API-Key header (never from the URL)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from earful.alerting.api import build_router
from earful.alerting.notification.routing import DEFAULT_INHIBIT, NotifyConfig, Receiver, Route
from earful.core import auth
from earful.core.apikeys import parse_api_keys
from earful.core.audit import AuditLog
from earful.core.auth import ApiAuth, KeyRing, Scope, requires
from earful.core.health import Health
from earful.core.http import RequestLimits, host_allowed, json_text_problem, ops_app
from earful.core.kafka import Codecs, make_producer
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful.ingest.app import build_app as build_ingest_app
from earful.ingest.publisher import Publisher

LIMIT = 4096


class Note(BaseModel):
    text: str


def ring(*secrets: str) -> KeyRing:
    """Keys in the format from before scopes (each read+write+admin)."""
    return KeyRing(parse_api_keys(",".join(secrets)))


def app_with(limits: RequestLimits, keys: KeyRing = KeyRing()) -> FastAPI:
    """An API as the services build theirs: the ops app, a guarded router with a query and a body."""
    app = ops_app(Health("test"), "test", limits)
    router = APIRouter(dependencies=[requires(Scope.READ, ApiAuth(keys, AuditLog("test")))])

    @router.get("/v1/things/{name}")
    async def thing(name: str, q: str | None = None) -> dict[str, Any]:
        return {"name": name, "q": q}

    @router.post("/v1/notes")
    async def note(body: Note) -> dict[str, Any]:
        return {"length": len(body.text)}

    app.include_router(router)
    return app


async def client(app: FastAPI, host: str = "127.0.0.1:8083") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


@pytest.fixture
async def open_api() -> AsyncIterator[FastAPI]:
    yield app_with(RequestLimits(LIMIT, frozenset({"dashboard.internal"})))


# --- Host allow-list ------------------------------------------------------------------------------


@pytest.mark.parametrize("host,allowed", [
    ("localhost", True), ("LOCALHOST:8083", True), ("localhost.:8083", True), ("127.0.0.1:8083", True),
    ("127.5.6.7", True), ("[::1]:8083", True), ("app.localhost:8083", True), ("dashboard.internal:443", True),
    ("Dashboard.Internal", True), ("evil.example", False), ("evil.example:8083", False), ("10.0.0.5:8083", False),
    ("localhost.evil.example", False), ("127.0.0.1.nip.io", False), ("", False), (None, False), ("[::1", False),
])
def test_host_allowed(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, frozenset({"dashboard.internal"})) is allowed


def test_a_star_allows_every_host() -> None:
    assert host_allowed("evil.example", frozenset({"*"}))


async def test_a_keyless_api_answers_only_allowed_hosts(open_api: FastAPI) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    for host in ("evil.example:8083", "10.0.0.5:8083"):
        async with await client(open_api, host) as api:
            refused = await api.get("/v1/things/x")
            assert refused.status_code == 421, refused.text
            assert "EARFUL_HTTP_ALLOWED_HOSTS" in refused.json()["detail"]
            assert refused.headers["content-type"] == "application/problem+json" and refused.json()["status"] == 421
            assert (await api.get("/openapi.json")).status_code == 421
            assert (await api.get("/healthz")).status_code == 200  # probes and scrapes name the pod's address
            assert (await api.get("/metrics")).status_code == 200
    for host in ("localhost:8083", "127.0.0.1:8083", "[::1]:8083", "dashboard.internal"):
        async with await client(open_api, host) as api:
            assert (await api.get("/v1/things/x")).status_code == 200, host


async def test_with_api_keys_the_host_is_not_checked() -> None:
    app = app_with(RequestLimits(LIMIT, None), keys=ring("k1"))
    async with await client(app, "earful.example.com") as api:
        assert (await api.get("/v1/things/x", headers={"X-API-Key": "k1"})).status_code == 200
        assert (await api.get("/v1/things/x")).status_code == 401


async def test_the_push_api_answers_refusals_as_problem_details() -> None:
    """Ingest is behind the same guard (the body it bounds itself, after the key check)."""
    settings = Settings(ingest_api_keys=None)
    publisher = Publisher(make_producer(settings, "test"), Codecs(settings).for_topic(RAW))  # never started: nothing is sent
    app = build_ingest_app(settings, publisher, Health("ingest"))
    async with await client(app, "evil.example:8080") as api:
        refused = await api.post("/v1/mentions", json={"mentions": []})
        assert refused.status_code == 421 and "EARFUL_HTTP_ALLOWED_HOSTS" in refused.json()["detail"]
    async with await client(app, "localhost:8080") as api:
        nul = await api.post("/v1/mentions?x=%00", json={"mentions": []})
        assert nul.status_code == 422 and nul.json()["errors"][0]["path"] == "query.x"
    keyed = build_ingest_app(Settings(ingest_api_keys="crm:k1"), publisher, Health("ingest"))
    async with await client(keyed, "ingest.example.com") as api:
        assert (await api.post("/v1/mentions", json={"mentions": []})).status_code == 401  # keys: any Host, key first


def test_limits_follow_the_settings() -> None:
    s = Settings(http_allowed_hosts="storage,dashboard.example.com", http_max_body_bytes=65536)
    assert RequestLimits.from_settings(s, keys_configured=False) == RequestLimits(
        65536, frozenset({"storage", "dashboard.example.com"}))
    assert RequestLimits.from_settings(s, keys_configured=True).allowed_hosts is None
    assert RequestLimits.from_settings(s, keys_configured=True, bound_body=False) == RequestLimits(None, None, False)


# --- body size ------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_by_content_length_or_counted(open_api: FastAPI) -> None:
    async with await client(open_api) as api:
        ok = await api.post("/v1/notes", json={"text": "x" * 100})
        assert ok.status_code == 200 and ok.json() == {"length": 100}
        declared = await api.post("/v1/notes", json={"text": "x" * (LIMIT + 1)})
        assert declared.status_code == 413 and str(LIMIT) in declared.json()["detail"]
        assert declared.json()["type"] == "urn:earful:problem:too-large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as the bytes arrive
            yield b'{"text": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        streamed = await api.post("/v1/notes", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413, streamed.text


# --- NUL and lone surrogates ----------------------------------------------------------------------


async def test_nul_in_the_query_or_the_path_is_a_422_naming_it(open_api: FastAPI) -> None:
    async with await client(open_api) as api:
        query = await api.get("/v1/things/x", params={"q": "a\x00b"})
        assert query.status_code == 422 and query.json()["errors"][0]["loc"] == ["query", "q"]
        name = await api.get("/v1/things/x", params={"q\x00": "b"})
        assert name.status_code == 422
        path = await api.get("/v1/things/a%00b")
        assert path.status_code == 422 and path.json()["errors"][0]["loc"] == ["path"]
        fine = await api.get("/v1/things/x", params={"q": "a%00b \\x00 \u00e9"})  # text that only looks like it
        assert fine.status_code == 200 and fine.json()["q"] == "a%00b \\x00 \u00e9"


@pytest.mark.parametrize("raw", [rb'{"text": "a\u0000b"}', rb'{"text": "\ud800"}', rb'{"text": "\udc00\ud800"}',
                                 rb'{"text": "\ud83dx"}', rb'{"text": "\\\u0000"}'])
async def test_text_postgresql_cannot_store_is_a_422(open_api: FastAPI, raw: bytes) -> None:
    async with await client(open_api) as api:
        r = await api.post("/v1/notes", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["body"]


@pytest.mark.parametrize("raw", [rb'{"text": "\\u0000"}', rb'{"text": "\ud83d\ude00 \u00e9"}', rb'{"text": "\\\\"}'])
async def test_escapes_of_storable_text_pass(open_api: FastAPI, raw: bytes) -> None:
    async with await client(open_api) as api:
        r = await api.post("/v1/notes", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text


def test_json_text_problem() -> None:
    assert json_text_problem(b'{"a": "b"}') is None
    assert json_text_problem(rb'["\u0000"]') is not None
    assert json_text_problem(rb'["\\u0000"]') is None  # an escaped backslash, then the text u0000
    assert json_text_problem(rb'["\ud800\udc00"]') is None
    assert json_text_problem(rb'["\ud800", "\udc00"]') is not None  # two halves in two strings


# --- API keys -------------------------------------------------------------------------------------


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[bytes, bytes]]]:
    """Every hmac.compare_digest call the key check makes (the real function still decides)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    yield calls


async def test_the_alerting_api_compares_keys_in_constant_time(compared: list[tuple[bytes, bytes]]) -> None:
    """Every configured key is compared, with hmac.compare_digest, whatever is presented."""
    route = Route("default", ("ops",), ("watchlist",), group_wait_s=0.5, group_interval_s=60, repeat_interval_s=3600)
    config = NotifyConfig({"ops": Receiver("ops", "webhook", "https://hooks.example.com/x")}, route, (), DEFAULT_INHIBIT)
    app = ops_app(Health("alerting"), "alerting", RequestLimits(LIMIT, None))
    app.include_router(build_router(lambda: None, config, ring("key-one", "key-two"),
                                    lambda: datetime.now(timezone.utc), lambda: None))
    async with await client(app) as api:
        for wrong in ("key-onf", "k", "key-one-and-more"):
            r = await api.get("/v1/silences", headers={"X-API-Key": wrong})
            assert r.status_code == 401, r.text
        assert len(compared) == 3 * 2
        compared.clear()
        r = await api.get("/v1/silences", headers={"X-API-Key": "key-two"})
        assert r.status_code == 503  # past the key check: no database in this test
        assert len(compared) == 2


@pytest.mark.parametrize("param", ["key", "api_key", "apikey", "X-API-Key"])
async def test_a_key_in_the_url_is_not_accepted(param: str) -> None:
    """URLs end up in access logs, browser history and Referer headers."""
    app = app_with(RequestLimits(LIMIT, None), keys=ring("k1"))
    async with await client(app) as api:
        assert (await api.get("/v1/things/x", params={param: "k1"})).status_code == 401
        assert (await api.get("/v1/things/x", headers={"X-API-Key": "k1"})).status_code == 200
