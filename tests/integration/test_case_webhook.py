"""The helpdesk webhook of cases through the storage service as a real process, the real broker and
PostgreSQL, and a real local HTTP receiver: a question opens a case and its `case.opened` event
arrives signed (checked with earful.core.signing) with the ticket mapped; a helpdesk answering 503
gets the event again (and the topic does not wait for it); the brand's reply arrives as
`case.answered`, after it; an event delivered again carries the same idempotency key and body."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI, Request, Response

from earful.core.codec import AvroCodec
from earful.core.http import HttpServer
from earful.core.settings import Settings
from earful.core.signing import SignatureError, verify
from earful.core.topics import ENRICHED
from earful.storage.cases import CASE_EVENTS_CHANNEL
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess
from tests.integration.test_storage_db import enriched
from tests.support import codecs, eventually, produce, scraped, service_process

pytestmark = pytest.mark.integration
UTC = timezone.utc
SECRET = "whsec_Y2FzZXMtd2ViaG9vay10ZXN0LXNlY3JldA=="
ACME = {"id": "acme-air", "name": "Acme Air", "kind": "brand", "terms": ["Acme Air"], "handles": ["AcmeAirHelp"],
        "response_sla_s": 7200}  # around the clock: the deadline is the question's time + 2 h
ASKED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
CASE = "acme-air:twitter:hd-1"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int
    signed_id: str | None  # what earful.core.signing.verify made of it at receipt; None when it refused it

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Helpdesk:
    """A helpdesk's webhook endpoint: records every request as received and answers 503 while `down`."""

    url: str = ""
    down: bool = False
    requests: list[Delivery] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/tickets")
        async def receive(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                signed_id: str | None = verify(SECRET, headers, body, now=time.time())
            except SignatureError:
                signed_id = None
            status = 503 if self.down else (200 if signed_id else 401)
            self.requests.append(Delivery(headers, body, status, signed_id))
            return Response(status_code=status)

        return app

    def accepted(self) -> list[Delivery]:
        return [d for d in self.requests if d.status == 200]


@pytest.fixture(scope="module")
async def helpdesk() -> AsyncIterator[Helpdesk]:
    desk = Helpdesk()
    port = free_port()
    server = HttpServer(desk.app(), "127.0.0.1", port)
    await server.start()
    desk.url = f"http://127.0.0.1:{port}/tickets"
    try:
        yield desk
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def storage(base_env: dict[str, str], pg_url: str, helpdesk: Helpdesk, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("watchlists")
    (folder / "acme-air.yaml").write_text(json.dumps(ACME), encoding="utf-8")  # JSON is YAML
    with service_process("storage", base_env, tmp_path_factory.mktemp("logs"), EARFUL_DATABASE_URL=pg_url,
                         EARFUL_WATCHLISTS_DIR=str(folder), EARFUL_CARE_AGENTS="acme-air=ann",
                         EARFUL_CASES_WEBHOOK_URL=helpdesk.url, EARFUL_CASES_WEBHOOK_SECRET=SECRET,
                         EARFUL_DASHBOARD_URL="https://earful.example.com/",
                         EARFUL_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8") as svc:
        yield svc


async def send(settings: Settings, record: dict[str, Any]) -> None:
    codec: AvroCodec = codecs(settings).for_topic(ENRICHED)
    await produce(settings, ENRICHED, [(record["mention"]["mention_id"].encode(), codec.encode(record))])


async def event_state(pg_url: str, event_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchrow("SELECT published_at, delivered_at FROM case_events WHERE event_id = $1", event_id)
    finally:
        await conn.close()


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.headers["webhook-id"] for d in deliveries]


async def test_a_question_arrives_signed_as_a_ticket_and_a_503_is_retried(storage: ServiceProcess, settings: Settings,
                                                                          pg_url: str, helpdesk: Helpdesk) -> None:
    helpdesk.down = True
    question = enriched("hd-1", ASKED, handle="jane", followers=12400, risks=("customer_question",),
                        text="@AcmeAirHelp where is my bag? Acme Air", entities=[])
    question["mention"]["url"] = "https://x.com/jane/status/hd-1"
    await send(settings, question)
    # The helpdesk is down: the event is tried, refused with 503, and waits; the topic does not wait for it.
    assert await eventually(lambda: any(d.status == 503 for d in helpdesk.requests), timeout_s=60), storage.log_tail()

    async def published() -> bool:
        state = await event_state(pg_url, f"{CASE}:1")
        return state is not None and state["published_at"] is not None and state["delivered_at"] is None

    assert await eventually(published, timeout_s=30), storage.log_tail()
    assert scraped(f"{storage.url}/metrics", "earful_case_webhook_failures_total", kind="delivery_error") >= 1
    refused = len(helpdesk.requests)
    helpdesk.down = False
    assert await eventually(lambda: len(helpdesk.accepted()) == 1, timeout_s=60), storage.log_tail()
    assert all(d.headers["webhook-id"] == f"{CASE}:1" for d in helpdesk.requests)  # every attempt: one key
    assert len(helpdesk.requests) == refused + 1

    (opened,) = helpdesk.accepted()
    assert opened.signed_id == f"{CASE}:1"  # the signature verified with earful.core.signing
    payload = opened.payload
    assert payload["type"] == "case.opened"
    data = payload["data"]
    assert (data["event_id"], data["case_id"], data["state"], data["owner"], data["kind"]) == (
        f"{CASE}:1", CASE, "assigned", "ann", "question")
    ticket = data["ticket"]
    due = (ASKED + timedelta(hours=2)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert ticket["title"] == "Question from @jane on twitter: where is my bag? Acme Air"
    assert (ticket["external_id"], ticket["status"], ticket["assignee"], ticket["due_at"], data["deadline_at"]) == (
        CASE, "open", "ann", due, due)
    assert ticket["priority_score"] == data["priority"] and ticket["priority"] in ("low", "normal", "high", "urgent")
    assert ticket["requester"]["handle"] == "jane" and ticket["requester"]["profile_url"] == "https://x.com/jane"
    assert ticket["link"] == "https://x.com/jane/status/hd-1"
    assert ticket["case_url"] == f"https://earful.example.com/v1/cases/{CASE}"
    assert await eventually(lambda: scraped(f"{storage.url}/metrics", "earful_case_webhook_delivered_total") >= 1)


async def test_the_brand_reply_arrives_as_answered_after_the_opening(storage: ServiceProcess, settings: Settings,
                                                                    helpdesk: Helpdesk) -> None:
    reply = enriched("hd-1-r", ASKED + timedelta(minutes=12), handle="AcmeAirHelp", sentiment="neutral",
                     reply_to="hd-1", watchlists=(), text="@jane it is on its way", entities=[])
    await send(settings, reply)
    assert await eventually(lambda: len(helpdesk.accepted()) == 2, timeout_s=60), storage.log_tail()
    assert ids(helpdesk.accepted()) == [f"{CASE}:1", f"{CASE}:2"]  # in order per case
    answered = helpdesk.accepted()[1]
    assert answered.signed_id == f"{CASE}:2"
    data = answered.payload["data"]
    assert answered.payload["type"] == "case.answered" and data["event"] == "answered" and data["version"] == 2
    assert data["answered_at"] == (ASKED + timedelta(minutes=12)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert data["ticket"]["status"] == "solved"


async def test_an_event_delivered_again_carries_the_same_key_and_body(storage: ServiceProcess, pg_url: str,
                                                                     helpdesk: Helpdesk) -> None:
    before = len(helpdesk.accepted())
    conn = await asyncpg.connect(pg_url)
    try:  # as after a crash between the helpdesk's 200 and the mark: the event goes out again
        await conn.execute("UPDATE case_events SET delivered_at = NULL WHERE event_id = $1", f"{CASE}:1")
        await conn.execute("SELECT pg_notify($1, '')", CASE_EVENTS_CHANNEL)
    finally:
        await conn.close()
    assert await eventually(lambda: len(helpdesk.accepted()) == before + 1, timeout_s=60), storage.log_tail()
    first, again = helpdesk.accepted()[0], helpdesk.accepted()[-1]
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == f"{CASE}:1"
    assert again.signed_id == f"{CASE}:1"
    assert again.body == first.body  # the same event, byte for byte: a receiver dedups by the key
    assert again.headers["webhook-timestamp"] >= first.headers["webhook-timestamp"]
