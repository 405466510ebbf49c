"""The query API of a real storage process over a seeded database: every endpoint (happy path,
bad parameters, auth), CSV export, keyset pagination, erasure, and schemathesis against the
OpenAPI document."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from earful_dev.seed import seed
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env

pytestmark = pytest.mark.integration
UTC = timezone.utc
KEY = "test-key-1"
HEADERS = {"X-API-Key": KEY}
END = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
async def seeded(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    wl_file = tmp_path_factory.mktemp("wl") / "watchlists.yaml"
    summary = await seed(pg_url, mentions=4000, days=3, watchlists=5, seed_value=3, end=END, watchlists_out=wl_file,
                         progress=lambda m: None)
    conn = await asyncpg.connect(pg_url)
    try:
        # The alerting service's notification log, as interfaces.md defines it (alerting creates it in its own migration).
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS notification_log (id bigserial PRIMARY KEY, group_key text, receiver text,"
            " receiver_kind text, status text, alert_ids text[], fingerprints text[], attempts int, outcome text,"
            " http_status int, error text, sent_at timestamptz)")
        alert = await conn.fetchrow("SELECT alert_id, fingerprint FROM alerts WHERE status = 'firing' ORDER BY detected_at DESC LIMIT 1")
        await conn.execute(
            "INSERT INTO notification_log (group_key, receiver, receiver_kind, status, alert_ids, fingerprints, attempts,"
            " outcome, http_status, error, sent_at) VALUES ('g', 'oncall', 'slack', 'firing', $1, $2, 2, 'delivered', 200,"
            " NULL, now())", [alert["alert_id"]], [alert["fingerprint"]])
        first_wl = await conn.fetchval("SELECT watchlist_id FROM mention_rollups_day WHERE watchlist_id <> '(none)'"
                                       " GROUP BY 1 ORDER BY sum(mentions) DESC LIMIT 1")
    finally:
        await conn.close()
    return {"summary": summary, "watchlists_file": wl_file, "alert_id": alert["alert_id"], "watchlist": first_wl}


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], pg_url: str, seeded: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_API_KEYS": f"{KEY},second-key",
           "EARFUL_WATCHLISTS_DIR": str(seeded["watchlists_file"]), "EARFUL_API_QUERY_TIMEOUT_S": "20"}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), tmp_path_factory.mktemp("api") / "storage.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def get(api: Any, path: str, **params: Any) -> httpx.Response:
    return httpx.get(api.url + path, params=params, headers=HEADERS, timeout=30)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/mentions", "/v1/share-of-voice", "/v1/alerts", "/v1/stats", "/v1/watchlists/x/series"])
def test_every_endpoint_needs_a_key(api: Any, path: str) -> None:
    assert httpx.get(api.url + path).status_code == 401
    assert httpx.get(api.url + path, headers={"X-API-Key": "nope"}).status_code == 401
    assert httpx.delete(api.url + "/v1/authors/twitter/someone").status_code == 401
    assert httpx.get(api.url + "/v1/stats", headers={"X-API-Key": "second-key"}).status_code == 200
    assert httpx.get(api.url + "/healthz").status_code == 200  # probes stay open


@pytest.mark.parametrize("param", ["key", "api_key"])
def test_a_key_in_the_url_is_not_accepted(api: Any, param: str) -> None:
    """A key in the URL ends up in access logs, browser history and Referer headers: only X-API-Key counts."""
    for path in ("/v1/stats", "/v1/watchlists"):
        assert httpx.get(api.url + path, params={param: KEY}).status_code == 401
        assert httpx.get(api.url + path, params={param: KEY}, headers=HEADERS).status_code == 200


def test_the_dashboard_keeps_its_key_out_of_the_url(api: Any) -> None:
    page = httpx.get(api.url + "/", params={"key": KEY})
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    assert "sessionStorage" in page.text and '"X-API-Key"' in page.text
    assert "location.search).get(" not in page.text  # the page reads no key from its address
    assert "history.replaceState" in page.text  # and drops one a stale bookmark still carries


def test_dashboard_and_openapi(api: Any) -> None:
    page = httpx.get(api.url + "/")
    assert page.status_code == 200 and "/v1/dashboard" in page.text
    doc = httpx.get(api.url + "/openapi.json").json()
    for path in ("/v1/mentions", "/v1/watchlists/{watchlist_id}/series", "/v1/share-of-voice",
                 "/v1/watchlists/{watchlist_id}/entities", "/v1/watchlists/{watchlist_id}/advocates",
                 "/v1/watchlists/{watchlist_id}/questions", "/v1/alerts", "/v1/authors/{source}/{author}"):
        assert path in doc["paths"], path
    assert "/v1/watchlists" in doc["paths"] and "/v1/watchlists/{watchlist_id}" in doc["paths"]  # the watchlist API
    assert doc["components"]["securitySchemes"]["ApiKeyHeader"]["name"] == "X-API-Key"


# --- mentions -------------------------------------------------------------------------------------


def test_mentions_pages_by_time_without_gaps_or_repeats(api: Any, seeded: dict[str, Any]) -> None:
    wl = seeded["watchlist"]
    seen, cursor, previous = [], None, None
    for _ in range(6):
        params: dict[str, Any] = {"watchlist": wl, "limit": 40}
        if cursor:
            params["cursor"] = cursor
        body = get(api, "/v1/mentions", **params).json()
        for m in body["mentions"]:
            assert wl in m["watchlist_ids"]
            key = (m["created_at"], m["mention_id"])
            assert previous is None or key < previous
            previous = key
            seen.append(m["mention_id"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 200


def test_mentions_by_reach_and_filters(api: Any) -> None:
    body = get(api, "/v1/mentions", sort="reach", limit=30).json()
    reach = [m["author_followers"] or 0 for m in body["mentions"]]
    assert reach == sorted(reach, reverse=True) and body["next_cursor"]
    nxt = get(api, "/v1/mentions", sort="reach", limit=30, cursor=body["next_cursor"]).json()
    assert (nxt["mentions"][0]["author_followers"] or 0) <= reach[-1]
    assert get(api, "/v1/mentions", sort="time", cursor=body["next_cursor"]).status_code == 422  # a reach cursor
    neg = get(api, "/v1/mentions", sentiment="negative", lang="en", source="twitter", limit=20).json()["mentions"]
    assert neg and all((m["sentiment"], m["lang"], m["source"]) == ("negative", "en", "twitter") for m in neg)
    unknown = get(api, "/v1/mentions", sentiment="unknown", limit=20).json()["mentions"]
    assert unknown and all(m["sentiment"] is None for m in unknown)
    risky = get(api, "/v1/mentions", risk="customer_question", limit=20).json()["mentions"]
    assert risky and all(any(r["tag"] == "customer_question" for r in m["risks"]) for m in risky)
    city = get(api, "/v1/mentions", entity="lONDON", limit=20).json()["mentions"]
    assert city and all(any(e["text"] == "London" for e in m["entities"]) for m in city)
    lo, hi = END - timedelta(hours=5), END - timedelta(hours=2)
    window = get(api, "/v1/mentions", **{"from": _iso(lo), "to": _iso(hi), "limit": 500}).json()["mentions"]
    assert window and all(_iso(lo) <= m["created_at"] < _iso(hi) for m in window)


def test_full_text_search_per_language(api: Any) -> None:
    en = get(api, "/v1/mentions", q="delays", lang="en", limit=50).json()["mentions"]  # stemmed: matches "delay"
    assert en and all("delay" in m["text"].lower() for m in en)
    es = get(api, "/v1/mentions", q="vuelos", limit=50).json()["mentions"]  # no language given: every configuration
    assert es and any(m["lang"] == "es" for m in es)
    phrase = get(api, "/v1/mentions", q='"refund app" -flight', limit=50).json()["mentions"]
    assert all("flight" not in m["text"].lower() for m in phrase)
    for hostile in ("'; DROP TABLE mentions; --", "a & | ! ( ) :* <->", "\\x00\\"):
        assert get(api, "/v1/mentions", q=hostile).status_code == 200
    assert get(api, "/v1/stats").json()["mentions"] > 0


@pytest.mark.parametrize("params,name", [
    ({"limit": 0}, "limit"), ({"limit": 501}, "limit"), ({"watchlist": "x'; drop table mentions;--"}, "watchlist"),
    ({"from": "2026-11-02T00:00:00"}, "from"), ({"from": "yesterday"}, "from"),
    ({"from": "2026-11-03T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "from"), ({"sort": "likes"}, "sort"),
    ({"sentiment": "angry"}, "sentiment"), ({"risk": "nope"}, "risk"), ({"lang": "english"}, "lang"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"format": "xml"}, "format"), ({"q": ""}, "q"),
])
def test_bad_mention_parameters_are_named(api: Any, params: dict[str, Any], name: str) -> None:
    r = get(api, "/v1/mentions", **params)
    assert r.status_code == 422, r.text
    assert [e["loc"][-1] for e in r.json()["errors"]] == [name]


def test_csv_export_is_spreadsheet_safe(api: Any) -> None:
    r = get(api, "/v1/mentions", limit=20, format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text), quoting=csv.QUOTE_NONNUMERIC))  # quoted = text, bare = number
    assert len(rows) == 20 and rows[0]["mention_id"]
    for row in rows:
        for value in row.values():
            assert not (isinstance(value, str) and value.lstrip(" ").startswith(("=", "+", "-", "@"))), value
    assert any(row["text"].startswith("'@") for row in rows)  # replies start with @handle: defused


# --- trends ---------------------------------------------------------------------------------------


def test_series_counts_every_bucket(api: Any, seeded: dict[str, Any]) -> None:
    wl = seeded["watchlist"]
    lo = (END - timedelta(days=3)).replace(minute=0, second=0)
    hourly = get(api, f"/v1/watchlists/{wl}/series", interval="1h", **{"from": _iso(lo), "to": _iso(END)}).json()
    points = hourly["points"]
    assert len(points) == len({p["start"] for p in points}) >= 72
    assert all(p["mentions"] == p["negative"] + p["neutral"] + p["positive"] + p["unknown"] for p in points)
    daily = get(api, f"/v1/watchlists/{wl}/series", interval="1d", **{"from": _iso(lo - timedelta(days=1)), "to": _iso(END)}).json()
    minutes = get(api, f"/v1/watchlists/{wl}/series", interval="15m", **{"from": daily["from"], "to": daily["to"]}).json()
    assert sum(p["mentions"] for p in daily["points"]) == sum(p["mentions"] for p in minutes["points"]) > 0
    by_source = get(api, f"/v1/watchlists/{wl}/series", interval="1d", source="twitter", **{"from": daily["from"], "to": daily["to"]}).json()
    assert 0 < sum(p["mentions"] for p in by_source["points"]) < sum(p["mentions"] for p in daily["points"])
    csv_body = get(api, f"/v1/watchlists/{wl}/series", interval="1d", format="csv").text
    assert csv_body.splitlines()[0].startswith('"start","mentions"')
    assert get(api, "/v1/watchlists/no-such-list/series").status_code == 404
    r = get(api, f"/v1/watchlists/{wl}/series", interval="1m", **{"from": "2020-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "interval"
    assert get(api, f"/v1/watchlists/{wl}/series", interval="2h").status_code == 422
    assert get(api, "/v1/watchlists/UPPER/series").status_code == 422


def test_share_of_voice(api: Any, seeded: dict[str, Any]) -> None:
    body = get(api, "/v1/share-of-voice", **{"from": _iso(END - timedelta(days=4)), "to": _iso(END)}).json()
    assert len(body["watchlists"]) == 5 and body["total"] > 0
    assert abs(sum(w["share"] for w in body["watchlists"]) - 1.0) < 1e-3
    assert body["watchlists"][0]["name"] != body["watchlists"][0]["watchlist_id"]  # names from the watchlists file
    two = get(api, "/v1/share-of-voice", watchlist=[seeded["watchlist"], "no-such"], **{"from": body["from"], "to": body["to"]}).json()
    assert [w["watchlist_id"] for w in two["watchlists"]] == [seeded["watchlist"]]
    assert two["watchlists"][0]["mentions"] == next(w for w in body["watchlists"] if w["watchlist_id"] == seeded["watchlist"])["mentions"]
    assert get(api, "/v1/share-of-voice", watchlist="Bad Id").json()["errors"][0]["loc"][-1] == "watchlist"
    assert "share" in get(api, "/v1/share-of-voice", format="csv").text.splitlines()[0]


def test_entities_advocates_questions(api: Any, seeded: dict[str, Any]) -> None:
    wl = seeded["watchlist"]
    period = {"from": _iso(END - timedelta(days=4)), "to": _iso(END)}
    ents = get(api, f"/v1/watchlists/{wl}/entities", **period).json()
    assert ents["entities"] and ents["hashtags"] and ents["authors"]
    assert all(e["type"] == "hashtag" for e in ents["hashtags"])
    counts = [e["mentions"] for e in ents["entities"]]
    assert counts == sorted(counts, reverse=True)
    located = get(api, f"/v1/watchlists/{wl}/entities", type="location", **period).json()["entities"]
    assert located and all(e["type"] == "location" for e in located)
    assert get(api, f"/v1/watchlists/{wl}/entities", type="planet").status_code == 422
    adv = get(api, f"/v1/watchlists/{wl}/advocates", min_positive=1, **period).json()["advocates"]
    assert adv and all(a["positive"] >= 1 and a["positive"] > a["negative"] for a in adv)
    assert [a["amplification"] for a in adv] == sorted((a["amplification"] for a in adv), reverse=True)
    assert all(a["author_type"] == "person" and a["best_posts"] for a in adv)
    assert all(not (a["author_handle"] or "").lower().endswith("help") for a in adv)  # the brand's own handles are not advocates
    exported = get(api, f"/v1/watchlists/{wl}/advocates", min_positive=1, format="csv", **period)
    assert [r["author_handle"] for r in csv.DictReader(io.StringIO(exported.text))] == [a["author_handle"] for a in adv]
    q = get(api, f"/v1/watchlists/{wl}/questions", limit=5, **period).json()
    stats = q["stats"]
    assert stats["asked"] == stats["answered"] + stats["open"] and stats["answered"] > 0
    assert 0 < stats["median_response_s"] <= stats["p90_response_s"]
    assert len(q["open_questions"]) == 5 and q["next_cursor"]
    waits = [o["waiting_s"] for o in q["open_questions"]]
    assert waits == sorted(waits, reverse=True)  # longest waiting first
    page2 = get(api, f"/v1/watchlists/{wl}/questions", limit=5, cursor=q["next_cursor"], **period).json()
    assert not {o["mention_id"] for o in page2["open_questions"]} & {o["mention_id"] for o in q["open_questions"]}
    assert get(api, f"/v1/watchlists/{wl}/advocates", min_positive=0).status_code == 422


def test_alerts_with_their_notifications(api: Any, seeded: dict[str, Any]) -> None:
    body = get(api, "/v1/alerts", limit=500).json()
    detected = [a["detected_at"] for a in body["alerts"]]
    assert detected == sorted(detected, reverse=True)
    mine = [a for a in body["alerts"] if a["alert_id"] == seeded["alert_id"] and a["status"] == "firing"]
    assert mine[0]["notifications"][0]["receiver"] == "oncall" and mine[0]["notifications"][0]["outcome"] == "delivered"
    firing = get(api, "/v1/alerts", status="firing", limit=3).json()
    assert all(a["status"] == "firing" for a in firing["alerts"]) and firing["next_cursor"]
    more = get(api, "/v1/alerts", status="firing", limit=3, cursor=firing["next_cursor"]).json()
    assert more["alerts"][0]["detected_at"] <= firing["alerts"][-1]["detected_at"]
    assert get(api, "/v1/alerts", severity="fatal").status_code == 422


# --- erasure --------------------------------------------------------------------------------------


def test_erasure_over_http(api: Any) -> None:
    victim = get(api, "/v1/mentions", source="reddit", limit=1).json()["mentions"][0]
    handle = victim["author_handle"]
    before = get(api, "/v1/stats").json()["mentions"]
    r = httpx.delete(f"{api.url}/v1/authors/reddit/@{handle.upper()}", headers=HEADERS, timeout=60)
    assert r.status_code == 200, r.text
    erased = r.json()["mentions_erased"]
    assert erased >= 1 and get(api, "/v1/stats").json()["mentions"] == before - erased
    assert not [m for m in get(api, "/v1/mentions", source="reddit", limit=500).json()["mentions"] if m["author_handle"] == handle]
    assert httpx.delete(f"{api.url}/v1/authors/Not A Source/x", headers=HEADERS).status_code == 422
    blank = httpx.delete(f"{api.url}/v1/authors/twitter/%20%40", headers=HEADERS)
    assert blank.status_code == 422 and blank.json()["errors"][0]["loc"] == ["path", "author"]


# --- hostile input -------------------------------------------------------------------------------


def _string_params(operation: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, name) of each string (or list of strings) parameter of an OpenAPI operation."""
    def is_text(schema: dict[str, Any]) -> bool:
        options = schema.get("anyOf", [schema])
        return any(o.get("type") == "string" or o.get("items", {}).get("type") == "string" for o in options)

    return [(p["in"], p["name"]) for p in operation.get("parameters", [])
            if p["in"] in ("path", "query") and is_text(p.get("schema", {}))]


