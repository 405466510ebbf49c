"""Ingest as a real process against the real broker: 202 only after the ack, 4xx say what is wrong."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from earful.core.mention import mention_id
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, consume_all, eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingest(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    svc = ServiceProcess("ingest", port, service_env(base_env, "ingest", port), tmp_path_factory.mktemp("logs") / "ingest.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    svc.stop()


#: An hour ago (ingest refuses mentions older than the retention period, and from the future).
RECENT = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _mention(i: int, **over: object) -> dict[str, object]:
    m = {"source": "mastodon", "source_id": f"m{i}", "text": f"Acme Air post {i}", "created_at": RECENT,
         "author": {"handle": "@jane", "followers": 5}}
    m.update(over)
    return m


async def test_accepted_batch_is_on_the_raw_topic_keyed_by_stable_id(ingest: ServiceProcess, settings) -> None:
    resp = httpx.post(ingest.url + "/v1/mentions", json={"mentions": [_mention(i) for i in range(20)]})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == 20
    assert body["mention_ids"] == [mention_id("mastodon", f"m{i}") for i in range(20)]

    records = await consume_all(settings, RAW, expect=20)
    codec = codecs(settings).for_topic(RAW)
    decoded = {r.key.decode(): codec.decode(r.value) for r in records}
    assert set(decoded) == set(body["mention_ids"])
    one = decoded[mention_id("mastodon", "m3")]
    assert one["text"] == "Acme Air post 3" and one["author"]["handle"] == "jane"
    assert one["received_at"] >= one["created_at"]


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"mentions": [_mention(1, source="Not Valid")]}, 422, "mentions[0].source"),
        ({"mentions": [_mention(1, created_at=RECENT.removesuffix("Z"))]}, 422, "mentions[0].created_at"),  # no time zone
        ({"mentions": [_mention(1, text="   ")]}, 422, "mentions[0].text"),
        ({"mentions": [_mention(1, colour="red")]}, 422, "mentions[0].colour"),
        ({"mentions": []}, 422, "mentions"),
        ({"mentions": [_mention(1, created_at="2999-01-01T00:00:00Z")]}, 422, "mentions[0].created_at"),
        ({"mentions": [_mention(1, author={"followers": 2**64})]}, 422, "mentions[0].author.followers"),
    ],
)
def test_bad_input_gets_4xx_naming_the_problem(ingest: ServiceProcess, body: dict, status: int, path: str) -> None:
    resp = httpx.post(ingest.url + "/v1/mentions", json=body)
    assert resp.status_code == status, resp.text
    assert path in [p["path"] for p in resp.json()["errors"]]


# Every string field of a mention (each ends in a PostgreSQL text column, which cannot hold NUL).
_NUL = [("source_id", {"source_id": "m\x001"}), ("text", {"text": "Acme\x00Air"}), ("url", {"url": "https://a.example/\x00"}),
        ("author.id", {"author": {"id": "u\x001"}}), ("author.handle", {"author": {"handle": "ja\x00ne"}}),
        ("author.display_name", {"author": {"display_name": "Jane\x00Doe"}}), ("in_reply_to", {"in_reply_to": "m\x000"}),
        ("reposted_from", {"reposted_from": "m\x000"}), ("title", {"title": "Acme\x00Air"}), ("source", {"source": "mast\x00odon"}),
        ("lang", {"lang": "e\x00n"}), ("country", {"country": "G\x00B"})]


@pytest.mark.parametrize(("path", "over"), _NUL, ids=[p for p, _ in _NUL])
def test_a_nul_character_in_any_field_is_a_422_naming_it(ingest: ServiceProcess, path: str, over: dict[str, object]) -> None:
    """Accepted, such a mention would reach storage and end in the dead-letter queue."""
    resp = httpx.post(ingest.url + "/v1/mentions", json={"mentions": [_mention(900, **over)]})
    assert resp.status_code == 422, resp.text
    assert [p["path"] for p in resp.json()["errors"]] == [f"mentions[0].{path}"]


def test_times_storage_would_refuse_are_a_422_naming_them(ingest: ServiceProcess) -> None:
    """Older than the retention period (storage drops it), counts observed in the future (storage keeps
    the newest observation, so they would never be updated again)."""
    now = datetime.now(timezone.utc)
    old = _mention(901, created_at=(now - timedelta(days=396)).isoformat())
    observed = _mention(902, engagement={"likes": 1, "observed_at": (now + timedelta(hours=1)).isoformat()})
    far = _mention(903, engagement={"likes": 1, "observed_at": "9999-12-31T23:59:59-01:00"})
    resp = httpx.post(ingest.url + "/v1/mentions", json={"mentions": [old, observed, far, _mention(904)]})
    assert resp.status_code == 422, resp.text
    problems = resp.json()["errors"]
    assert [p["path"] for p in problems] == ["mentions[0].created_at", "mentions[1].engagement.observed_at",
                                            "mentions[2].engagement.observed_at"]
    assert "EARFUL_STORAGE_RETENTION_DAYS" in problems[0]["detail"]


def test_client_chosen_sources_add_a_bounded_number_of_metric_series(ingest: ServiceProcess) -> None:
    """A label value taken from the request would add two series per distinct source."""

    def series() -> set[str]:
        text = httpx.get(ingest.url + "/metrics").text
        return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}

    def push(prefix: str) -> None:
        mentions = [_mention(i, source=f"{prefix}{i}", source_id=f"{prefix}-{i}") for i in range(1000)]
        assert httpx.post(ingest.url + "/v1/mentions", json={"mentions": mentions}, timeout=30).status_code == 202

    before = series()
    push("sa")
    first = series()
    push("sb")
    assert len(first - before) <= 10, sorted(first - before)[:20]
    assert series() - first == set()
    assert 'earful_ingest_mentions_total{source="other"}' in first


def test_malformed_json_is_a_400(ingest: ServiceProcess) -> None:
    resp = httpx.post(ingest.url + "/v1/mentions", content=b'{"mentions": [', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert "JSON" in resp.json()["detail"]


@pytest.mark.parametrize("body", [b"#r\xff", b'{"mentions": [{"text": "caf\xe9"}]}'], ids=["garbage", "latin-1"])
def test_body_not_utf8_is_a_400_in_the_documented_shape(ingest: ServiceProcess, body: bytes) -> None:
    resp = httpx.post(ingest.url + "/v1/mentions", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["detail"] == "request body is not UTF-8 text" and resp.json()["errors"][0]["path"] == "(body)"


def test_framework_errors_keep_the_documented_shape(ingest: ServiceProcess) -> None:
    resp = httpx.get(ingest.url + "/v1/mentions")
    assert resp.status_code == 405 and resp.json()["detail"] == "Method Not Allowed"


def test_ops_endpoints(ingest: ServiceProcess) -> None:
    assert httpx.get(ingest.url + "/healthz").status_code == 200
    ready = httpx.get(ingest.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["kafka"] == "ok"
    metrics = httpx.get(ingest.url + "/metrics").text
    assert 'earful_ingest_mentions_total{source="mastodon"}' in metrics
    assert "/v1/mentions" in httpx.get(ingest.url + "/openapi.json").json()["paths"]


def test_sigterm_exits_zero(base_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    svc = ServiceProcess("ingest", port, service_env(base_env, "ingest", port), tmp_path / "ingest.log")
    svc.start()
    svc.wait_ready(60)
    assert svc.stop() == 0, svc.log_tail()


def test_broker_outage_is_a_503_not_a_silent_loss(base_env: dict[str, str], tmp_path: Path) -> None:
    """With the broker gone, ingest answers 503 (retry later) within its publish timeout."""
    from earful_dev.stack.broker import LocalBroker

    own_broker = LocalBroker.start()
    env = {**base_env, "EARFUL_KAFKA_BOOTSTRAP": own_broker.bootstrap, "EARFUL_INGEST_PUBLISH_TIMEOUT_S": "3"}
    port = free_port()
    svc = ServiceProcess("ingest", port, service_env(env, "ingest", port), tmp_path / "ingest.log")
    try:
        svc.start()
        svc.wait_ready(60)
        assert httpx.post(svc.url + "/v1/mentions", json={"mentions": [_mention(1)]}).status_code == 202
        own_broker.stop()
        resp = httpx.post(svc.url + "/v1/mentions", json={"mentions": [_mention(2)]}, timeout=30)
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] and "retry" in resp.json()["detail"]
        assert httpx.get(svc.url + "/readyz").status_code == 503
        started = time.monotonic()
        assert svc.stop() == 0, svc.log_tail()  # exits cleanly without waiting out the producer's timeouts
        assert time.monotonic() - started < 10
        assert "unacknowledged records dropped (their senders got a 503)" in svc.log_path.read_text()
    finally:
        svc.stop()
        own_broker.stop()


# --- API keys, content type, size, rate limit, dedup ---------------------------------------------

KEY_A, KEY_B = "k-alpha-0123456789", "k-beta-9876543210"
KEY_C = "k-gamma-5555555555"  # used only by the rate-limit test, so no other test spends its budget


@pytest.fixture(scope="module")
def guarded(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """An ingest process with API keys, a small body limit and a per-key rate limit."""
    port = free_port()
    env = {**base_env, "EARFUL_INGEST_API_KEYS": f"alpha:{KEY_A},beta:{KEY_B},gamma:{KEY_C}",
           "EARFUL_INGEST_MAX_BODY_BYTES": "20000", "EARFUL_INGEST_MAX_BATCH": "50", "EARFUL_INGEST_RATE_LIMIT_PER_S": "10"}
    svc = ServiceProcess("ingest", port, service_env(env, "ingest", port), tmp_path_factory.mktemp("logs") / "guarded.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    svc.stop()


def _body(*mentions: dict[str, object]) -> dict[str, object]:
    return {"mentions": list(mentions)}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "nope"}, {"X-API-Key": KEY_A[:-1]}, {"Authorization": f"Basic {KEY_A}"},
                                     {"Authorization": "Bearer"}])
def test_missing_or_wrong_key_is_401(guarded: ServiceProcess, headers: dict[str, str]) -> None:
    resp = httpx.post(guarded.url + "/v1/mentions", json=_body(_mention(900)), headers=headers)
    assert resp.status_code == 401, resp.text
    assert "API key" in resp.json()["detail"] and resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_either_key_header_is_accepted(guarded: ServiceProcess) -> None:
    assert httpx.post(guarded.url + "/v1/mentions", json=_body(_mention(901)), headers={"X-API-Key": KEY_A}).status_code == 202
    assert httpx.post(guarded.url + "/v1/mentions", json=_body(_mention(902)),
                      headers={"Authorization": f"Bearer {KEY_B}"}).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1",
                                          "application/xml", None])
def test_wrong_content_type_is_415(guarded: ServiceProcess, content_type: str | None) -> None:
    headers = {"X-API-Key": KEY_A} | ({"Content-Type": content_type} if content_type else {})
    resp = httpx.post(guarded.url + "/v1/mentions", content=b'{"mentions": []}', headers=headers)
    assert resp.status_code == 415, resp.text
    assert "application/json" in resp.json()["detail"]


def test_json_with_utf8_charset_is_fine(guarded: ServiceProcess) -> None:
    resp = httpx.post(guarded.url + "/v1/mentions", content=json.dumps(_body(_mention(903))).encode(),
                      headers={"X-API-Key": KEY_A, "Content-Type": "Application/JSON; charset=UTF-8"})
    assert resp.status_code == 202, resp.text


def test_oversize_body_is_413_before_parsing(guarded: ServiceProcess) -> None:
    garbage = b"{" + b"x" * 30000  # not JSON: a 400 would mean it was parsed
    resp = httpx.post(guarded.url + "/v1/mentions", content=garbage, headers={"X-API-Key": KEY_A, "Content-Type": "application/json"})
    assert resp.status_code == 413 and "20000" in resp.json()["detail"]

    def chunks():  # no Content-Length: counted while the bytes arrive
        for _ in range(30):
            yield b"x" * 1000

    resp = httpx.post(guarded.url + "/v1/mentions", content=chunks(), headers={"X-API-Key": KEY_A, "Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    resp = httpx.post(guarded.url + "/v1/mentions", json=_body(*[_mention(i) for i in range(51)]), headers={"X-API-Key": KEY_B})
    assert resp.status_code == 413 and resp.json()["errors"][0]["path"] == "mentions"  # too many mentions


def test_rate_limit_is_429_per_key(guarded: ServiceProcess) -> None:
    # 10 mentions/s, bursts of 50: one full batch passes, the next one right after is refused
    # (unless 5 s passed in between: a heavily loaded machine; then the budget is spent again).
    first = httpx.post(guarded.url + "/v1/mentions", json=_body(*[_mention(1000 + i) for i in range(50)]), headers={"X-API-Key": KEY_C})
    assert first.status_code == 202, first.text
    for attempt in range(5):
        second = httpx.post(guarded.url + "/v1/mentions", json=_body(*[_mention(1100 + 100 * attempt + i) for i in range(50)]),
                            headers={"X-API-Key": KEY_C})
        if second.status_code != 202:
            break
    assert second.status_code == 429, second.text
    assert 1 <= int(second.headers["Retry-After"]) <= 6 and "rate limit" in second.json()["detail"]
    other = httpx.post(guarded.url + "/v1/mentions", json=_body(_mention(1200)), headers={"X-API-Key": KEY_B})
    assert other.status_code == 202, other.text  # another key has its own budget


async def test_redelivery_is_dropped_a_newer_observation_passes(ingest: ServiceProcess, settings) -> None:
    m = _mention(5000, engagement={"likes": 1})
    first = httpx.post(ingest.url + "/v1/mentions", json=_body(m))
    again = httpx.post(ingest.url + "/v1/mentions", json=_body(m, m))
    update = httpx.post(ingest.url + "/v1/mentions", json=_body({**m, "engagement": {"likes": 40}}),
                        headers={"X-Earful-Connector": "replay"})
    assert [r.status_code for r in (first, again, update)] == [202, 202, 202]
    assert (first.json()["duplicates"], again.json()["duplicates"], update.json()["duplicates"]) == (0, 2, 0)
    assert again.json()["mention_ids"] == [mention_id("mastodon", "m5000")] * 2
    codec = codecs(settings).for_topic(RAW)
    records = [codec.decode(r.value) for r in await consume_all(settings, RAW, expect=10**9, timeout_s=2)
               if r.key.decode() == mention_id("mastodon", "m5000")]
    assert [(r["engagement"]["likes"], r["connector"]) for r in records] == [(1, "push"), (40, "replay")]
    metrics = httpx.get(ingest.url + "/metrics").text
    assert 'earful_ingest_duplicates_total{connector="push"} 2.0' in metrics
    assert 'earful_ingest_produced_total{connector="replay"} 1.0' in metrics


def test_unknown_connector_header_is_422(ingest: ServiceProcess) -> None:
    resp = httpx.post(ingest.url + "/v1/mentions", json=_body(_mention(5001)), headers={"X-Earful-Connector": "bluesky"})
    assert resp.status_code == 422 and "header.X-Earful-Connector" in [p["path"] for p in resp.json()["errors"]]


# --- backpressure and a broker outage ---------------------------------------------------------


async def test_broker_stopped_and_restarted_nothing_accepted_is_lost(base_env: dict[str, str], tmp_path: Path) -> None:
    """Clients push all the time; the broker goes away and comes back on the same port.

    During the outage requests answer 503 with Retry-After (the in-flight window is small, so
    most are refused at once instead of queueing); after it, every mention answered 202 is on
    the raw topic of the restarted broker. (The local broker keeps records in memory only, so
    the check covers what was accepted after the restart.)
    """
    from earful.core.topics import create_topics
    from earful_dev.stack.broker import LocalBroker

    own = LocalBroker.start(log_path=tmp_path / "broker.log")
    env = {**base_env, "EARFUL_KAFKA_BOOTSTRAP": own.bootstrap, "EARFUL_INGEST_PUBLISH_TIMEOUT_S": "2",
           "EARFUL_INGEST_MAX_IN_FLIGHT": "60"}
    port = free_port()
    svc = ServiceProcess("ingest", port, service_env(env, "ingest", port), tmp_path / "ingest.log")
    accepted: dict[str, float] = {}  # mention id → when its 202 came
    refused: list[tuple[int, str, str]] = []
    stopped: list[bool] = []  # set when the broker has been stopped
    refused_since_stop: set[int] = set()  # clients whose request in flight at the stop has finished
    restarted_at: list[float] = []
    stop = asyncio.Event()

    async def client(n: int) -> None:
        batch_no = 0
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            while not stop.is_set():
                body = _body(*[_mention(i, source_id=f"bp-{n}-{batch_no}-{i}") for i in range(30)])
                batch_no += 1
                while True:  # a good client retries the same batch until it is accepted
                    try:
                        resp = await http.post("/v1/mentions", json=body)
                    except httpx.TransportError as exc:  # a dropped connection: retry like any client would
                        refused.append((0, "", repr(exc)))
                        if stopped:
                            refused_since_stop.add(n)
                        await asyncio.sleep(0.2)  # not a wait: the client's pause before it retries
                        continue
                    if resp.status_code == 202:
                        now = time.monotonic()
                        accepted.update((mid, now) for mid in resp.json()["mention_ids"])
                        break
                    refused.append((resp.status_code, resp.headers.get("Retry-After", ""), resp.json()["detail"]))
                    if stopped:
                        refused_since_stop.add(n)
                    await asyncio.sleep(0.2)  # not a wait: the client's pause before it retries
                await asyncio.sleep(0.02)  # not a wait: the client's pace between two batches

    try:
        svc.start()
        svc.wait_ready(60)
        clients = [asyncio.create_task(client(n)) for n in range(4)]
        assert await eventually(lambda: len(accepted) >= 4 * 30, timeout_s=60), svc.log_tail()
        own.stop()
        stopped.append(True)
        # Requests the broker answered before it went away may still complete: once every client has
        # been refused since the stop, none of those is left.
        assert await eventually(lambda: len(refused_since_stop) == 4, timeout_s=60), svc.log_tail()
        before_outage = len(accepted)
        await asyncio.sleep(3)  # not a wait: the outage lasts a while, and nothing may be accepted during it
        during = len(accepted) - before_outage
        own = LocalBroker.start(port=own.port, log_path=tmp_path / "broker2.log")
        await create_topics(Settings(kafka_bootstrap=own.bootstrap))
        restarted_at.append(time.monotonic())
        assert await eventually(lambda: _accepted_since(accepted, restarted_at[0] + 1.0) >= 30, timeout_s=60), \
            svc.log_tail()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 60)

        assert before_outage > 0 and during == 0
        answered = [(code, retry) for code, retry, _ in refused if code != 0]
        assert answered and all(code == 503 and retry for code, retry in answered)
        assert any("busy" in error for _, _, error in refused) and any("unavailable" in error for _, _, error in refused)
        # Tansu's memory store can acknowledge and then lose the very first batch written to a
        # freshly created partition when produce requests race (its log: AlreadyExists at offset 0),
        # which is what a restarted in-memory broker presents; judged from a second after the restart.
        after = {mid for mid, at in accepted.items() if at >= restarted_at[0] + 1.0}
        assert len(after) >= 30
        on_topic = {r.key.decode() for r in await consume_all(Settings(kafka_bootstrap=own.bootstrap), RAW,
                                                               expect=10**9, timeout_s=3)}
        assert after <= on_topic, f"{len(after - on_topic)} accepted mentions missing"
        assert svc.alive()
    finally:
        stop.set()
        svc.stop()
        own.stop()


def _accepted_since(accepted: dict[str, float], since: float) -> int:
    return sum(1 for at in accepted.values() if at >= since)
