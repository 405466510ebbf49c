"""Cases against a real PostgreSQL and broker: a question opens a case with its priority and its
business-hours deadline, a brand reply answers it, complaints addressed to the brand open one,
agents get cases in turn, a re-delivered batch changes nothing, an erasure takes the author's cases
along; and through a running storage service: the API's transitions (409 for an invalid one), the
response-time KPIs, and one event per change on earful.cases.v1, published again with the same id."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.kafka import Codecs, start_producer
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.core.topics import CASES, ENRICHED
from earful.storage.case_outbox import CaseOutbox
from earful.storage.cases import CareBook, case_priority, priority
from earful.storage.erasure import erase_author
from earful.storage.writer import BrandHandles, mention_row, write_batch
from earful.watchlists.model import parse_watchlist
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.integration.test_storage_db import enriched
from tests.support import committed_to_end, consume_all, eventually, produce

pytestmark = pytest.mark.integration
UTC = timezone.utc

ACME = {"id": "acme-air", "name": "Acme Air", "kind": "brand", "terms": ["Acme Air"],
        "handles": ["AcmeAir", "AcmeAirHelp"], "response_sla_s": 7200,
        "care": {"business_hours": {"timezone": "Europe/London", "days": {"mon-fri": "09:00-17:30"}}}}
GLOBEX = {"id": "globex", "name": "Globex", "kind": "brand", "terms": ["Globex"], "handles": ["GlobexCares"]}
WATCHLISTS = [parse_watchlist(ACME, "test"), parse_watchlist(GLOBEX, "test")]
AGENTS = {"acme-air": ("ann", "bob")}
CARE = CareBook.of(WATCHLISTS, AGENTS)
BRANDS = BrandHandles.of(WATCHLISTS)
FRIDAY = datetime(2026, 11, 6, 16, 30, tzinfo=UTC)  # London is on UTC in November
MONDAY_DUE = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)  # 1 h on Friday to 17:30, 1 h from Monday 09:00
MONDAY_WARN = datetime(2026, 11, 9, 9, 30, tzinfo=UTC)  # 75 % of 2 h


def mention(source_id: str, created: datetime, **options: Any) -> tuple[Any, ...]:
    return mention_row(enriched(source_id, created, **options))


def question(source_id: str, created: datetime = FRIDAY, **options: Any) -> tuple[Any, ...]:
    options = {"handle": "jane", "followers": 12400, "sentiment": "negative", "risks": ("customer_question", "complaint"),
               "text": "@AcmeAirHelp where is my bag? Acme Air", "entities": [], **options}
    return mention(source_id, created, **options)


def reply(source_id: str, to: str, created: datetime, handle: str = "AcmeAirHelp", **options: Any) -> tuple[Any, ...]:
    options = {"handle": handle, "sentiment": "neutral", "reply_to": to, "text": "@jane it is on its way",
               "entities": [], "watchlists": (), **options}
    return mention(source_id, created, **options)


async def write(conn: asyncpg.Connection, *rows: tuple[Any, ...]) -> Any:
    return await write_batch(conn, list(rows), [], brands=BRANDS, care=CARE)


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh, migrated database per test (on the module's server)."""
    url = with_database(pg_url, f"earful_k_{uuid.uuid4().hex[:10]}")
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    try:
        yield conn
    finally:
        await conn.close()
        await drop_database(url)