def test_nul_in_any_string_parameter_is_a_422_never_a_5xx(api: Any, seeded: dict[str, Any]) -> None:
    """Every GET endpoint of the OpenAPI document, each string parameter in turn given a NUL."""
    doc = httpx.get(api.url + "/openapi.json").json()
    tried = []
    for path, item in doc["paths"].items():
        if "get" not in item:
            continue
        params = _string_params(item["get"])
        filled = {n: seeded["watchlist"] if n == "watchlist_id" else "twitter" for where, n in params if where == "path"}
        for where, name in params:
            for hostile in ("a\x00b", "\x00"):
                if where == "path":
                    url = path.format(**{**filled, name: hostile.replace("\x00", "%00")})
                    r = httpx.get(api.url + url, headers=HEADERS, timeout=30)
                else:
                    r = httpx.get(api.url + path.format(**filled), params={name: hostile}, headers=HEADERS, timeout=30)
                assert r.status_code == 422, (path, name, r.status_code, r.text[:300])
                tried.append((path, name))
    assert len({p for p, _ in tried}) >= 6 and ("/v1/mentions", "q") in tried and ("/v1/mentions", "entity") in tried


def test_text_postgresql_cannot_store_is_a_422(api: Any) -> None:
    for body in (b'{"query": "acme", "text": "a\\u0000b"}', b'{"query": "acme", "text": "\\ud800"}'):
        r = httpx.post(api.url + "/v1/watchlists/_test", content=body, headers={**HEADERS, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body"], r.text
    for raw in ("a%ED%A0%80", "%FF%FE"):  # not UTF-8 (a surrogate's bytes): decoded as U+FFFD
        assert httpx.get(f"{api.url}/v1/mentions?q={raw}", headers=HEADERS).status_code == 200


def test_bodies_are_bounded(api: Any) -> None:
    """EARFUL_HTTP_MAX_BODY_BYTES (1 MiB by default): by Content-Length, or counted as the bytes arrive."""
    big = {"query": "acme", "text": "x" * (2 * 1024 * 1024)}
    r = httpx.post(api.url + "/v1/watchlists/_test", json=big, headers=HEADERS, timeout=30)
    assert r.status_code == 413 and "1048576" in r.json()["detail"], r.text

    def chunks():
        yield b'{"query": "acme", "text": "'
        for _ in range(2048):
            yield b"x" * 1024
        yield b'"}'

    r = httpx.post(api.url + "/v1/watchlists/_test", content=chunks(), timeout=30,
                   headers={**HEADERS, "Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    fine = httpx.post(api.url + "/v1/watchlists/_test", json={"query": "acme", "text": "Acme air"}, headers=HEADERS)
    assert fine.status_code == 200 and fine.json()["matches"]


@pytest.fixture(scope="module")
def keyless_api(base_env: dict[str, str], pg_url: str, seeded: dict[str, Any], api: Any,
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second storage process on the same data, without API keys (a laptop's local stack)."""
    port = free_port()
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_WATCHLISTS_DIR": str(seeded["watchlists_file"]),
           "EARFUL_HTTP_ALLOWED_HOSTS": "dashboard.internal"}
    svc = ServiceProcess("storage", port, service_env(env, "storage", port), tmp_path_factory.mktemp("open") / "storage.log")
    svc.start()
    svc.wait_ready(60)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def test_without_keys_only_allowed_hosts_are_answered(keyless_api: Any) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reads the API with
    Host: evil.example. Without API keys, only loopback names and EARFUL_HTTP_ALLOWED_HOSTS are answered."""
    url = keyless_api.url
    for path in ("/v1/stats", "/v1/watchlists", "/", "/openapi.json"):
        refused = httpx.get(url + path, headers={"Host": "evil.example"})
        assert refused.status_code == 421, (path, refused.text)
    assert httpx.get(url + "/healthz", headers={"Host": "10.1.2.3:8083"}).status_code == 200  # probes
    for host in ("localhost", f"127.0.0.1:{keyless_api.port}", "dashboard.internal"):
        assert httpx.get(url + "/v1/stats", headers={"Host": host}).status_code == 200, host


# --- schemathesis ---------------------------------------------------------------------------------


def test_openapi_contract(api: Any) -> None:
    """Schemathesis generates requests for every operation of /openapi.json; each answer must be one
    the document describes and never a 5xx. A generated period may be refused (e.g. 'from' after
    'to', too many points) or name a watchlist that does not exist: both are documented 4xx answers,
    so the check that every schema-valid request is accepted is left out. Derandomized, so a run
    is repeatable; it found a year-1 `to` that overflowed and a blank author that broke the error
    shape, both fixed."""
    from hypothesis import given
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        @given(case=operation.as_strategy())
        @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
        def check(case: Any) -> None:
            case.call_and_validate(headers=HEADERS, timeout=30, excluded_checks=[positive_data_acceptance])

        check()
