"""Kafka security end to end: services connect over TLS (mutual TLS included) and SASL (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512, over TLS and without), do their job, and stop at start-up with one
clear line when the credentials or the certificates are wrong. Every service runs as a process over
SASL_SSL: ingest publishes, enrichment enriches, storage stores into PostgreSQL, alerting fires an
alert and records it.

The broker is the local Tansu. Tansu 0.6 cannot terminate TLS and cannot complete a SASL exchange
(see tests/kafka_secure_proxy.py), so TLS and SASL are terminated by a proxy in front of it, which
checks certificates and passwords the way Apache Kafka does; Tansu's own `--authentication` is
used where it works: it refuses a SCRAM user it does not know.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from earful.core.errors import BrokerError, ConfigError
from earful.core.kafka import Codecs, start_producer
from earful.core.kafka_security import client_kwargs
from earful.core.settings import Settings
from earful.core.topics import ALERTS, ENRICHED, RAW, create_topics
from earful.storage.__main__ import start_kafka
from earful_dev.stack.broker import LocalBroker, free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.kafka_secure_proxy import Pki, SecureProxy, make_pki, server_tls
from tests.support import enriched_record, eventually, raw_record

pytestmark = pytest.mark.integration

USERS = {"earful": "s3cret-Passw0rd", "other": "another-password"}
FAIL_FAST_S = 30.0  # a service with wrong credentials must be gone well within this


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Secured:
    """A Tansu broker behind a TLS and/or SASL proxy, and the EARFUL_* settings that reach it."""

    def __init__(self, broker: LocalBroker, proxy: SecureProxy, env: dict[str, str]) -> None:
        self.broker, self.proxy, self.env = broker, proxy, env

    def settings(self, **override: str) -> Settings:
        env = {**self.env, **override}
        return Settings(**{k.removeprefix("EARFUL_").lower(): v for k, v in env.items()})


def _secured(tmp: Path, pki: Pki, *, tls: bool, mutual: bool = False, sasl: bool, env: dict[str, str]) -> Secured:
    port = free_port()
    broker = LocalBroker.start(log_path=tmp / "tansu.log", advertised_port=port)
    proxy = SecureProxy(port, broker.port, server_tls=server_tls(pki, require_client_cert=mutual) if tls else None,
                        users=USERS if sasl else None).start()
    return Secured(broker, proxy, {"EARFUL_KAFKA_BOOTSTRAP": proxy.bootstrap, **env})


@pytest.fixture(scope="module")
def mtls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Mutual TLS with an encrypted client key (the key password setting is used too)."""
    s = _secured(tmp_path_factory.mktemp("mtls"), pki, tls=True, mutual=True, sasl=False, env={
        "EARFUL_KAFKA_SECURITY_PROTOCOL": "SSL", "EARFUL_KAFKA_SSL_CAFILE": str(pki.ca),
        "EARFUL_KAFKA_SSL_CERTFILE": str(pki.client_cert), "EARFUL_KAFKA_SSL_KEYFILE": str(pki.client_key_encrypted),
        "EARFUL_KAFKA_SSL_KEY_PASSWORD": pki.key_password})
    yield s
    s.proxy.stop()
    s.broker.stop()


