"""Corrections against a real storage process, PostgreSQL and broker: the API (validation, the audit
trail, idempotent retries), the mention and every rollup adjusted at once (checked by a recount),
the topic, the outbox publishing what was stored without a broker, the CLI and its export, the
agreement per watchlist, concurrent corrections, append-only rows, and erasure."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.kafka import Codecs, start_producer
from earful.core.migrate import migrate
from earful.core.settings import PACKAGE_DIR, Settings
from earful.core.topics import CORRECTIONS, create_topics
from earful.storage.corrections import CorrectionRequest, apply_correction
from earful.storage.outbox import CorrectionOutbox
from earful.storage.writer import BrandHandles, mention_row, write_batch
from earful.watchlists import WatchlistSet
from earful.watchlists.owned import OwnedHandles
from earful_dev.stack.broker import LocalBroker, free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.integration.test_storage_db import assert_rollups_match_recount, enriched
from tests.support import consume_all, eventually, scraped

pytestmark = pytest.mark.integration
UTC = timezone.utc
KEY = "corrections-test-key"
HEADERS = {"X-API-Key": KEY}
PRINCIPAL = "key:legacy-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]  # a bare key: named by its hash
SERVICES = str(Path(__file__).resolve().parents[2] / "services")
T0 = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)

OUTAGE = "the Acme Air app is down, can't log in #AcmeAir"
QUESTION = "Acme Air when does my flight to London leave? #AcmeAir"


def _tag(text: str, tag: str) -> dict[str, Any]:
    start = text.index(tag)
    return {"text": tag, "type": "hashtag", "start": start, "end": start + len(tag), "origin": "rules"}


# Every mention the tests correct, each test its own: name → (source_id, minutes after T0, enriched() options).
MENTIONS: dict[str, dict[str, Any]] = {
    "outage": {"handle": "jane", "sentiment": "neutral", "text": OUTAGE, "entities": [_tag(OUTAGE, "#AcmeAir")]},
    "trail": {"handle": "bob", "sentiment": "positive", "watchlists": ("acme-air", "globex"),
              "text": "Acme Air and Globex both fine today", "entities": []},
    "retry": {"handle": "kim", "sentiment": "neutral", "text": "Acme Air flight delayed", "entities": []},
    "question": {"handle": "carl", "sentiment": "neutral", "text": QUESTION, "entities": [_tag(QUESTION, "#AcmeAir")]},
    "reply": {"handle": "AcmeAirHelp", "sentiment": "neutral", "reply_to": "question", "text": "@carl 10:40 from gate 3",
              "entities": [], "minutes": 10},
    "unmatched": {"handle": "ute", "sentiment": None, "watchlists": (), "lang": "de", "text": "Ein Text ohne Marke",
                  "entities": []},
    "confirm": {"handle": "dana", "sentiment": "negative", "risks": ("complaint",), "text": "Acme Air lost my bag again",
                "entities": []},
    "cli": {"handle": "eve", "sentiment": "positive", "text": "Acme Air refund never came", "entities": []},
    "erase": {"handle": "eraseme", "sentiment": "positive", "text": "Acme Air is great", "entities": []},
    "concurrent": {"handle": "lee", "sentiment": "neutral", "watchlists": ("acme-air", "globex"),
                   "text": "Acme Air vs Globex in Zürich #AcmeAir", "entities": []},
    "bystander": {"handle": "lee", "sentiment": "negative", "watchlists": ("acme-air",), "text": "Acme Air again",
                  "entities": [], "minutes": 1},
    # The brand's own care handle (acme-air's `handles`): owned for acme-air, earned for globex.
    "care": {"handle": "AcmeAirHelp", "sentiment": "positive", "watchlists": ("acme-air", "globex"),
             "text": "Acme Air and Globex: our lounges reopen #AcmeAir",
             "entities": [_tag("Acme Air and Globex: our lounges reopen #AcmeAir", "#AcmeAir")]},
}


def record(name: str) -> dict[str, Any]:
    options = dict(MENTIONS[name])
    minutes = options.pop("minutes", 0)
    if "reply_to" in options:
        options["reply_to"] = f"c-{options['reply_to']}"
    return enriched(f"c-{name}", T0 + timedelta(minutes=minutes), **options)


def mid(name: str) -> str:
    return str(record(name)["mention"]["mention_id"])


@pytest.fixture(scope="module")
async def stored(pg_url: str) -> dict[str, Any]:
    """The module's database, migrated, with every mention of MENTIONS written by the real writer."""
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        watchlists = WatchlistSet.from_file(PACKAGE_DIR / "sample" / "watchlists").watchlists.values()
        result = await write_batch(conn, [mention_row(record(n)) for n in MENTIONS], [], brands=BrandHandles.of(watchlists),
                                   owned=OwnedHandles.of(watchlists))
        assert result.mentions_inserted == len(MENTIONS)
        await assert_rollups_match_recount(conn)
    finally:
        await conn.close()
    return {"models": record("outage")["models"]}


