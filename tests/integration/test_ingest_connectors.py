"""Each connector against a local server speaking its protocol, producing to the real broker.

Happy path, malformed payloads, server errors, disconnect and resume, and a restart (a new
connector on the same state folder) that re-emits nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from earful.core.kafka import Codecs, make_producer
from earful.core.mention import MentionIn, mention_id, to_record
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful.ingest.connectors.bluesky import BlueskyConnector
from earful.ingest.connectors.feeds import FeedConfig, FeedPoller
from earful.ingest.connectors.mastodon import MastodonConnector, MastodonStream
from earful.ingest.publisher import Dedup, Publisher
from earful.watchlists import WatchlistSet
from earful_dev.stack.broker import free_port
from tests.dates import shift_dates, shifted_bytes
from tests.protocol_servers import FeedDoc, FeedServer, JetstreamServer, MastodonServer, make_status
from tests.support import consume_all, eventually

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"


def fixture(name: str) -> bytes:
    """A fixture document with its dates moved to recent days (connectors skip items older than the retention period)."""
    return shifted_bytes((FIXTURES / name).read_bytes())


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    producer = make_producer(settings, "test-connectors")
    await producer.start()
    yield Publisher(producer, Codecs(settings).for_topic(RAW), 5.0, max_in_flight=1000, dedup=Dedup(10000, 3600))
    await producer.stop()


def connector_settings(settings: Settings, tmp_path: Path, **over: Any) -> Settings:
    return Settings(kafka_bootstrap=settings.kafka_bootstrap, ingest_state_dir=tmp_path / "state", ingest_feed_jitter=0,
                    ingest_reconnect_max_s=1.0, ingest_http_timeout_s=5.0, **over)


async def raw_records(settings: Settings, ids: set[str], expect: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Every record on the raw topic whose mention id is in `ids` (waits for `expect` of them; fails without them)."""
    codec = Codecs(settings).for_topic(RAW)
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = [codec.decode(m.value) for m in await consume_all(settings, RAW, expect=10**9, timeout_s=0.5)
                    if m.key.decode() in ids]
        return len(found) >= expect

    assert await eventually(enough, timeout_s=timeout_s, interval_s=0.2), \
        f"{len(found)} of {expect} records arrived: {sorted(r['source_id'] for r in found)}"
    return found