@pytest.fixture(scope="module")
def sasl_ssl(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    s = _secured(tmp_path_factory.mktemp("sasl-ssl"), pki, tls=True, sasl=True, env={
        "EARFUL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EARFUL_KAFKA_SSL_CAFILE": str(pki.ca),
        "EARFUL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "EARFUL_KAFKA_SASL_USERNAME": "earful",
        "EARFUL_KAFKA_SASL_PASSWORD": USERS["earful"]})
    yield s
    s.proxy.stop()
    s.broker.stop()


@pytest.fixture(scope="module")
def sasl_plaintext(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    s = _secured(tmp_path_factory.mktemp("sasl-plaintext"), pki, tls=False, sasl=True, env={
        "EARFUL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "EARFUL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "EARFUL_KAFKA_SASL_USERNAME": "earful", "EARFUL_KAFKA_SASL_PASSWORD": USERS["earful"]})
    yield s
    s.proxy.stop()
    s.broker.stop()


def _env(base_env: dict[str, str], secured: Secured, **override: str) -> dict[str, str]:
    return {**base_env, **secured.env, **override}


def _start(name: str, env: dict[str, str], log: Path) -> ServiceProcess:
    port = free_port()
    return ServiceProcess(name, port, service_env(env, name, port), log)


RECENT = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def _read_topic(settings: Settings, topic: str, expect: int, timeout_s: float = 60.0) -> list[Any]:
    """`topic` from the beginning through a consumer secured like the services (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100, **client_kwargs(settings))
    await consumer.start()
    try:
        assert await eventually(lambda: bool(consumer.partitions_for_topic(topic)), timeout_s=10, interval_s=0.1)
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()])
        await consumer.seek_to_beginning()
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def _ingest_round_trip(base_env: dict[str, str], secured: Secured, log: Path, tag: str,
                             **override: str) -> None:
    """Ingest as a process over `secured`: a posted mention is on the raw topic, read back securely."""
    settings = secured.settings(**override)
    svc = _start("ingest", _env(base_env, secured, **override), log)
    svc.start()
    try:
        await asyncio.to_thread(svc.wait_ready, 60)
        mention = {"source": "mastodon", "source_id": f"sec-{tag}", "text": f"Acme Air over {tag}",
                   "created_at": RECENT, "author": {"handle": "@jane", "followers": 5}}
        async with httpx.AsyncClient(timeout=30) as client:
            resp = await client.post(svc.url + "/v1/mentions", json={"mentions": [mention]})
        assert resp.status_code == 202, resp.text
        (mention_id,) = resp.json()["mention_ids"]
        codec = Codecs(settings).for_topic(RAW)
        records = [r for r in await _read_topic(settings, RAW, expect=1) if r.key.decode() == mention_id]
        assert records, f"{mention_id} is not on {RAW}"
        assert codec.decode(records[0].value)["text"] == f"Acme Air over {tag}"
    finally:
        assert svc.stop() == 0, svc.log_tail()


async def _exits_fast_with(base_env: dict[str, str], env: dict[str, str], log: Path, *expected: str) -> str:
    """Start ingest with `env`; it must exit non-zero within FAIL_FAST_S with one error line holding `expected`."""
    svc = _start("ingest", {**base_env, **env}, log)
    started = time.monotonic()
    svc.start()
    assert svc.process is not None
    try:
        code = await asyncio.to_thread(svc.process.wait, FAIL_FAST_S)
    finally:
        svc.kill9()
    assert code != 0
    elapsed = time.monotonic() - started
    errors = [json.loads(line) for line in log.read_text().splitlines()
              if line.startswith("{") and json.loads(line).get("level") == "error"]
    matching = [e["msg"] for e in errors if all(x in e["msg"] for x in expected)]
    assert matching, f"no error line with {expected} in {[e['msg'] for e in errors]}"
    assert "\n" not in matching[0]
    assert elapsed < FAIL_FAST_S
    return str(matching[0])


# ---------------------------------------------------------------- it works


async def test_ingest_over_mutual_tls_with_an_encrypted_key(base_env: dict[str, str], mtls: Secured,
                                                            tmp_path: Path) -> None:
    await create_topics(mtls.settings())
    await _ingest_round_trip(base_env, mtls, tmp_path / "ingest.log", "mtls")
    assert mtls.proxy.tls_connections > 0


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_ingest_over_sasl_ssl(base_env: dict[str, str], sasl_ssl: Secured, tmp_path: Path, mechanism: str) -> None:
    await create_topics(sasl_ssl.settings(EARFUL_KAFKA_SASL_MECHANISM=mechanism))
    before = sasl_ssl.proxy.authenticated.get(mechanism, 0)
    await _ingest_round_trip(base_env, sasl_ssl, tmp_path / "ingest.log", mechanism,
                             EARFUL_KAFKA_SASL_MECHANISM=mechanism)
    assert sasl_ssl.proxy.authenticated.get(mechanism, 0) > before  # every connection authenticated so


async def test_ingest_over_sasl_plaintext(base_env: dict[str, str], sasl_plaintext: Secured, tmp_path: Path) -> None:
    await create_topics(sasl_plaintext.settings())
    await _ingest_round_trip(base_env, sasl_plaintext, tmp_path / "ingest.log", "sasl-plaintext")
    assert sasl_plaintext.proxy.authenticated["SCRAM-SHA-256"] > 0


async def test_a_faust_service_over_sasl_ssl(base_env: dict[str, str], sasl_ssl: Secured, tmp_path: Path) -> None:
    """Enrichment (a Faust app, and a watchlist consumer of its own) consumes and produces over SASL_SSL."""
    settings = sasl_ssl.settings()
    await create_topics(settings)
    svc = _start("enrichment", _env(base_env, sasl_ssl), tmp_path / "enrichment.log")
    svc.start()
    try:
        await asyncio.to_thread(svc.wait_ready, 120)
        raw = raw_record("sec-faust", "Acme Air lost my bag, terrible!", datetime.now(timezone.utc))
        codecs = Codecs(settings)
        producer = await start_producer(settings, "test-security")
        try:
            await producer.send_and_wait(RAW, codecs.for_topic(RAW).encode(raw), key=raw["mention_id"].encode())
        finally:
            await producer.stop()
        enriched: list[Any] = []

        async def arrived() -> bool:
            enriched[:] = [r for r in await _read_topic(settings, ENRICHED, expect=1, timeout_s=2)
                           if r.key.decode() == raw["mention_id"]]
            return bool(enriched)

        assert await eventually(arrived, timeout_s=60), svc.log_tail()
        decoded = codecs.for_topic(ENRICHED).decode(enriched[0].value)
        assert decoded["mention"]["mention_id"] == raw["mention_id"] and decoded["sentiment"]["label"] == "negative"
    finally:
        assert svc.stop() == 0, svc.log_tail()


async def _produce_securely(settings: Settings, topic: str, records: list[tuple[bytes, dict[str, Any]]]) -> None:
    codec = Codecs(settings).for_topic(topic)
    producer = await start_producer(settings, "test-security")
    try:
        for key, record in records:
            await producer.send_and_wait(topic, codec.encode(record), key=key)
    finally:
        await producer.stop()


async def test_storage_over_sasl_ssl(base_env: dict[str, str], sasl_ssl: Secured, pg_url: str, tmp_path: Path) -> None:
    """Storage (its consumer, its producer, the watchlist publisher, the topic admin) over SASL_SSL:
    an enriched mention produced securely is stored in PostgreSQL."""
    settings = sasl_ssl.settings()
    await create_topics(settings)
    before = sasl_ssl.proxy.authenticated.get("SCRAM-SHA-512", 0)
    svc = _start("storage", _env(base_env, sasl_ssl, EARFUL_DATABASE_URL=pg_url), tmp_path / "storage.log")
    svc.start()
    try:
        await asyncio.to_thread(svc.wait_ready, 90)
        record = enriched_record(raw_record("sec-storage", "Acme Air lost my bag", datetime.now(timezone.utc)),
                                 ["acme-air"])
        mention_id = record["mention"]["mention_id"]
        await _produce_securely(settings, ENRICHED, [(mention_id.encode(), record)])

        async def stored() -> bool:
            conn = await asyncpg.connect(pg_url)
            try:
                return bool(await conn.fetchval("SELECT count(*) FROM mentions WHERE mention_id = $1::uuid", mention_id))
            finally:
                await conn.close()

        assert await eventually(stored, timeout_s=60), svc.log_tail()
        assert sasl_ssl.proxy.authenticated.get("SCRAM-SHA-512", 0) > before
    finally:
        assert svc.stop() == 0, svc.log_tail()


async def test_alerting_over_sasl_ssl(base_env: dict[str, str], sasl_ssl: Secured, pg_url: str, tmp_path: Path) -> None:
    """Alerting (a Faust app with a changelogged table, an internal topic, the watchlist and erasure
    consumers) over SASL_SSL: a risk-tagged mention produced securely fires an alert, published on the
    alerts topic (read back by a secured consumer) and recorded (its API lists it firing)."""
    settings = sasl_ssl.settings()
    await create_topics(settings)
    # acme-air, a brand of the sample watchlists (the seed, or storage's copy on the topic), runs
    # risk_mention; here one risk-tagged post of any reach is news at once.
    svc = _start("alerting", _env(base_env, sasl_ssl, EARFUL_DATABASE_URL=pg_url, EARFUL_ALERT_RISK_MIN_REACH="0",
                                  EARFUL_ALERT_RISK_MIN_HISTORY_S="0"), tmp_path / "alerting.log")
    svc.start()
    try:
        await asyncio.to_thread(svc.wait_ready, 120)
        text = "Acme Air leaked our data: a data breach"
        record = enriched_record(raw_record("sec-alerting", text, datetime.now(timezone.utc)), ["acme-air"])
        start = text.index("data breach")
        record["risks"] = [{"tag": "legal_privacy", "evidence": "data breach", "start": start, "end": start + 11}]
        await _produce_securely(settings, ENRICHED, [(record["mention"]["mention_id"].encode(), record)])

        events: list[dict[str, Any]] = []

        async def fired() -> bool:
            codec = Codecs(settings).for_topic(ALERTS)
            events[:] = [codec.decode(r.value) for r in await _read_topic(settings, ALERTS, expect=1, timeout_s=2)]
            return any(e["labels"].get("rule") == "risk_mention" and e["status"] == "firing" for e in events)

        assert await eventually(fired, timeout_s=90), svc.log_tail()
        (event,) = [e for e in events if e["labels"].get("rule") == "risk_mention"]
        assert event["labels"]["watchlist"] == "acme-air" and event["labels"]["risk"] == "legal_privacy"

        async def recorded() -> bool:
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.get(f"{svc.url}/v1/alerts", params={"status": "firing"})
            body = resp.json() if resp.status_code == 200 else {}
            alerts = body.get("alerts", []) if isinstance(body, dict) else body
            return any(a["labels"].get("rule") == "risk_mention" for a in alerts)

        assert await eventually(recorded, timeout_s=60), svc.log_tail()
    finally:
        assert svc.stop() == 0, svc.log_tail()


# ---------------------------------------------------------------- it fails fast, saying why


async def test_storage_clients_fail_fast_saying_why(sasl_ssl: Secured) -> None:
    """Storage's own producer and consumer start through the same bounded start as every client."""
    settings = sasl_ssl.settings(EARFUL_KAFKA_SASL_PASSWORD="not-the-password")
    async with AsyncExitStack() as stack:
        with pytest.raises(BrokerError, match=r"cannot reach Kafka at .*SCRAM-SHA-512.* with the storage producer: "
                                              r"authentication failed"):
            await asyncio.wait_for(start_kafka(settings, stack), FAIL_FAST_S)


async def test_wrong_password_stops_the_service_at_once(base_env: dict[str, str], sasl_ssl: Secured,
                                                        tmp_path: Path) -> None:
    message = await _exits_fast_with(base_env, _env(base_env, sasl_ssl, EARFUL_KAFKA_SASL_PASSWORD="not-the-password"),
                                     tmp_path / "ingest.log", sasl_ssl.proxy.bootstrap, "SCRAM-SHA-512",
                                     "authentication failed")
    assert "not-the-password" not in message and USERS["earful"] not in message


async def test_tansu_refuses_a_user_it_does_not_know(base_env: dict[str, str], tmp_path: Path) -> None:
    """Tansu's own SASL (`--authentication`, SCRAM only): the exchange fails and so does the service."""
    broker = LocalBroker.start(log_path=tmp_path / "tansu.log", authentication=True)
    try:
        env = {"EARFUL_KAFKA_BOOTSTRAP": broker.bootstrap, "EARFUL_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
               "EARFUL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "EARFUL_KAFKA_SASL_USERNAME": "nobody",
               "EARFUL_KAFKA_SASL_PASSWORD": "whatever"}
        await _exits_fast_with(base_env, env, tmp_path / "ingest.log", broker.bootstrap, "SCRAM-SHA-256",
                               "authentication failed")
    finally:
        broker.stop()


async def test_plain_is_refused_by_tansu_by_name(tmp_path: Path) -> None:
    broker = LocalBroker.start(log_path=tmp_path / "tansu.log", authentication=True)
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                            kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u", kafka_sasl_password="p")
        with pytest.raises(BrokerError, match=r"the broker closed the connection|does not offer PLAIN"):
            await asyncio.wait_for(create_topics(settings), FAIL_FAST_S)
    finally:
        broker.stop()


async def test_untrusted_broker_certificate(sasl_ssl: Secured, pki: Pki) -> None:
    settings = sasl_ssl.settings(EARFUL_KAFKA_SSL_CAFILE=str(pki.other_ca))
    with pytest.raises(BrokerError, match=r"TLS certificate is not trusted .*EARFUL_KAFKA_SSL_CAFILE"):
        await asyncio.wait_for(start_producer(settings, "test-untrusted"), FAIL_FAST_S)


async def test_missing_client_certificate_is_named(mtls: Secured) -> None:
    settings = Settings(kafka_bootstrap=mtls.proxy.bootstrap, kafka_security_protocol="SSL",
                        kafka_ssl_cafile=mtls.env["EARFUL_KAFKA_SSL_CAFILE"])
    with pytest.raises(BrokerError, match="client certificate"):
        await asyncio.wait_for(start_producer(settings, "test-no-client-cert"), FAIL_FAST_S)


async def test_plaintext_client_on_a_tls_port_and_sasl_on_a_plain_broker(sasl_ssl: Secured, broker: LocalBroker) -> None:
    plain = Settings(kafka_bootstrap=sasl_ssl.proxy.bootstrap)
    started = time.monotonic()
    with pytest.raises(BrokerError, match=f"at {sasl_ssl.proxy.bootstrap} \\(PLAINTEXT\\)"):
        await asyncio.wait_for(start_producer(plain, "test-plain-on-tls"), FAIL_FAST_S)
    sasl = Settings(kafka_bootstrap=broker.bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
                    kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="u", kafka_sasl_password="p")
    with pytest.raises(BrokerError, match="does not offer SCRAM-SHA-512"):
        await asyncio.wait_for(start_producer(sasl, "test-sasl-on-plain"), FAIL_FAST_S)
    assert time.monotonic() - started < FAIL_FAST_S


def test_unreadable_tls_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    from earful.core.kafka_security import ssl_context

    with pytest.raises(ConfigError, match=r"EARFUL_KAFKA_SSL_CAFILE=.*no such file"):
        ssl_context(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="key password"):
        ssl_context(Settings(kafka_security_protocol="SSL", kafka_ssl_certfile=pki.client_cert,
                             kafka_ssl_keyfile=pki.client_key_encrypted, kafka_ssl_key_password="wrong"))