@pytest.fixture(scope="module")
def storage(base_env: dict[str, str], pg_url: str, stored: dict[str, Any],
            tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("watchlists") / "w"
    shutil.copytree(PACKAGE_DIR / "sample" / "watchlists", folder)
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_API_KEYS": KEY, "EARFUL_WATCHLISTS_DIR": str(folder)}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port),
                         tmp_path_factory.mktemp("corrections") / "storage.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def post(svc: Any, name_or_id: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    target = mid(name_or_id) if name_or_id in MENTIONS else name_or_id
    return httpx.post(f"{svc.url}/v1/mentions/{target}/corrections", json=body, headers={**HEADERS, **headers},
                      timeout=30)


def get(svc: Any, path: str, **params: Any) -> httpx.Response:
    return httpx.get(svc.url + path, params=params, headers=HEADERS, timeout=30)


async def fetch(pg_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def recount_agrees(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await assert_rollups_match_recount(conn)
    finally:
        await conn.close()


async def day_count(pg_url: str, watchlist: str, sentiment: str) -> int:
    rows = await fetch(pg_url, "SELECT coalesce(sum(mentions), 0) AS n FROM mention_rollups_day WHERE watchlist_id = $1"
                               " AND sentiment = $2", watchlist, sentiment)
    return int(rows[0]["n"])


def earful(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "earful", *args], env={**env, "PYTHONPATH": SERVICES},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# --- the API ------------------------------------------------------------------------------------------------


def test_openapi_documents_the_endpoints(storage: Any) -> None:
    doc = httpx.get(storage.url + "/openapi.json").json()
    post_op = doc["paths"]["/v1/mentions/{mention_id}/corrections"]["post"]
    assert post_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CorrectionRequest")
    assert {"200", "201", "401", "404", "409", "422", "503"} <= set(post_op["responses"])
    assert post_op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/CorrectionResult")
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post_op["parameters"])
    for path, model in (("/v1/mentions/{mention_id}/corrections", "CorrectionTrail"), ("/v1/corrections", "CorrectionList"),
                        ("/v1/watchlists/{watchlist_id}/model-agreement", "ModelAgreement")):
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/" + model), path
    request = doc["components"]["schemas"]["CorrectionRequest"]["properties"]
    assert "complaint" in json.dumps(request["risks"]) and "creative-work" in json.dumps(doc["components"]["schemas"]["EntitySpan"])
    assert httpx.post(f"{storage.url}/v1/mentions/{mid('outage')}/corrections", json={"sentiment": "negative"}).status_code == 401


async def test_a_sentiment_correction_applies_at_once_everywhere(storage: Any, pg_url: str, stored: dict[str, Any]) -> None:
    before = await day_count(pg_url, "acme-air", "negative")
    r = post(storage, "outage", {"sentiment": "negative", "by": "jane", "note": "an outage is bad news"})
    assert r.status_code == 201, r.text
    body = r.json()
    (c,) = body["corrections"]
    assert (c["field"], c["value"], c["model_value"], c["previous_value"], c["agrees"]) == (
        "sentiment", "negative", "neutral", "neutral", False)
    assert (c["by"], c["principal"], c["note"], c["supersedes"]) == ("jane", PRINCIPAL, "an outage is bad news", None)
    assert c["model_version"] == stored["models"]["sentiment"]
    assert body["stored"] is True and body["mention"]["sentiment"] == "negative"
    assert body["mention"]["sentiment_score"] == -1.0
    assert body["mention"]["sentiment_probabilities"] == {"negative": 1.0, "neutral": 0.0, "positive": 0.0}
    # The mention itself, its filters and the counts the dashboard reads.
    listed = get(storage, "/v1/mentions", watchlist="acme-air", sentiment="negative", limit=500).json()["mentions"]
    assert mid("outage") in {m["mention_id"] for m in listed}
    assert mid("outage") not in {m["mention_id"] for m in get(storage, "/v1/mentions", sentiment="neutral", limit=500).json()["mentions"]}
    assert await day_count(pg_url, "acme-air", "negative") == before + 1
    await recount_agrees(pg_url)
    # Published right after the commit.
    assert await eventually(lambda: _published(pg_url, c["id"]), timeout_s=20)


async def _published(pg_url: str, correction_id: int) -> bool:
    rows = await fetch(pg_url, "SELECT published_at FROM corrections WHERE id = $1", correction_id)
    return bool(rows) and rows[0]["published_at"] is not None


async def test_the_audit_trail_keeps_every_correction(storage: Any, pg_url: str) -> None:
    first = post(storage, "trail", {"sentiment": "neutral", "by": "ann"}).json()["corrections"][0]
    second = post(storage, "trail", {"sentiment": "negative", "by": "ben", "note": "sarcasm"}).json()["corrections"][0]
    assert second["supersedes"] == first["id"] and second["model_value"] == "positive"
    assert second["previous_value"] == "neutral" and first["previous_value"] == "positive"
    trail = get(storage, f"/v1/mentions/{mid('trail')}/corrections").json()
    assert [c["id"] for c in trail["corrections"]] == [first["id"], second["id"]]
    assert trail["corrections"][0]["superseded_by"] == second["id"] and trail["corrections"][1]["superseded_by"] is None
    assert [c["by"] for c in trail["corrections"]] == ["ann", "ben"]
    # Both watchlists of the mention moved once: positive → negative (neutral in between left no trace).
    for wl in ("acme-air", "globex"):
        rows = await fetch(pg_url, "SELECT sentiment, mentions FROM watchlist_rollups_day WHERE watchlist_id = $1", wl)
        assert "neutral" not in {r["sentiment"] for r in rows if r["mentions"] <= 0}
    await recount_agrees(pg_url)
    # A mention never corrected has an empty trail; an unknown one is a 404.
    assert get(storage, f"/v1/mentions/{mid('bystander')}/corrections").json()["corrections"] == []
    assert get(storage, f"/v1/mentions/{uuid.uuid4()}/corrections").status_code == 404


async def test_retries_do_not_double_count(storage: Any, pg_url: str) -> None:
    before = await day_count(pg_url, "acme-air", "negative")
    body = {"sentiment": "negative", "risks": ["complaint"], "by": "kim"}
    first = post(storage, "retry", body, **{"Idempotency-Key": "req-1"})
    again = post(storage, "retry", body, **{"Idempotency-Key": "req-1"})
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["stored"] is False
    assert [c["id"] for c in again.json()["corrections"]] == [c["id"] for c in first.json()["corrections"]]
    # Identical content without a key, right after: the corrections in force, nothing new.
    plain = post(storage, "retry", body)
    assert plain.status_code == 200 and plain.json()["stored"] is False
    # The key used for another correction is a conflict, and changes nothing.
    conflict = post(storage, "retry", {**body, "sentiment": "positive"}, **{"Idempotency-Key": "req-1"})
    assert conflict.status_code == 409 and "req-1" in conflict.json()["detail"]
    assert len(await fetch(pg_url, "SELECT id FROM corrections WHERE mention_id = $1", uuid.UUID(mid("retry")))) == 2
    assert await day_count(pg_url, "acme-air", "negative") == before + 1
    # Someone else confirming the correction in force is a new audit entry; the counts stay.
    other = post(storage, "retry", {"sentiment": "negative", "by": "lou"})
    assert other.status_code == 201 and other.json()["corrections"][0]["supersedes"] == first.json()["corrections"][0]["id"]
    assert await day_count(pg_url, "acme-air", "negative") == before + 1
    await recount_agrees(pg_url)
    assert scraped(storage.url + "/metrics", "earful_corrections_total", field="sentiment", outcome="repeated") >= 2


@pytest.mark.parametrize("target,body,headers,status,loc", [
    ("outage", {}, {}, 422, ["body"]),
    ("outage", {"sentiment": "angry"}, {}, 422, ["body", "sentiment"]),
    ("outage", {"risks": ["complaint", "nope"]}, {}, 422, ["body", "risks", 1]),
    ("outage", {"risks": ["complaint", "complaint"]}, {}, 422, ["body", "risks"]),
    ("outage", {"entities": [{"text": "x", "type": "planet", "start": 0, "end": 1}]}, {}, 422, ["body", "entities", 0, "type"]),
    ("outage", {"entities": [{"text": "Acme", "type": "corporation", "start": 0, "end": 4}]}, {}, 422,
     ["body", "entities", 0, "text"]),
    ("outage", {"entities": [{"text": "#AcmeAir!", "type": "hashtag", "start": 40, "end": 49}]}, {}, 422,
     ["body", "entities", 0, "end"]),
    ("outage", {"entities": [{"text": "Acme Air", "type": "corporation", "start": 4, "end": 12}] * 2}, {}, 422,
     ["body", "entities", 1]),
    ("outage", {"sentiment": "negative", "confidence": 1.0}, {}, 422, ["body", "confidence"]),
    ("outage", {"sentiment": "negative"}, {"Idempotency-Key": "two words"}, 422, ["header", "Idempotency-Key"]),
    ("not-a-uuid", {"sentiment": "negative"}, {}, 422, ["path", "mention_id"]),
    (str(uuid.UUID(int=7)), {"sentiment": "negative"}, {}, 404, None),
])
async def test_bad_corrections_are_refused_and_change_nothing(storage: Any, pg_url: str, target: str, body: dict[str, Any],
                                                              headers: dict[str, str], status: int, loc: list[Any] | None) -> None:
    count = len(await fetch(pg_url, "SELECT id FROM corrections"))
    r = post(storage, target, body, **headers)
    assert r.status_code == status, r.text
    if loc is not None:
        assert [e["loc"] for e in r.json()["errors"]] == [loc]
    else:
        assert "mention_id" in r.json()["detail"]
    assert len(await fetch(pg_url, "SELECT id FROM corrections")) == count


def test_refusals_are_counted_by_kind(storage: Any) -> None:
    assert scraped(storage.url + "/metrics", "earful_correction_failures_total", kind="not_found") >= 1
    assert scraped(storage.url + "/metrics", "earful_correction_failures_total", kind="validation_error") >= 1
    assert scraped(storage.url + "/metrics", "earful_correction_failures_total", kind="conflict") >= 1


async def test_tags_and_entities_move_filters_rollups_and_questions(storage: Any, pg_url: str) -> None:
    hashtag = {k: v for k, v in _tag(QUESTION, "#AcmeAir").items() if k != "origin"}
    london = {"text": "London", "type": "location", "start": QUESTION.index("London"), "end": QUESTION.index("London") + 6}
    r = post(storage, "question", {"risks": ["customer_question"], "entities": [london, hashtag]})
    assert r.status_code == 201, r.text
    entities = {c["field"]: c for c in r.json()["corrections"]}["entities"]
    assert entities["model_value"] == [hashtag] and entities["value"] == [london, hashtag]  # sorted by start
    assert {e["text"]: e["origin"] for e in r.json()["mention"]["entities"]} == {"#AcmeAir": "rules", "London": "correction"}
    assert r.json()["mention"]["risks"] == [{"tag": "customer_question", "evidence": "", "start": 0, "end": 0}]

    def ids(**params: str) -> set[str]:
        return {m["mention_id"] for m in get(storage, "/v1/mentions", limit=500, **params).json()["mentions"]}

    assert mid("question") in ids(risk="customer_question") and mid("question") in ids(entity="LONDON")
    totals = await fetch(pg_url, "SELECT mentions FROM entity_totals WHERE watchlist_id = 'acme-air' AND entity_key = 'london'")
    assert [t["mentions"] for t in totals] == [1]
    # Now a customer question, answered by the brand's reply already stored.
    questions = await fetch(pg_url, "SELECT watchlist_id, first_reply_at FROM questions WHERE source_id = 'c-question'")
    assert [(q["watchlist_id"], q["first_reply_at"]) for q in questions] == [("acme-air", T0 + timedelta(minutes=10))]
    await recount_agrees(pg_url)
    # Taking the tag and the entity away undoes all of it.
    r = post(storage, "question", {"risks": [], "entities": [hashtag]})
    assert r.status_code == 201 and r.json()["mention"]["risks"] == []
    assert mid("question") not in ids(risk="customer_question") and mid("question") not in ids(entity="london")
    assert await fetch(pg_url, "SELECT 1 FROM entity_totals WHERE entity_key = 'london'") == []
    assert await fetch(pg_url, "SELECT 1 FROM questions WHERE source_id = 'c-question'") == []
    await recount_agrees(pg_url)


async def test_a_confirmation_counts_as_agreement_and_changes_no_count(storage: Any, pg_url: str) -> None:
    snapshot = await fetch(pg_url, "SELECT * FROM mention_rollups_minute ORDER BY 1, 2, 3, 4, 5")
    r = post(storage, "confirm", {"sentiment": "negative", "risks": ["complaint"]})
    assert r.status_code == 201
    assert [(c["field"], c["agrees"]) for c in r.json()["corrections"]] == [("sentiment", True), ("risks", True)]
    assert await fetch(pg_url, "SELECT * FROM mention_rollups_minute ORDER BY 1, 2, 3, 4, 5") == snapshot
    # A mention that matched no watchlist, with no label: counted under '(none)' / 'unknown' until corrected.
    before = await day_count(pg_url, "(none)", "unknown")
    r = post(storage, "unmatched", {"sentiment": "neutral"})
    assert r.status_code == 201 and r.json()["corrections"][0]["model_value"] is None
    assert await day_count(pg_url, "(none)", "unknown") == before - 1
    await recount_agrees(pg_url)


def test_corrections_list_filters_and_pages(storage: Any) -> None:
    everything = get(storage, "/v1/corrections", limit=500).json()["corrections"]
    assert everything and [c["id"] for c in everything] == sorted((c["id"] for c in everything), reverse=True)
    seen, cursor = [], None
    while True:
        page = get(storage, "/v1/corrections", limit=2, **({"cursor": cursor} if cursor else {})).json()
        seen += [c["id"] for c in page["corrections"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [c["id"] for c in everything]
    globex = get(storage, "/v1/corrections", watchlist="globex", limit=500).json()["corrections"]
    assert globex and all("globex" in c["watchlist_ids"] for c in globex)
    risks = get(storage, "/v1/corrections", field="risks", limit=500).json()["corrections"]
    assert risks and all(c["field"] == "risks" for c in risks)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert get(storage, "/v1/corrections", since=future).json()["corrections"] == []
    csv = get(storage, "/v1/corrections", format="csv", limit=3)
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith('"corrected_at","id","mention_id"')
    for params, name in (({"since": "2026-11-02T09:00:00"}, "since"), ({"field": "tone"}, "field"),
                         ({"cursor": "nope"}, "cursor"), ({"watchlist": "Bad Id"}, "watchlist")):
        r = get(storage, "/v1/corrections", **params)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == name, r.text


async def test_model_agreement_per_watchlist(storage: Any, pg_url: str) -> None:
    body = get(storage, "/v1/watchlists/acme-air/model-agreement").json()
    # Recomputed here from the corrections in force of acme-air's mentions.
    latest = await fetch(pg_url, "SELECT DISTINCT ON (mention_id, field) field, value, model_value FROM corrections"
                                 " WHERE 'acme-air' = ANY(watchlist_ids) ORDER BY mention_id, field, id DESC")
    for field in ("sentiment", "risks", "entities"):
        mine = [(json.loads(r["value"]), json.loads(r["model_value"])) for r in latest if r["field"] == field]
        agreed = sum(v == m for v, m in mine)
        got = body["fields"][field]
        assert (got["reviewed"], got["agreed"]) == (len(mine), agreed), field
        assert got["agreement"] == (round(agreed / len(mine), 4) if mine else None)
    sentiment = body["fields"]["sentiment"]
    assert sentiment["reviewed"] >= 4 and sentiment["classes"]["negative"]["reviewed"] >= 3
    assert sentiment["confusion"]["neutral"]["negative"] >= 1  # the outage: the model said neutral
    assert body["fields"]["risks"]["tags"]["complaint"]["corrected"] >= 2
    assert get(storage, "/v1/watchlists/globex/model-agreement").json()["fields"]["sentiment"]["reviewed"] >= 1
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = get(storage, "/v1/watchlists/acme-air/model-agreement", since=future).json()
    assert later["fields"]["sentiment"] == {**later["fields"]["sentiment"], "reviewed": 0, "agreement": None}
    assert get(storage, "/v1/watchlists/no-such-brand/model-agreement").status_code == 404
    assert get(storage, "/v1/watchlists/acme-air/model-agreement", since="2026-11-02").status_code == 422


# --- publishing ---------------------------------------------------------------------------------------------


async def test_every_correction_is_published_on_the_topic(storage: Any, pg_url: str, settings: Settings) -> None:
    async def all_published() -> bool:
        return not await fetch(pg_url, "SELECT 1 FROM corrections WHERE published_at IS NULL")

    assert await eventually(all_published, timeout_s=30), "corrections left unpublished"
    rows = {r["id"]: r for r in await fetch(pg_url, "SELECT * FROM corrections")}
    records = await consume_all(settings, CORRECTIONS, expect=10**6, timeout_s=5)  # all there is (repeats allowed)
    codec = Codecs(settings).for_topic(CORRECTIONS)
    decoded = {}
    for msg in records:
        value = codec.decode(msg.value)
        assert msg.key.decode() == value["mention_id"]
        decoded[value["correction_id"]] = value  # at least once: a repeat would carry the same id and content
    assert set(decoded) == set(rows)
    outage = next(v for v in decoded.values() if v["mention_id"] == mid("outage"))
    assert (outage["field"], outage["value"]["sentiment"], outage["model_value"]["sentiment"]) == (
        "sentiment", "negative", "neutral")
    assert outage["corrected_by"] == "jane" and outage["principal"] == PRINCIPAL and outage["watchlist_ids"] == ["acme-air"]
    for cid, value in decoded.items():
        assert value["supersedes"] == rows[cid]["supersedes"] and value["agrees"] == rows[cid]["agrees"]
        assert value["value"][value["field"]] == json.loads(rows[cid]["value"])
    assert scraped(storage.url + "/metrics", "earful_corrections_published_total") >= 1


async def test_a_correction_made_without_a_broker_is_published_later(storage: Any, pg_url: str, base_env: dict[str, str],
                                                                     settings: Settings) -> None:
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    result = earful("corrections", "add", mid("cli"), "--sentiment", "negative", "--risks", "complaint",
                    "--note", "refund complaint", env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["stored"] is True and [c["field"] for c in out["corrections"]] == ["sentiment", "risks"]
    assert all(c["principal"].startswith("cli:") and c["by"] == c["principal"] for c in out["corrections"])
    assert "not yet on earful.corrections.v1" in result.stderr and "Traceback" not in result.stderr
    ids = [c["id"] for c in out["corrections"]]
    await recount_agrees(pg_url)
    # The storage service's outbox loop finds and publishes them.
    assert await eventually(lambda: _all_published(pg_url, ids), timeout_s=30), storage.log_tail()
    codec = Codecs(settings).for_topic(CORRECTIONS)
    on_topic = {codec.decode(m.value)["correction_id"] for m in await consume_all(settings, CORRECTIONS, expect=10**6,
                                                                                    timeout_s=3)}
    assert set(ids) <= on_topic
    # The CLI lists the mention's trail.
    listed = earful("corrections", "list", "--mention", mid("cli"), env=env)
    assert listed.returncode == 0 and [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ids


async def test_a_send_the_broker_never_acknowledges_is_retried_by_the_loop(pg_url: str, settings: Settings,
                                                                          tmp_path: Path) -> None:
    """The outbox against a broker that dies after the producer connected: the correction stays
    unpublished and counted as a broker_error; the loop publishes it once a broker answers. (A
    database of its own, so the storage process of the other tests does not publish it first.)"""
    url = with_database(pg_url, f"earful_o_{uuid.uuid4().hex[:10]}")
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    codec = Codecs(settings).for_topic(CORRECTIONS)
    doomed = LocalBroker.start(log_path=tmp_path / "doomed.log")
    try:
        await migrate(conn)
        await write_batch(conn, [mention_row(record("outage"))], [])
        applied = await apply_correction(conn, uuid.UUID(mid("outage")), CorrectionRequest(sentiment="negative"),
                                         principal="test")
        (cid,) = applied.new
        dead_settings = Settings(kafka_bootstrap=doomed.bootstrap)
        await create_topics(dead_settings)
        dead = await start_producer(dead_settings, "earful-test-doomed")
        doomed.stop()
        failures = REGISTRY.get_sample_value("earful_correction_failures_total", {"kind": "broker_error"}) or 0.0
        assert await CorrectionOutbox(pool, dead, codec, send_timeout_s=1.0).publish_mention(mid("outage")) == []
        assert REGISTRY.get_sample_value("earful_correction_failures_total", {"kind": "broker_error"}) == failures + 1
        assert not await _all_published(url, [cid])
        with contextlib.suppress(Exception):  # its last record may never be delivered
            await asyncio.wait_for(dead.stop(), 5)

        live = await start_producer(settings, "earful-test-live")
        stopping = asyncio.Event()
        loop = asyncio.create_task(CorrectionOutbox(pool, live, codec, interval_s=0.2).run(stopping))
        try:
            assert await eventually(lambda: _all_published(url, [cid]), timeout_s=20)
            assert REGISTRY.get_sample_value("earful_corrections_unpublished") == 0
        finally:
            stopping.set()
            await loop
            await live.stop()
        on_topic = [codec.decode(m.value) for m in await consume_all(settings, CORRECTIONS, expect=10**6, timeout_s=3)]
        assert any(r["correction_id"] == cid and r["mention_id"] == mid("outage") for r in on_topic)
    finally:
        doomed.stop()
        await pool.close()
        await conn.close()
        await drop_database(url)


async def _all_published(pg_url: str, ids: list[int]) -> bool:
    rows = await fetch(pg_url, "SELECT published_at FROM corrections WHERE id = ANY($1::bigint[])", ids)
    return len(rows) == len(ids) and all(r["published_at"] is not None for r in rows)


def test_cli_refusals_are_one_clear_line(pg_url: str, base_env: dict[str, str]) -> None:
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url}
    for args, fragment in ((["add", mid("cli"), "--risks", "complaint,nope"], "risks.1"),
                           (["add", "nope", "--sentiment", "negative"], "MENTION_ID"),
                           (["add", str(uuid.UUID(int=9)), "--sentiment", "negative"], "no stored mention"),
                           (["add", mid("cli")], "at least one of"),
                           (["export", "--out", "/no/such/folder/x.jsonl"], "no such folder")):
        result = earful("corrections", *args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


# --- the export -----------------------------------------------------------------------------------------------


async def test_export_writes_one_line_per_mention_and_field(pg_url: str, base_env: dict[str, str], tmp_path: Path) -> None:
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url}
    out = tmp_path / "corrections.jsonl"
    result = earful("corrections", "export", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    latest = await fetch(pg_url, "SELECT DISTINCT ON (mention_id, field) * FROM corrections ORDER BY mention_id, field, id DESC")
    assert len(lines) == len(latest) and f"exported {len(lines)} corrections" in result.stderr
    assert len({(line["mention_id"], line["field"]) for line in lines}) == len(lines)
    texts = {r["mention_id"]: (r["text"], r["lang"]) for r in await fetch(pg_url, "SELECT mention_id::text, text, lang FROM mentions")}
    by_key = {(str(r["mention_id"]), r["field"]): r for r in latest}
    for line in lines:
        assert list(line) == ["mention_id", "text", "lang", "field", "value", "model_value", "model_version", "by", "at"]
        row = by_key[(line["mention_id"], line["field"])]
        assert (line["text"], line["lang"]) == texts[line["mention_id"]]
        assert line["value"] == json.loads(row["value"]) and line["model_value"] == json.loads(row["model_value"])
        assert (line["model_version"], line["by"]) == (row["model_version"], row["corrected_by"])
        assert datetime.fromisoformat(line["at"].replace("Z", "+00:00")) == row["created_at"] and line["at"].endswith("Z")
    trail = [line for line in lines if line["mention_id"] == mid("trail") and line["field"] == "sentiment"]
    assert [(t["value"], t["model_value"], t["by"]) for t in trail] == [("negative", "positive", "ben")]
    entities = next(line for line in lines if line["mention_id"] == mid("question") and line["field"] == "entities")
    assert all(set(e) == {"text", "type", "start", "end"} for e in entities["value"])
    # Filters: a watchlist, a time.
    globex = earful("corrections", "export", "--out", "-", "--watchlist", "globex", env=env)
    expected = {str(r["mention_id"]) for r in latest if "globex" in r["watchlist_ids"]}
    assert expected and {json.loads(line)["mention_id"] for line in globex.stdout.splitlines()} == expected
    future = earful("corrections", "export", "--out", "-", "--since", (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                    env=env)
    assert future.returncode == 0 and future.stdout == ""


async def test_correcting_an_owned_post_moves_only_the_earned_counts(storage: Any, pg_url: str) -> None:
    """The care handle's post is stored and can be corrected, but acme-air never counted it (owned):
    a correction moves globex's counts only, and a recount under the same rule still agrees."""
    rows = await fetch(pg_url, "SELECT owned_watchlist_ids FROM mentions WHERE source_id = 'c-care'")
    assert [r["owned_watchlist_ids"] for r in rows] == [["acme-air"]]

    async def counts() -> dict[tuple[str, str], int]:
        return {(w, s): await day_count(pg_url, w, s) for w in ("acme-air", "globex") for s in ("positive", "negative")}

    async def hashtag_total(watchlist: str) -> int:
        found = await fetch(pg_url, "SELECT mentions FROM entity_totals WHERE watchlist_id = $1 AND entity_key = '#acmeair'",
                            watchlist)
        return int(found[0]["mentions"]) if found else 0

    before, tags = await counts(), {w: await hashtag_total(w) for w in ("acme-air", "globex")}
    r = post(storage, "care", {"sentiment": "negative", "entities": []})
    assert r.status_code == 201, r.text
    after = await counts()
    assert after[("acme-air", "positive")] == before[("acme-air", "positive")]
    assert after[("acme-air", "negative")] == before[("acme-air", "negative")]
    assert after[("globex", "positive")] == before[("globex", "positive")] - 1
    assert after[("globex", "negative")] == before[("globex", "negative")] + 1
    assert await hashtag_total("acme-air") == tags["acme-air"] and await hashtag_total("globex") == tags["globex"] - 1
    await recount_agrees(pg_url)


# --- consistency under concurrency, append-only, erasure ----------------------------------------------------------


async def test_concurrent_corrections_and_writes_keep_the_rollups_exact(storage: Any, pg_url: str) -> None:
    target = uuid.UUID(mid("concurrent"))
    zurich = "Acme Air vs Globex in Zürich #AcmeAir"
    spans = [{"text": "Zürich", "type": "location", "start": zurich.index("Zürich"), "end": zurich.index("Zürich") + 6},
             {"text": "#AcmeAir", "type": "hashtag", "start": zurich.index("#"), "end": zurich.index("#") + 8}]
    requests = [CorrectionRequest.model_validate(b) for b in (
        {"sentiment": "negative", "by": "a"}, {"sentiment": "positive", "by": "b"}, {"entities": spans, "by": "c"},
        {"sentiment": "neutral", "entities": spans[:1], "by": "d"}, {"risks": ["complaint"], "by": "e"},
        {"sentiment": "negative", "entities": [], "by": "f"})]
    conns = [await asyncpg.connect(pg_url) for _ in range(len(requests) + 1)]
    try:
        new = [enriched(f"c-new-{i}", T0 + timedelta(seconds=i), handle="lee", watchlists=("acme-air", "globex"),
                        entities=[]) for i in range(30)]
        results = await asyncio.gather(
            *(apply_correction(c, target, r, principal="test") for c, r in zip(conns, requests)),
            write_batch(conns[-1], [mention_row(m) for m in new], []))
        assert all(r.created for r in results[:-1])
        await assert_rollups_match_recount(conns[0])
        trail = await conns[0].fetch("SELECT field, supersedes, id FROM corrections WHERE mention_id = $1 ORDER BY id", target)
        by_field: dict[str, list[int]] = {}
        for row in trail:
            assert row["supersedes"] == (by_field[row["field"]][-1] if row["field"] in by_field else None)
            by_field.setdefault(row["field"], []).append(row["id"])
        assert sum(len(v) for v in by_field.values()) == 8  # one row per field of each request
    finally:
        for c in conns:
            await c.close()


async def test_corrections_are_append_only(storage: Any, pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        cid = await conn.fetchval("SELECT min(id) FROM corrections")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await conn.execute("UPDATE corrections SET value = '\"positive\"' WHERE id = $1", cid)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await conn.execute("UPDATE corrections SET corrected_by = 'someone else' WHERE id = $1", cid)
        await conn.execute("UPDATE corrections SET published_at = published_at WHERE id = $1", cid)  # the outbox may
    finally:
        await conn.close()


async def test_erasing_the_author_takes_the_corrections_along(storage: Any, pg_url: str) -> None:
    assert post(storage, "erase", {"sentiment": "negative", "note": "about eraseme's post"}).status_code == 201
    r = httpx.delete(f"{storage.url}/v1/authors/twitter/eraseme", headers=HEADERS, timeout=30)
    assert r.status_code == 200 and r.json()["mentions_erased"] == 1
    assert await fetch(pg_url, "SELECT 1 FROM corrections WHERE mention_id = $1", uuid.UUID(mid("erase"))) == []
    assert get(storage, f"/v1/mentions/{mid('erase')}/corrections").status_code == 404
    assert post(storage, "erase", {"sentiment": "neutral"}).status_code == 404
    await recount_agrees(pg_url)