class Running:
    """A connector's run loop as a task, stopped (cleanly, via its stop event) on exit."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.connector.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


# --- feeds ------------------------------------------------------------------------------------


async def test_feeds_publish_each_item_once_with_conditional_get_and_survive_a_restart(settings, publisher, tmp_path) -> None:
    server = FeedServer()
    server.docs = {"rss": FeedDoc(fixture("rss2.xml"), "application/rss+xml; charset=UTF-8"),
                   "atom": FeedDoc(fixture("atom.xml"), "application/atom+xml"),
                   "json": FeedDoc(fixture("feed.json"), "application/feed+json")}
    await server.start()
    s = connector_settings(settings, tmp_path)
    feeds = [FeedConfig(f"{server.url}/rss", 0.3, "news", country="GB"), FeedConfig(f"{server.url}/atom", 0.3, "blog"),
             FeedConfig(f"{server.url}/json", 0.3, "news")]
    rss_ids = [mention_id("news", f"https://travel-daily.example/?p={p}") for p in (48213, 48190, 48100)]
    ids = {*rss_ids, mention_id("blog", "tag:reiseblog-nord.example,2026:post-311"),
           mention_id("news", "https://news.globex.example/2026/11/q3-results"), mention_id("news", "2026-11-01-sustainability")}
    malformed_before = metric("earful_ingest_errors_total", connector="feed", kind="malformed_item")
    try:
        async with Running(FeedPoller(publisher, s, feeds)):
            records = await raw_records(settings, ids, expect=6)
            assert await eventually(lambda: _true(all(304 in server.statuses(n) for n in ("rss", "atom", "json"))), 15)
        assert {r["mention_id"] for r in records} == ids and len(records) == 6
        by_id = {r["mention_id"]: r for r in records}
        first = by_id[rss_ids[0]]
        assert first["connector"] == "feed" and first["content_type"] == "application/rss+xml"
        assert first["title"] == "Acme Air grounds fleet after IT outage" and first["country"] == "GB"
        assert first["fetched_at"] is not None and "<p>" not in first["text"] and first["lang"] == "en"
        assert by_id[mention_id("blog", "tag:reiseblog-nord.example,2026:post-311")]["content_type"] == "application/atom+xml"
        assert metric("earful_ingest_errors_total", connector="feed", kind="malformed_item") >= malformed_before + 2
        conditional = [r for r in server.requests["rss"] if r["status"] == "304"]
        assert conditional and all(r["if_none_match"] and r["if_modified_since"] for r in conditional)
        assert server.requests["rss"][0]["user_agent"].startswith("Earful/")

        # Restart on the same state folder; the RSS feed now has one new item and a new ETag.
        new_item = shifted_bytes(
            b"<item><title>Acme Air: systems restored</title><link>https://travel-daily.example/restored/</link>"
            b"<guid isPermaLink=\"false\">https://travel-daily.example/?p=48300</guid>"
            b"<pubDate>Mon, 02 Nov 2026 10:00:00 +0000</pubDate><description>All flights resume.</description></item>")
        server.docs["rss"] = FeedDoc(server.docs["rss"].body.replace(b"<item>", new_item + b"<item>", 1), "application/rss+xml")
        new_id = mention_id("news", "https://travel-daily.example/?p=48300")
        async with Running(FeedPoller(publisher, s, feeds)):
            await raw_records(settings, {new_id}, expect=1)
            polled = {name: len(server.requests[name]) for name in ("rss", "atom", "json")}
            # Two more polls of each feed answered (a feed's next request comes after its last answer is handled).
            assert await eventually(lambda: all(len(server.requests[n]) >= polled[n] + 3 for n in polled), 15), \
                {n: server.statuses(n) for n in polled}
        again = await raw_records(settings, ids | {new_id}, expect=7)
        assert sorted(r["mention_id"] for r in again) == sorted(ids | {new_id})  # nothing re-emitted
    finally:
        await server.stop()


async def _true(value: bool) -> bool:
    return value


async def test_feed_errors_back_off_and_recover(settings, publisher, tmp_path) -> None:
    server = FeedServer()
    atom = fixture("atom.xml").replace(b"post-311", b"post-999")
    server.docs["flaky"] = FeedDoc(atom, "application/atom+xml")
    server.failures["flaky"] = [(500, {}), (429, {"Retry-After": "1"}),
                                FeedDoc((FIXTURES / "not_a_feed.html").read_bytes(), "text/html"),
                                FeedDoc((FIXTURES / "truncated.xml").read_bytes(), "application/rss+xml")]
    await server.start()
    errors_before = metric("earful_ingest_errors_total", connector="feed", kind="source_error")
    try:
        async with Running(FeedPoller(publisher, connector_settings(settings, tmp_path), [FeedConfig(f"{server.url}/flaky", 0.2, "blog")])):
            (record,) = await raw_records(settings, {mention_id("blog", "tag:reiseblog-nord.example,2026:post-999")}, expect=1,
                                          timeout_s=30)
        assert server.statuses("flaky")[:5] == [500, 429, 200, 200, 200]
        assert metric("earful_ingest_errors_total", connector="feed", kind="source_error") >= errors_before + 3
        assert record["lang"] == "de"
    finally:
        await server.stop()


# --- Mastodon ---------------------------------------------------------------------------------


async def test_mastodon_streams_backfills_after_a_disconnect_and_resumes_after_restart(settings, publisher, tmp_path) -> None:
    server = MastodonServer(token="tok-123")
    base = 113456789000000000
    server.timeline = [make_status(base + i, f"Acme Air post {i}") for i in range(1, 4)]
    await server.start()
    s = connector_settings(settings, tmp_path, ingest_mastodon_access_token="tok-123", ingest_mastodon_backfill_pages=3)
    stream = MastodonStream(server.url, "hashtag", "AcmeAir")
    uri = lambda i: f"https://mastodon.example/users/janedoe/statuses/{base + i}"  # noqa: E731
    ids = lambda *n: {mention_id("mastodon", uri(i)) for i in n}  # noqa: E731
    malformed_before = metric("earful_ingest_errors_total", connector="mastodon", kind="malformed_event")
    try:
        async with Running(MastodonConnector(publisher, s, [stream])):
            await raw_records(settings, ids(1, 2, 3), expect=3)  # first start: the newest page
            await server.wait_for_streams(1)
            s4 = make_status(base + 4, "Acme Air post 4")
            server.timeline.append(s4)
            await server.push("update", json.dumps(s4))
            await server.push("update", "{broken json")
            await server.push("delete", str(base + 2))
            booster = make_status(base + 5, "", account="bob", reblog=server.timeline[0])
            server.timeline.append(booster)
            await server.push("update", json.dumps(booster))
            boost_id = mention_id("mastodon", booster["uri"])
            await raw_records(settings, ids(4) | {boost_id}, expect=2)
            await server.disconnect()
            server.timeline.append(make_status(base + 6, "Acme Air post 6 (while disconnected)"))
            await raw_records(settings, ids(6), expect=1)  # backfilled before reconnecting
            await server.wait_for_streams(2)
            s7 = make_status(base + 7, "Acme Air post 7", likes=3)
            server.timeline.append(s7)
            await server.push("update", json.dumps(s7))
            await raw_records(settings, ids(7), expect=1)
        assert {"min_id": str(base + 5), "limit": "40"}.items() <= server.backfill_requests[1].items()
        assert metric("earful_ingest_errors_total", connector="mastodon", kind="malformed_event") >= malformed_before + 1
        assert server.unauthorized == 0

        # A restart resumes after the newest status: nothing is produced twice.
        async with Running(MastodonConnector(publisher, s, [stream])):
            await server.wait_for_streams(3)
            await asyncio.sleep(0.5)  # not a wait: the restarted connector runs a while, and must emit nothing again
        assert server.backfill_requests[-1]["min_id"] == str(base + 7)
        records = await raw_records(settings, ids(1, 2, 3, 4, 6, 7) | {boost_id}, expect=7)
        assert len(records) == 7, sorted(r["source_id"] for r in records)  # the boosted post 1 deduplicated
        boost = next(r for r in records if r["mention_id"] == boost_id)
        assert boost["reposted_from"] == uri(1) and boost["author"]["handle"] == "bob"
        assert boost["content_type"] == "text/event-stream" and boost["connector"] == "mastodon"
    finally:
        await server.stop()


async def test_mastodon_search_backfill_and_auth_failure(settings, publisher, tmp_path) -> None:
    server = MastodonServer(token="right")
    server.timeline = [make_status(900 + i, f"Globex search hit {i}", instance="https://m2.example") for i in range(3)]
    await server.start()
    s = connector_settings(settings, tmp_path, ingest_mastodon_access_token="right")
    search = MastodonStream(server.url, "search", "Globex")
    try:
        async with Running(MastodonConnector(publisher, s, [search])):
            await raw_records(settings, {mention_id("mastodon", f"https://m2.example/users/janedoe/statuses/{900 + i}")
                                         for i in range(3)}, expect=3)
        assert server.backfill_requests[0]["q"] == "Globex" and server.backfill_requests[0]["type"] == "statuses"
        errors_before = metric("earful_ingest_errors_total", connector="mastodon", kind="source_error")
        wrong = connector_settings(settings, tmp_path / "other", ingest_mastodon_access_token="wrong")
        async with Running(MastodonConnector(publisher, wrong, [MastodonStream(server.url, "public")])):
            assert await eventually(lambda: _true(server.unauthorized >= 2), 15)
        assert metric("earful_ingest_errors_total", connector="mastodon", kind="source_error") >= errors_before + 2
    finally:
        await server.stop()


# --- Bluesky ----------------------------------------------------------------------------------


async def test_jetstream_filters_by_watchlists_resumes_from_its_cursor(settings, publisher, tmp_path) -> None:
    lines = shift_dates((FIXTURES / "jetstream.jsonl").read_text()).splitlines()  # createdAt recent; time_us (cursors) as written
    server = JetstreamServer(events=[lines[0], lines[1], "this is not json", lines[2], lines[3], lines[4], lines[5],
                                     lines[6], lines[7]], drop_after=[4], refuse=2)
    await server.start()
    s = connector_settings(settings, tmp_path, ingest_bluesky_url=server.ws_url)
    watchlists = WatchlistSet.from_file(s.watchlists_dir)
    post = lambda did, rkey: mention_id("bluesky", f"at://{did}/app.bsky.feed.post/{rkey}")  # noqa: E731
    matching = {post("did:plc:eygmaihciaxprqvxpfvl6flk", "3l3qo2vuowo2b"), post("did:plc:qc6xzgctorfsm35w6i3vdebx", "3l3qo2xlzxs2d"),
                post("did:plc:4llrhdclvdlmmynkwsmg5tdc", "3l3qo32lkxc2f"), post("did:plc:xmkh3sdrwr5sdyk5zqmtwixy", "3l3qo2vuowo2c")}
    not_matching = post("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "3l3qo2wa3hk2c")
    malformed_before = metric("earful_ingest_errors_total", connector="bluesky", kind="malformed_event")
    refused_before = metric("earful_ingest_errors_total", connector="bluesky", kind="source_error")
    try:
        async with Running(BlueskyConnector(publisher, s, lambda: watchlists)):  # refused twice (503), then served
            records = await raw_records(settings, matching | {not_matching}, expect=4)
            assert await eventually(lambda: _true(len(server.cursors) >= 2), 10)
        assert server.refused == 2
        assert metric("earful_ingest_errors_total", connector="bluesky", kind="source_error") >= refused_before + 2
        assert server.cursors[0] is None and server.collections[0] == "app.bsky.feed.post"
        assert server.cursors[1] == "1793608262801332"  # dropped after 4 messages: resume after the 4th (identity event)
        assert {r["mention_id"] for r in records} == matching
        reply = next(r for r in records if r["source_id"].endswith("3l3qo2xlzxs2d"))
        assert reply["in_reply_to"] == "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b"
        assert reply["lang"] == "de" and reply["connector"] == "bluesky" and reply["author"]["id"].startswith("did:plc:")
        assert metric("earful_ingest_errors_total", connector="bluesky", kind="malformed_event") >= malformed_before + 2

        # Restart: resumes after the last event handled, so nothing is re-sent; new events still flow.
        server.add(lines[0].replace("1793608262329308", "1793608264000000").replace("3l3qo2vuowo2b", "3l3qo9newpost"))
        async with Running(BlueskyConnector(publisher, s, lambda: watchlists)):
            await raw_records(settings, {post("did:plc:eygmaihciaxprqvxpfvl6flk", "3l3qo9newpost")}, expect=1)
        assert server.cursors[2] == "1793608263700001"
        again = await raw_records(settings, matching | {post("did:plc:eygmaihciaxprqvxpfvl6flk", "3l3qo9newpost")}, expect=5)
        assert len(again) == 5
    finally:
        await server.stop()


async def test_a_record_that_does_not_encode_is_dropped_not_retried_forever(settings, publisher) -> None:
    now = datetime.now(timezone.utc)
    good = to_record(MentionIn.model_validate({"source": "rss", "source_id": "enc-ok", "text": "fine",
                                               "created_at": "2026-11-02T08:00:00Z"}), now, connector="feed")
    bad = {**to_record(MentionIn.model_validate({"source": "rss", "source_id": "enc-bad", "text": "x",
                                                 "created_at": "2026-11-02T08:00:00Z"}), now, connector="feed"),
           "engagement": {"likes": 2**70, "reposts": 0, "replies": 0, "observed_at": now}}  # beyond Avro long
    errors_before = metric("earful_ingest_errors_total", connector="feed", kind="encode_error")
    result = await asyncio.wait_for(publisher.publish_until_done([good, bad], "feed", asyncio.Event()), 15)
    assert result.produced == 1
    assert metric("earful_ingest_errors_total", connector="feed", kind="encode_error") == errors_before + 1
    (record,) = await raw_records(settings, {mention_id("rss", "enc-ok"), mention_id("rss", "enc-bad")}, expect=1)
    assert record["source_id"] == "enc-ok"


# --- what storage would refuse is skipped and counted, not produced -----------------------------


async def test_feed_items_storage_would_refuse_are_skipped_and_counted(settings, publisher, tmp_path) -> None:
    now = datetime.now(timezone.utc)
    item = {"content_text": "Acme Air on time", "date_published": (now - timedelta(days=1)).isoformat()}
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [
        {**item, "id": "refuse-ok"},
        {**item, "id": "refuse-nul-author", "authors": [{"name": "Jane\u0000Doe"}]},
        {**item, "id": "refuse-nul-url", "url": "https://a.example/x\u0000y"},
        {**item, "id": "refuse-old", "date_published": (now - timedelta(days=400)).isoformat()},
    ]}
    server = FeedServer()
    server.docs["json"] = FeedDoc(json.dumps(doc).encode(), "application/feed+json")  # NUL as \u0000
    await server.start()
    ids = {mention_id("news", f"refuse-{k}") for k in ("ok", "nul-author", "nul-url", "old")}
    before = metric("earful_ingest_errors_total", connector="feed", kind="validation_error")
    try:
        async with Running(FeedPoller(publisher, connector_settings(settings, tmp_path), [FeedConfig(f"{server.url}/json", 0.3, "news")])):
            (record,) = await raw_records(settings, ids, expect=1)
            assert await eventually(lambda: _true(304 in server.statuses("json")), 15)
        assert record["source_id"] == "refuse-ok"
        assert metric("earful_ingest_errors_total", connector="feed", kind="validation_error") == before + 3
        assert len(await raw_records(settings, ids, expect=1)) == 1
    finally:
        await server.stop()


# --- redirects to private addresses (SSRF) ------------------------------------------------------


@contextlib.asynccontextmanager
async def redirecting_to(target: str) -> AsyncIterator[str]:
    """A local server answering every GET with a 302 to `target` plus the path and query asked for."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target + request.path_qs)

    app = web.Application()
    app.router.add_get("/{tail:.*}", redirect)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _refusals(caplog: pytest.LogCaptureFixture, connector: str) -> list[str]:
    return [str(getattr(r, "error", "")) for r in caplog.records
            if getattr(r, "connector", None) == connector and "allow it with EARFUL_INGEST_ALLOWED_NETWORKS" in str(getattr(r, "error", ""))]