async def case_of(conn: asyncpg.Connection, the_case: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", the_case)
    assert row is not None, the_case
    return dict(row)


async def events_of(conn: asyncpg.Connection, the_case: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM case_events WHERE $1::text IS NULL OR case_id = $1 ORDER BY id", the_case)
    return [dict(r) for r in rows]


# --- the writer ---------------------------------------------------------------------------------------------


async def test_a_question_opens_a_case_with_priority_and_a_business_hours_deadline(db: asyncpg.Connection) -> None:
    result = await write(db, question("q1"))
    assert result.mentions_inserted == 1
    case = await case_of(db, "acme-air:twitter:q1")
    assert (case["kind"], case["state"], case["owner"]) == ("question", "assigned", "ann")
    assert case["opened_at"] == FRIDAY and case["sla_s"] == 7200
    assert (case["deadline_at"], case["warn_at"]) == (MONDAY_DUE, MONDAY_WARN)  # the weekend does not count
    assert case["author_handle"] == "jane" and case["author_followers"] == 12400 and case["thread_id"] is None
    # 12,400 followers (+20), negative (+15), complaint (+10); long past its deadline now (+20).
    assert case["priority_base"] == 45 and case["priority"] == 65
    assert json.loads(case["priority_reasons"]) == [
        "reach: 12400 followers +20", "negativity: negative sentiment +15", "risk: complaint +10",
        "waiting: past the SLA deadline +20"]
    (opened,) = await events_of(db)
    assert (opened["event_id"], opened["event"], opened["state"], opened["owner"], opened["actor"]) == (
        "acme-air:twitter:q1:1", "opened", "assigned", "ann", "stream")
    assert opened["deadline_at"] == MONDAY_DUE and opened["priority"] == 65 and opened["published_at"] is None
    # Globex matched nothing; the question opens no case elsewhere.
    assert await db.fetchval("SELECT count(*) FROM cases") == 1


async def test_a_brand_reply_answers_the_case(db: asyncpg.Connection) -> None:
    await write(db, question("q2"))
    answered_at = FRIDAY + timedelta(minutes=20)
    await write(db, reply("r2", "q2", answered_at))
    case = await case_of(db, "acme-air:twitter:q2")
    assert (case["state"], case["answered_at"], case["answered_by_source_id"], case["version"]) == (
        "answered", answered_at, "r2", 2)
    assert case["first_reply_at"] == answered_at and case["priority"] == case["priority_base"] == 45
    events = await events_of(db, "acme-air:twitter:q2")
    assert [(e["event_id"], e["event"], e["state"], e["actor"]) for e in events] == [
        ("acme-air:twitter:q2:1", "opened", "assigned", "stream"),
        ("acme-air:twitter:q2:2", "answered", "answered", "stream")]
    assert events[1]["answered_at"] == answered_at and "waiting" not in " ".join(events[1]["priority_reasons"])
    # A second brand reply changes nothing; a reply from someone else neither.
    await write(db, reply("r2b", "q2", answered_at + timedelta(minutes=5)),
                reply("r2c", "q2", answered_at, handle="someone_else"))
    assert (await case_of(db, "acme-air:twitter:q2"))["version"] == 2


async def test_a_reply_stored_before_its_question_answers_the_case_as_it_opens(db: asyncpg.Connection) -> None:
    await write(db, reply("r3", "q3", FRIDAY + timedelta(minutes=3)))
    await write(db, question("q3"))
    case = await case_of(db, "acme-air:twitter:q3")
    assert case["state"] == "answered" and case["answered_by_source_id"] == "r3"
    assert [e["event"] for e in await events_of(db)] == ["opened", "answered"]


async def test_complaints_open_a_case_only_when_addressed_to_the_brand(db: asyncpg.Connection) -> None:
    text = "@AcmeAirHelp my flight was cancelled, terrible"
    at = {"text": text, "entities": [{"text": "@AcmeAirHelp", "type": "mention", "start": 0, "end": 12, "origin": "rules"}]}
    brand_post = mention("post", FRIDAY - timedelta(hours=1), handle="AcmeAir", sentiment="neutral", text="Acme Air news")
    await write(db,
                mention("c-at", FRIDAY, risks=("complaint",), **at),
                mention("c-plain", FRIDAY, risks=("complaint",), text="Acme Air is terrible", entities=[]),
                brand_post)
    await write(db, mention("c-reply", FRIDAY + timedelta(minutes=1), risks=("complaint",), reply_to="post",
                            text="this is awful", entities=[]),
                mention("own", FRIDAY, handle="AcmeAir", risks=("customer_question", "complaint"), **at))
    kinds = {r["case_id"]: (r["kind"], r["thread_id"]) for r in await db.fetch("SELECT * FROM cases")}
    assert kinds == {"acme-air:twitter:c-at": ("complaint", None), "acme-air:twitter:c-reply": ("complaint", "post")}


async def test_agents_get_new_cases_in_turn_and_other_watchlists_stay_unassigned(db: asyncpg.Connection) -> None:
    await write(db, *(question(f"rr{i}", FRIDAY + timedelta(minutes=i)) for i in range(3)),
                question("gx", watchlists=("globex",), text="Globex why?"))
    await write(db, question("rr3", FRIDAY + timedelta(minutes=3)))
    rows = await db.fetch("SELECT case_id, owner, state FROM cases")
    owners = {r["case_id"]: (r["owner"], r["state"]) for r in rows}
    assert [owners[f"acme-air:twitter:rr{i}"] for i in range(4)] == [
        ("ann", "assigned"), ("bob", "assigned"), ("ann", "assigned"), ("bob", "assigned")]
    globex = await case_of(db, "globex:twitter:gx")
    assert (globex["owner"], globex["state"], globex["deadline_at"], globex["warn_at"]) == (None, "open", None, None)


async def test_a_redelivered_batch_opens_nothing_twice_and_adds_no_event(db: asyncpg.Connection) -> None:
    batch = [question("d1"), question("d2", FRIDAY + timedelta(minutes=1)), reply("d3", "d1", FRIDAY + timedelta(minutes=2))]
    await write(db, *batch)
    cases = await db.fetch("SELECT case_id, version, owner FROM cases ORDER BY case_id")
    events = [e["event_id"] for e in await events_of(db)]
    assert events == ["acme-air:twitter:d1:1", "acme-air:twitter:d1:2", "acme-air:twitter:d2:1"]
    again = await write(db, *batch)
    assert again.mentions_inserted == 0 and again.mentions_duplicate == 3
    assert await db.fetch("SELECT case_id, version, owner FROM cases ORDER BY case_id") == cases
    assert [e["event_id"] for e in await events_of(db)] == events
    assert await db.fetchval("SELECT assigned FROM care_rotation WHERE watchlist_id = 'acme-air'") == 2


async def test_the_thread_is_the_oldest_stored_post_of_the_conversation(db: asyncpg.Connection) -> None:
    await write(db, mention("root", FRIDAY - timedelta(hours=2), text="Acme Air flight", sentiment="neutral"))
    await write(db, mention("mid", FRIDAY - timedelta(hours=1), reply_to="root", text="same here", sentiment="neutral"))
    await write(db, question("leaf", reply_to="mid"), question("orphan", reply_to="gone"))
    assert (await case_of(db, "acme-air:twitter:leaf"))["thread_id"] == "root"
    assert (await case_of(db, "acme-air:twitter:orphan"))["thread_id"] == "gone"


async def test_erasing_the_author_takes_their_cases_and_events_along(db: asyncpg.Connection) -> None:
    await write(db, question("e1", handle="eraseme"), question("e2", handle="keeper"))
    await erase_author(db, "twitter", "eraseme", via="api")
    assert [r["case_id"] for r in await db.fetch("SELECT case_id FROM cases")] == ["acme-air:twitter:e2"]
    assert {e["case_id"] for e in await events_of(db)} == {"acme-air:twitter:e2"}


async def test_the_inbox_order_in_sql_is_the_priority_function(db: asyncpg.Connection) -> None:
    """The live priority the list sorts by (SQL) equals the pure function's, at several instants."""
    from earful.storage.cases import priority_sql

    await write(db, question("p1"), question("p2", watchlists=("globex",), text="Globex?", followers=50),
                question("p3", FRIDAY + timedelta(days=40), followers=None, sentiment="positive"))
    for at in (FRIDAY, MONDAY_WARN, MONDAY_DUE, FRIDAY + timedelta(hours=5), FRIDAY + timedelta(days=2),
               FRIDAY + timedelta(days=40, hours=30)):
        rows = await db.fetch(f"SELECT c.*, {priority_sql('$1')} AS live FROM cases c", at)
        for r in rows:
            assert r["live"] == case_priority(r, at).value, (r["case_id"], at)
    p = priority(12400, "negative", 0.0, ["complaint"], state="open", opened_at=FRIDAY, warn_at=MONDAY_WARN,
                 deadline_at=MONDAY_DUE, now=MONDAY_WARN)
    assert (p.value, p.reasons[-1]) == (55, "waiting: past the SLA warning time +10")


# --- the outbox -----------------------------------------------------------------------------------------------


async def test_the_outbox_publishes_every_event_once_marked(db: asyncpg.Connection, pg_url: str,
                                                            settings: Settings) -> None:
    await write(db, question("o1"), question("o2"))
    pool = await asyncpg.create_pool(with_database(pg_url, await db.fetchval("SELECT current_database()")),
                                     min_size=1, max_size=3)
    producer = await start_producer(settings, "earful-test-cases")
    try:
        outbox = CaseOutbox(pool, producer, Codecs(settings).for_topic(CASES))
        assert await outbox.publish_pending() == (2, 0)
        assert await outbox.publish_pending() == (0, 0)
        assert await db.fetchval("SELECT count(*) FROM case_events WHERE published_at IS NULL") == 0
        # As after a crash between the broker's acknowledgement and the mark: the event goes out again.
        await db.execute("UPDATE case_events SET published_at = NULL WHERE event_id = 'acme-air:twitter:o1:1'")
        assert await outbox.publish_pending() == (1, 0)
    finally:
        await producer.stop()
        await pool.close()
    codec = Codecs(settings).for_topic(CASES)
    mine = [m for m in await consume_all(settings, CASES, expect=10**6, timeout_s=3)
            if codec.decode(m.value)["case_id"] in ("acme-air:twitter:o1", "acme-air:twitter:o2")]
    decoded = [codec.decode(m.value) for m in mine]
    # At least once: the repeat carries the same id and content, so a consumer deduplicates it.
    assert sorted(d["event_id"] for d in decoded) == ["acme-air:twitter:o1:1", "acme-air:twitter:o1:1",
                                                      "acme-air:twitter:o2:1"]
    repeats = [d for d in decoded if d["event_id"] == "acme-air:twitter:o1:1"]
    assert repeats[0] == repeats[1]
    assert all(m.key.decode() == codec.decode(m.value)["case_id"] for m in mine)
    first = next(d for d in decoded if d["case_id"] == "acme-air:twitter:o1")
    assert first["deadline_at"] == MONDAY_DUE and first["warn_at"] == MONDAY_WARN and first["opened_at"] == FRIDAY
    assert (first["event"], first["state"], first["owner"], first["actor"], first["answered_at"]) == (
        "opened", "assigned", "ann", "stream", None)



# --- through the storage service: the stream, the API, the topic -------------------------------------------------

API_KEYS = "agent:read+write:agent-secret,viewer:read:viewer-secret"
AGENT = {"X-API-Key": "agent-secret"}
VIEWER = {"X-API-Key": "viewer-secret"}


@pytest.fixture(scope="module")
def storage(base_env: dict[str, str], pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("watchlists")
    for doc in (ACME, GLOBEX):
        (folder / f"{doc['id']}.yaml").write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_API_KEYS": API_KEYS, "EARFUL_WATCHLISTS_DIR": str(folder),
           "EARFUL_CARE_AGENTS": "acme-air=ann,bob"}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port),
                         tmp_path_factory.mktemp("cases") / "storage.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def api(svc: Any, method: str, path: str, headers: dict[str, str] = AGENT, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, svc.url + path, headers=headers, timeout=30, **kwargs)


async def fetch(pg_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def published_events(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every event on earful.cases.v1 by event_id (a repeat, at least once, must be identical)."""
    codec = Codecs(settings).for_topic(CASES)
    out: dict[str, dict[str, Any]] = {}
    for msg in await consume_all(settings, CASES, expect=10**6, timeout_s=3):
        value = codec.decode(msg.value)
        assert msg.key.decode() == value["case_id"]
        assert out.setdefault(value["event_id"], value) == value
    return out


async def test_the_stream_opens_and_answers_a_case_and_the_topic_follows(storage: Any, pg_url: str,
                                                                       settings: Settings) -> None:
    codec = Codecs(settings).for_topic(ENRICHED)
    asked = enriched("s1", FRIDAY, handle="jane", followers=12400, risks=("customer_question",),
                     text="Acme Air where is my bag?", entities=[])
    answer = enriched("s1-r", FRIDAY + timedelta(minutes=9), handle="AcmeAirHelp", sentiment="neutral", reply_to="s1",
                      watchlists=(), text="@jane on its way", entities=[])
    key = str(asked["mention"]["mention_id"]).encode()
    await produce(settings, ENRICHED, [(key, codec.encode(asked))])

    async def opened() -> bool:
        return bool(await fetch(pg_url, "SELECT 1 FROM cases WHERE case_id = 'acme-air:twitter:s1'"))

    assert await eventually(opened, timeout_s=60), storage.log_tail()
    (case,) = await fetch(pg_url, "SELECT * FROM cases WHERE case_id = 'acme-air:twitter:s1'")
    assert (case["owner"], case["state"], case["deadline_at"]) == ("ann", "assigned", MONDAY_DUE)  # EARFUL_CARE_AGENTS
    await produce(settings, ENRICHED, [(str(answer["mention"]["mention_id"]).encode(), codec.encode(answer))])

    async def on_topic() -> bool:
        return {"acme-air:twitter:s1:1", "acme-air:twitter:s1:2"} <= set(await published_events(settings))

    assert await eventually(on_topic, timeout_s=60), storage.log_tail()
    events = await published_events(settings)
    assert (events["acme-air:twitter:s1:2"]["event"], events["acme-air:twitter:s1:2"]["answered_at"]) == (
        "answered", FRIDAY + timedelta(minutes=9))
    # The same question delivered again changes nothing.
    await produce(settings, ENRICHED, [(key, codec.encode(asked))])
    assert await eventually(lambda: committed_to_end(settings, "earful-storage", ENRICHED), timeout_s=60)
    assert [r["event_id"] for r in await fetch(pg_url, "SELECT event_id FROM case_events WHERE case_id = $1 ORDER BY id",
                                                "acme-air:twitter:s1")] == ["acme-air:twitter:s1:1",
                                                                            "acme-air:twitter:s1:2"]


async def _write_to_service_db(pg_url: str, *rows: tuple[Any, ...]) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await write(conn, *rows)
    finally:
        await conn.close()


async def test_people_move_cases_through_valid_transitions_only(storage: Any, pg_url: str, settings: Settings) -> None:
    await _write_to_service_db(pg_url, question("a1", followers=500_000),
                               question("a2", FRIDAY + timedelta(minutes=5), followers=10),
                               question("a3", watchlists=("globex",), text="Globex?", followers=None, sentiment="neutral"))
    path = "/v1/cases/acme-air:twitter:a1"
    assert api(storage, "GET", path, headers=VIEWER).json()["state"] == "assigned"
    assert api(storage, "POST", path + "/assign", headers=VIEWER, json={"owner": "cy"}).status_code == 403
    assert api(storage, "POST", "/v1/cases/acme-air:twitter:nope/answer").status_code == 404

    steps = [("assign", {"owner": "cy"}, 200, "assigned", "cy"), ("assign", {"owner": "cy"}, 409, None, None),
             ("escalate", {"reason": "legal should look"}, 200, "escalated", "cy"),
             ("escalate", {"reason": "again"}, 409, None, None), ("reopen", None, 409, None, None),
             ("assign", {"owner": "dee"}, 200, "escalated", "dee"), ("answer", {"source_id": "dm-1"}, 200, "answered", "dee"),
             ("answer", None, 409, None, None), ("dismiss", {"reason": "x"}, 409, None, None),
             ("reopen", None, 200, "assigned", "dee"), ("dismiss", {"reason": "spam after all"}, 200, "dismissed", "dee")]
    for action, body, status, state, owner in steps:
        answered = api(storage, "POST", f"{path}/{action}", json=body)
        assert answered.status_code == status, (action, answered.text)
        if status == 409:
            assert answered.headers["content-type"] == "application/problem+json"
            continue
        case = answered.json()
        assert (case["state"], case["owner"]) == (state, owner), action
    assert api(storage, "POST", path + "/dismiss", json={}).status_code == 422  # a reason is required
    detail = api(storage, "GET", path).json()
    assert [(e["event"], e["actor"]) for e in detail["events"]] == [
        ("opened", "stream"), ("assigned", "agent"), ("escalated", "agent"), ("assigned", "agent"),
        ("answered", "agent"), ("reopened", "agent"), ("dismissed", "agent")]
    assert detail["version"] == 7 and detail["reason"] == "spam after all" and detail["answered_at"] is None
    assert detail["first_reply_at"] is not None  # the first answer stays for the KPIs

    async def all_published() -> bool:
        return not await fetch(pg_url, "SELECT 1 FROM case_events WHERE published_at IS NULL")

    assert await eventually(all_published, timeout_s=30), storage.log_tail()
    stored = {r["event_id"]: r for r in await fetch(pg_url, "SELECT * FROM case_events")}
    cases = {r["case_id"] for r in await fetch(pg_url, "SELECT case_id FROM cases")}
    # (The outbox test above publishes from a database of its own to the same broker.)
    on_topic = {k: v for k, v in (await published_events(settings)).items() if v["case_id"] in cases}
    assert set(on_topic) == set(stored)  # one record per change, none lost, none invented
    assert [on_topic[f"acme-air:twitter:a1:{v}"]["event"] for v in range(1, 8)] == [
        "opened", "assigned", "escalated", "assigned", "answered", "reopened", "dismissed"]
    assert on_topic["acme-air:twitter:a1:5"]["answered_at"] is not None
    globex = on_topic["globex:twitter:a3:1"]  # no SLA, no agents
    assert (globex["deadline_at"], globex["warn_at"], globex["owner"], globex["state"]) == (None, None, None, "open")


def test_the_inbox_lists_by_priority_then_waiting_and_pages(storage: Any) -> None:
    first = api(storage, "GET", "/v1/cases", params={"watchlist": "acme-air", "limit": 100})
    assert first.status_code == 200, first.text
    cases = first.json()["cases"]
    assert cases and all(c["state"] in ("open", "assigned", "escalated") for c in cases)
    keys = [(-c["priority"], c["opened_at"], c["case_id"]) for c in cases]
    assert keys == sorted(keys)
    top = cases[0]
    assert top["text"] and top["author_handle"] and top["waiting_s"] > 0 and top["waiting"].endswith(("d", "h"))
    # a2, asked Friday 16:35: 55 min of its 2 h on Friday, the rest from Monday 09:00; long breached.
    assert (top["case_id"], top["deadline_at"], top["warn_at"]) == ("acme-air:twitter:a2", "2026-11-09T10:05:00Z",
                                                                    "2026-11-09T09:35:00Z")
    assert top["sla_used"] > 1 and top["priority_reasons"][-1] == "waiting: past the SLA deadline +20"
    paged, cursor = [], None
    while True:
        params: dict[str, Any] = {"watchlist": "acme-air", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        body = api(storage, "GET", "/v1/cases", params=params).json()
        paged += body["cases"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert [c["case_id"] for c in paged] == [c["case_id"] for c in cases]
    everything = api(storage, "GET", "/v1/cases", params=[("state", s) for s in
                                                          ("open", "assigned", "answered", "dismissed", "escalated")])
    assert {c["state"] for c in everything.json()["cases"]} >= {"answered", "dismissed"}
    assert api(storage, "GET", "/v1/cases", params={"owner": "ann"}).json()["cases"][0]["owner"] == "ann"
    csv = api(storage, "GET", "/v1/cases", params={"format": "csv"})
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith('"case_id","watchlist_id"')


def test_response_time_kpis_per_source_and_owner(storage: Any) -> None:
    got = api(storage, "GET", "/v1/watchlists/acme-air/care",
              params={"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["sla_s"] == 7200 and body["business_hours"]["timezone"] == "Europe/London"
    total = body["total"]
    assert total["opened"] >= 3 and total["answered"] >= 2
    # s1 was answered after 9 min (within its SLA); a1 first answered by a person weeks later (breached).
    assert total["median_first_reply_s"] > 0 and total["p90_first_reply_s"] >= total["median_first_reply_s"]
    assert total["answered_within_sla"] >= 1 and total["breached"] >= 1
    assert total["within_sla_share"] == round(total["answered_within_sla"] / total["due"], 4)
    assert {s["source"] for s in body["by_source"]} == {"twitter"}
    owners = {o["owner"]: o for o in body["by_owner"]}
    assert owners["ann"]["opened"] >= 1 and sum(o["opened"] for o in owners.values()) == total["opened"]
    assert sum(d["opened"] for d in body["by_day"]) == total["opened"]
    assert api(storage, "GET", "/v1/watchlists/no-such-list/care").status_code == 404


def test_openapi_documents_the_case_endpoints(storage: Any) -> None:
    doc = api(storage, "GET", "/openapi.json").json()
    for path in ("/v1/cases", "/v1/cases/{case_id}", "/v1/cases/{case_id}/assign", "/v1/cases/{case_id}/reopen",
                 "/v1/watchlists/{watchlist_id}/care"):
        assert path in doc["paths"], path
    assert "409" in doc["paths"]["/v1/cases/{case_id}/answer"]["post"]["responses"]
