"""Ingest as a real process against the real broker: 202 only after the ack, 4xx say what is wrong."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from earful.core.topics import RAW
from earful.ingest.model import mention_id
from earful.stack.broker import free_port
from earful.stack.processes import ServiceProcess, service_env
from tests.support import codecs, consume_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingest(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    svc = ServiceProcess("ingest", port, service_env(base_env, "ingest", port), tmp_path_factory.mktemp("logs") / "ingest.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    svc.stop()


def _mention(i: int, **over: object) -> dict[str, object]:
    m = {"source": "mastodon", "source_id": f"m{i}", "text": f"Acme Air post {i}", "created_at": "2026-11-02T10:00:00Z",
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
        ({"mentions": [_mention(1, created_at="2026-11-02T10:00:00")]}, 422, "mentions[0].created_at"),
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
    assert path in [p["path"] for p in resp.json()["problems"]]


def test_malformed_json_is_a_400(ingest: ServiceProcess) -> None:
    resp = httpx.post(ingest.url + "/v1/mentions", content=b'{"mentions": [', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert "JSON" in resp.json()["error"]


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
    from earful.stack.broker import LocalBroker

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
        assert resp.headers["Retry-After"] and "retry" in resp.json()["error"]
        assert httpx.get(svc.url + "/readyz").status_code == 503
    finally:
        svc.stop()
        own_broker.stop()
