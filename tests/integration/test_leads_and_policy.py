"""Sales leads and staff policy flags, end to end through the storage service as a real process, the
real broker and PostgreSQL: enriched mentions in, `earful.leads.v1` and `earful.policy_flags.v1`
out (and the CRM webhook), with their evidence; repeats and re-deliveries add nothing; the API lists
them; an erasure takes them away."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY

from earful.core.codec import AvroCodec
from earful.core.errors import DeliveryError
from earful.core.http import HttpServer
from earful.core.settings import PACKAGE_DIR, Settings
from earful.core.topics import ENRICHED, LEADS, POLICY_FLAGS
from earful.enrichment.rules import risk_tags
from earful.storage.erasure import erase_author
from earful.storage.lead_webhook import WebhookSink
from earful.storage.leads import period_of
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess
from tests.support import (
    codecs,
    consume_all,
    enriched_record,
    eventually,
    produce,
    raw_record,
    scraped,
    service_process,
    webhook_receiver,
)

pytestmark = pytest.mark.integration
UTC = timezone.utc
SECRET = "whsec_bGVhZHMtdGVzdC1zZWNyZXQ="
# The previous whole week: both mentions of the repeat fall in one period, before now, within retention.
WEEK = period_of(datetime.now(UTC), 7)[0] - timedelta(days=7)
WATCHLISTS = {
    "acme-air.yaml": "id: acme-air\nkind: brand\nhandles: [AcmeAir]\nquery: Acme\n",
    "acme-staff.yaml": 'id: acme-staff\nkind: staff\nhandles: [sam_at_acme]\nquery: Acme OR "Project Falcon"\n',
}


def mention(source_id: str, text: str, at: datetime, handle: str, watchlists: list[str]) -> dict[str, Any]:
    """An enriched mention as enrichment writes it, its risk and intent tags by the real rules."""
    raw = raw_record(source_id, text, at)
    raw["author"] = {"id": f"id-{handle}", "handle": handle, "display_name": handle.title(), "followers": 321}
    record = enriched_record(raw, watchlists)
    record["risks"] = risk_tags(text)
    return record


async def send(settings: Settings, *records: dict[str, Any]) -> None:
    codec = codecs(settings).for_topic(ENRICHED)
    await produce(settings, ENRICHED, [(r["mention"]["mention_id"].encode(), codec.encode(r)) for r in records])


async def records_of(settings: Settings, topic: str, codec: AvroCodec, expect: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    return [codec.decode(m.value) | {"_key": m.key.decode()} for m in await consume_all(settings, topic, expect, timeout_s)]


async def fetchval(pg_url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def stored(svc: ServiceProcess, outcome: str) -> float:
    return scraped(f"{svc.url}/metrics", "earful_storage_rows_total", table="mentions", outcome=outcome)


@pytest.fixture(scope="module")
async def crm() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(SECRET) as receiver:  # refuses requests whose signature does not verify
        yield receiver


@pytest.fixture(scope="module")
def storage(base_env: dict[str, str], pg_url: str, crm: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("watchlists")
    for name, text in WATCHLISTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    with service_process("storage", base_env, tmp_path_factory.mktemp("logs"), EARFUL_DATABASE_URL=pg_url,
                         EARFUL_WATCHLISTS_DIR=str(folder),
                         EARFUL_POLICY_FILE=str(PACKAGE_DIR / "sample" / "policy.yaml"),
                         EARFUL_LEADS_WEBHOOK_URL=str(crm.url), EARFUL_LEADS_WEBHOOK_SECRET=SECRET,
                         EARFUL_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8") as svc:
        yield svc


FIRST = mention("lead-1", "Thinking of switching to Acme Air for my work trips", WEEK + timedelta(days=1), "jdoe",
                ["acme-air"])
REPEAT = mention("lead-2", "ok, ready to book Acme Air for Lisbon", WEEK + timedelta(days=3), "JDoe", ["acme-air"])


async def test_a_purchase_intent_mention_yields_one_lead_with_its_evidence(storage: ServiceProcess, settings: Settings,
                                                                         crm: WebhookReceiver) -> None:
    await send(settings, FIRST)
    codec = codecs(settings).for_topic(LEADS)
    (lead,) = await records_of(settings, LEADS, codec, expect=1)
    assert lead["event"] == "created" and lead["watchlist_id"] == "acme-air" and lead["_key"] == lead["lead_id"]
    assert lead["author"] == {"source": "twitter", "key": "jdoe", "id": "id-jdoe", "handle": "jdoe", "name": "Jdoe",
                                  "followers": 321, "profile_url": "https://x.com/jdoe"}
    (evidence,) = lead["evidence"]
    assert evidence["mention_id"] == FIRST["mention"]["mention_id"] == lead["trigger_mention_id"]
    assert evidence["evidence"] == "Thinking of switching" == evidence["text"][evidence["start"]:evidence["end"]]
    assert (lead["period_start"], lead["period_end"]) == (WEEK, WEEK + timedelta(days=7))
    # The CRM webhook got the same change, signed (the receiver refuses anything else).
    assert await eventually(lambda: len(crm.alerts) == 1, timeout_s=30), storage.log_tail()
    (delivery,) = crm.alerts
    assert delivery.idempotency_key == lead["event_id"]
    assert delivery.payload["type"] == "lead.created" and delivery.payload["data"]["lead_id"] == lead["lead_id"]


async def test_a_repeat_within_the_period_adds_evidence_not_a_second_lead(storage: ServiceProcess, settings: Settings,
                                                                        pg_url: str, crm: WebhookReceiver) -> None:
    await send(settings, REPEAT)
    codec = codecs(settings).for_topic(LEADS)
    records = await records_of(settings, LEADS, codec, expect=2)
    assert [r["event"] for r in records] == ["created", "evidence_added"]
    assert len({r["lead_id"] for r in records}) == 1
    assert [len(r["evidence"]) for r in records] == [1, 2] and records[1]["mentions"] == 2
    assert records[1]["evidence"][1]["evidence"] == "ready to book"
    assert await fetchval(pg_url, "SELECT count(*) FROM leads") == 1
    assert await eventually(lambda: len(crm.alerts) == 2, timeout_s=30), storage.log_tail()
    assert crm.alerts[1].payload["type"] == "lead.evidence_added"


async def test_a_redelivered_batch_yields_no_duplicate(storage: ServiceProcess, settings: Settings, pg_url: str,
                                                       crm: WebhookReceiver) -> None:
    duplicates = stored(storage, "duplicate")
    await send(settings, FIRST, REPEAT)  # at-least-once delivery: the same records again
    assert await eventually(lambda: stored(storage, "duplicate") >= duplicates + 2, timeout_s=30), storage.log_tail()
    assert await fetchval(pg_url, "SELECT count(*) FROM lead_events") == 2
    assert await fetchval(pg_url, "SELECT count(*) FROM lead_events WHERE published_at IS NULL OR delivered_at IS NULL") == 0
    assert await fetchval(pg_url, "SELECT mentions FROM leads") == 2
    assert len(await consume_all(settings, LEADS, expect=3, timeout_s=3)) == 2
    assert len(crm.alerts) == 2 and crm.duplicates == 0


async def test_a_staff_post_with_a_confidential_term_is_flagged_and_a_customers_is_not(
        storage: ServiceProcess, settings: Settings, pg_url: str) -> None:
    text = "Can't wait for Project Falcon to land at Acme Air next spring!"
    staff = mention("staff-1", text, WEEK + timedelta(days=2), "Sam_at_Acme", ["acme-air", "acme-staff"])
    customer = mention("customer-1", text, WEEK + timedelta(days=2, hours=1), "a_customer", ["acme-air", "acme-staff"])
    inserted = stored(storage, "inserted")
    await send(settings, staff, customer)
    codec = codecs(settings).for_topic(POLICY_FLAGS)
    (flag,) = await records_of(settings, POLICY_FLAGS, codec, expect=1)
    assert (flag["rule_id"], flag["kind"], flag["severity"]) == ("confidential-projects", "confidential", "critical")
    assert flag["mention_id"] == flag["_key"] == staff["mention"]["mention_id"]
    assert flag["author"] == {"handle": "Sam_at_Acme", "id": "id-Sam_at_Acme", "name": "Sam_At_Acme"}
    assert flag["staff_watchlist_ids"] == ["acme-staff"] and flag["text"] == text
    assert flag["evidence"] == [{"text": "Project Falcon", "start": 15, "end": 29, "term": "Project Falcon"}]
    # The customer's post with the same words is stored, and not flagged.
    assert await eventually(lambda: stored(storage, "inserted") >= inserted + 2, timeout_s=30), storage.log_tail()
    assert await fetchval(pg_url, "SELECT count(*) FROM mentions WHERE source_id = 'customer-1'") == 1
    assert await fetchval(pg_url, "SELECT count(*) FROM policy_flags") == 1
    assert len(await consume_all(settings, POLICY_FLAGS, expect=2, timeout_s=3)) == 1
    # Staff posts are not leads, even with purchase intent; the staff watchlist makes no lead either.
    await send(settings, mention("staff-2", "I want to buy the new Acme Air pass, use code SAM10", WEEK + timedelta(days=4),
                                 "sam_at_acme", ["acme-air", "acme-staff"]))
    codes = sorted(await records_of(settings, POLICY_FLAGS, codec, expect=2), key=lambda f: f["rule_id"])
    assert [f["rule_id"] for f in codes] == ["confidential-projects", "disclosure"]
    assert codes[1]["evidence"][0]["text"] == "use code"
    assert await fetchval(pg_url, "SELECT count(*) FROM leads") == 1


async def test_the_api_lists_leads_and_flags(storage: ServiceProcess) -> None:
    leads = httpx.get(f"{storage.url}/v1/leads", params={"watchlist": "acme-air"}).json()["leads"]
    (lead,) = leads
    assert (lead["author_handle"], lead["mentions"], lead["profile_url"]) == ("JDoe", 2, "https://x.com/JDoe")
    assert [e["evidence"] for e in lead["evidence"]] == ["Thinking of switching", "ready to book"]
    assert httpx.get(f"{storage.url}/v1/leads", params={"author": "@jdoe"}).json()["leads"][0]["lead_id"] == lead["lead_id"]
    assert httpx.get(f"{storage.url}/v1/leads", params={"author": "someone"}).json()["leads"] == []
    exported = httpx.get(f"{storage.url}/v1/leads", params={"format": "csv"})
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["lead_id"] == lead["lead_id"] and row["latest_evidence"] == "ready to book"

    flags = httpx.get(f"{storage.url}/v1/policy-flags", params={"kind": "confidential"}).json()["policy_flags"]
    assert [(f["rule_id"], f["author_handle"], f["evidence"][0]["text"]) for f in flags] == [
        ("confidential-projects", "Sam_at_Acme", "Project Falcon")]
    assert len(httpx.get(f"{storage.url}/v1/policy-flags", params={"staff_watchlist": "acme-staff"}).json()["policy_flags"]) == 2
    assert httpx.get(f"{storage.url}/v1/policy-flags", params={"staff_watchlist": "nobody"}).json()["policy_flags"] == []
    assert httpx.get(f"{storage.url}/v1/policy-flags", params={"kind": "gossip"}).status_code == 422


async def test_an_erasure_takes_the_authors_leads_and_flags(storage: ServiceProcess, pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await erase_author(conn, "twitter", "jdoe", via="cli")
        assert await conn.fetchval("SELECT count(*) FROM leads") == 0
        assert await conn.fetchval("SELECT count(*) FROM lead_mentions") == 0
        assert await conn.fetchval("SELECT count(*) FROM lead_events") == 0
        assert await conn.fetchval("SELECT count(*) FROM policy_flags") == 2  # someone else's
        await erase_author(conn, "twitter", "sam_at_acme", via="cli")
        assert await conn.fetchval("SELECT count(*) FROM policy_flags") == 0
    finally:
        await conn.close()
    assert httpx.get(f"{storage.url}/v1/leads").json()["leads"] == []


async def test_the_crm_webhook_retries_outages_and_skips_what_it_refuses() -> None:
    """Against a real HTTP server: a 503 or an unreachable CRM is an error (the event waits and is
    retried), a 400 is logged, counted and skipped (the events after it go on), a 2xx delivers."""
    answers: list[int] = []
    app = FastAPI()

    @app.post("/crm")
    async def crm_endpoint(request: Request) -> Response:
        assert request.headers["webhook-id"] == "e-1" and "webhook-signature" in request.headers
        return Response(status_code=answers.pop(0))

    port = free_port()
    server = HttpServer(app, "127.0.0.1", port)
    await server.start()
    row = {"event_id": "e-1", "event": "created", "record": {"detected_at": "2026-11-03T08:14:06.250Z", "lead_id": "l"}}
    rejected = rejected_count()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            sink = WebhookSink(client, f"http://127.0.0.1:{port}/crm", SECRET)
            for status in (503, 429):
                answers.append(status)
                with pytest.raises(DeliveryError, match=str(status)):
                    await sink.send(row)
            answers.append(400)
            await sink.send(row)  # refused for good: not raised, counted
            assert rejected_count() == rejected + 1
            answers.append(204)
            await sink.send(row)
            assert answers == []
            unreachable = WebhookSink(client, f"http://127.0.0.1:{free_port()}/crm", SECRET)
            with pytest.raises(DeliveryError, match="not reached"):
                await unreachable.send(row)
    finally:
        await server.stop()


def rejected_count() -> float:
    return REGISTRY.get_sample_value("earful_lead_webhook_failures_total", {"kind": "rejected"}) or 0.0