@pytest.mark.parametrize("where", ["loopback", "link-local"])
async def test_a_feed_redirected_to_a_private_address_is_refused(settings, publisher, tmp_path, caplog, where: str) -> None:
    """The configured feed is fetched as given; where its redirect leads must be public (or allowed)."""
    target = FeedServer()  # a live server on 127.0.0.1: if the redirect were followed, it would be asked
    target.docs["rss"] = FeedDoc(fixture("rss2.xml").replace(b"?p=", b"?ssrf="), "application/rss+xml")
    await target.start()
    caplog.set_level(logging.WARNING, logger="earful.ingest.connectors.base")
    try:
        async with redirecting_to(target.url if where == "loopback" else "http://169.254.169.254") as redirector:
            async with Running(FeedPoller(publisher, connector_settings(settings, tmp_path), [FeedConfig(f"{redirector}/rss", 0.2, "news")])):
                assert await eventually(lambda: _true(len(_refusals(caplog, "feed")) >= 2), 15), caplog.text[-2000:]
        assert f"is a {where} address" in _refusals(caplog, "feed")[0]
        assert target.requests == {}
    finally:
        await target.stop()


async def test_a_feed_redirect_into_an_allowed_network_is_followed(settings, publisher, tmp_path) -> None:
    target = FeedServer()
    target.docs["rss"] = FeedDoc(fixture("rss2.xml").replace(b"?p=", b"?allowed="), "application/rss+xml")
    await target.start()
    s = connector_settings(settings, tmp_path, ingest_allowed_networks="127.0.0.0/8")
    try:
        async with redirecting_to(target.url) as redirector:
            async with Running(FeedPoller(publisher, s, [FeedConfig(f"{redirector}/rss", 0.3, "news")])):
                await raw_records(settings, {mention_id("news", "https://travel-daily.example/?allowed=48213")}, expect=1)
        assert target.statuses("rss")[0] == 200
    finally:
        await target.stop()


async def test_a_mastodon_instance_redirected_to_a_private_address_is_refused_unless_allowed(
        settings, publisher, tmp_path, caplog) -> None:
    server = MastodonServer()
    server.timeline = [make_status(777000 + i, f"Acme Air redirected {i}", instance="https://m3.example") for i in range(2)]
    await server.start()
    caplog.set_level(logging.WARNING, logger="earful.ingest.connectors.base")
    ids = {mention_id("mastodon", f"https://m3.example/users/janedoe/statuses/{777000 + i}") for i in range(2)}
    try:
        for target, kind in ((server.url, "loopback"), ("http://169.254.169.254", "link-local")):
            async with redirecting_to(target) as redirector:
                async with Running(MastodonConnector(publisher, connector_settings(settings, tmp_path / "refused"),
                                                     [MastodonStream(redirector, "search", "Acme")])):
                    assert await eventually(
                        lambda kind=kind: _true(any(f"is a {kind} address" in r for r in _refusals(caplog, "mastodon"))),
                        15), caplog.text[-2000:]
        assert server.backfill_requests == []

        allowed = connector_settings(settings, tmp_path / "allowed", ingest_allowed_networks="127.0.0.0/8")
        async with redirecting_to(server.url) as redirector:
            async with Running(MastodonConnector(publisher, allowed, [MastodonStream(redirector, "search", "Acme")])):
                await raw_records(settings, ids, expect=2)
    finally:
        await server.stop()


@pytest.mark.parametrize("target_host", ["127.0.0.1", "localhost"])  # an IP literal (no resolver) and a name
async def test_a_jetstream_redirected_to_a_private_address_is_refused_unless_allowed(
        settings, publisher, tmp_path, caplog, target_host: str) -> None:
    """The WebSocket upgrade of the configured URL answered with a 302 to another (loopback) origin:
    not followed, counted as a source error, logged without a traceback; followed into an allowed network."""
    lines = (FIXTURES / "jetstream.jsonl").read_text().splitlines()
    server = JetstreamServer(events=lines[:1])  # a live Jetstream on 127.0.0.1: if the redirect were followed, it would be asked
    await server.start()
    caplog.set_level(logging.WARNING, logger="earful.ingest.connectors.base")
    target = f"http://{target_host}:{server.port}"
    errors_before = metric("earful_ingest_errors_total", connector="bluesky", kind="source_error")
    try:
        async with redirecting_to(target) as redirector:
            s = connector_settings(settings, tmp_path / "refused", ingest_bluesky_url=redirector.replace("http", "ws", 1) + "/subscribe")
            async with Running(BlueskyConnector(publisher, s, lambda: WatchlistSet.from_file(s.watchlists_dir))):
                assert await eventually(lambda: _true(len(_refusals(caplog, "bluesky")) >= 2), 15), caplog.text[-2000:]
        assert "is a loopback address" in _refusals(caplog, "bluesky")[0]
        assert server.cursors == []  # never connected
        assert metric("earful_ingest_errors_total", connector="bluesky", kind="source_error") >= errors_before + 2
        refusals = [r for r in caplog.records if getattr(r, "connector", None) == "bluesky"]
        assert refusals and all(r.exc_info is None and r.levelno == logging.WARNING for r in refusals)

        async with redirecting_to(target) as redirector:
            allowed = connector_settings(settings, tmp_path / "allowed", ingest_allowed_networks="127.0.0.0/8",
                                         ingest_bluesky_url=redirector.replace("http", "ws", 1) + "/subscribe")
            async with Running(BlueskyConnector(publisher, allowed, lambda: WatchlistSet.from_file(allowed.watchlists_dir))):
                assert await eventually(lambda: _true(len(server.cursors) >= 1), 15)  # upgraded where the redirect led
        assert server.collections[0] == "app.bsky.feed.post"
    finally:
        await server.stop()
