"""The query API and dashboard served by the storage service (OpenAPI at /openapi.json, docs at /docs).

Every listing accepts ``?format=csv`` (spreadsheet-safe, see export.py). Parameters are validated
before any query runs: a bad one gets a 422 whose ``detail[].loc`` names it, an unknown watchlist
a 404. SQL text is built only from fixed fragments chosen by which filters are present; every
value travels as a bind parameter, so no input can reach SQL as text. Aggregates read the rollup
tables (see migrations 003), never a scan of the mentions.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from earful.core.errors import ValidationError
from earful.core.health import Health
from earful.core.http import add_ops_routes, api_key_guard
from earful.storage.erasure import erase_author
from earful.storage.export import csv_response
from earful.watchlists import WatchlistSet

STATIC = Path(__file__).parent / "static"
WATCHLIST_PATTERN = r"^[a-z0-9()][a-z0-9()-]{0,63}$"
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
LANG_PATTERN = r"^[a-z]{2,3}$"
RISK_TAGS = ("reputational", "regulatory", "legal_privacy", "operational", "customer_question", "complaint",
             "purchase_intent")
ENTITY_TYPES = ("person", "location", "corporation", "product", "creative-work", "group", "hashtag", "mention",
                "cashtag", "url")
# Every text-search configuration of migration 002's earful_text_search_config; a query without a
# language filter is stemmed in each of them and the alternatives OR-ed.
TEXT_SEARCH_CONFIGS = (
    "arabic", "armenian", "basque", "catalan", "danish", "dutch", "english", "finnish", "french", "german", "greek",
    "hindi", "hungarian", "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian", "portuguese",
    "romanian", "russian", "serbian", "spanish", "swedish", "tamil", "turkish", "yiddish", "simple",
)
INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200,
             "1d": 86400, "7d": 604800}
MAX_POINTS = 5000
_ORIGIN = datetime(2000, 1, 3, tzinfo=timezone.utc)  # a Monday: weekly buckets start on Mondays
_MINUTE, _HOUR, _DAY = 60, 3600, 86400

MENTION_FIELDS = (
    "mention_id", "source", "source_id", "url", "author_id", "author_handle", "author_name", "author_followers",
    "text", "title", "country", "connector", "lang", "lang_confidence", "declared_lang", "created_at", "received_at",
    "in_reply_to", "reposted_from", "likes", "reposts", "replies", "engagement_observed_at", "sentiment",
    "sentiment_score", "sentiment_reason", "watchlist_ids", "entities", "risks", "matches",
)
_JSON_FIELDS = frozenset({"entities", "risks", "matches", "models", "labels", "annotations", "explanation",
                          "notifications", "sentiment_probabilities"})
CSV_DESCRIPTION = "`json` (default) or `csv` (a spreadsheet-safe export of the listing)."
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong X-API-Key."},
    503: {"description": "The database is unavailable, or the query took longer than EARFUL_API_QUERY_TIMEOUT_S."},
}
_CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "The listing (JSON, or CSV with ?format=csv)."}, **_ERRORS}
_WATCHLIST_RESPONSE: dict[int | str, dict[str, Any]] = {
    **_CSV_RESPONSE, 404: {"description": "No watchlist with this id is configured or has data."}}

Format = Literal["json", "csv"]


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _jsonable(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = _iso(value)
        elif key in _JSON_FIELDS and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
            value = float(value) if hasattr(value, "__float__") else str(value)
        out[key] = value
    return out


def bad_param(where: str, name: str, message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the parameter."""
    return RequestValidationError([{"loc": (where, name), "msg": message, "type": "value_error", "input": None}])


EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise bad_param("query", name, "needs a time zone, e.g. 2026-11-02T09:00:00Z")
    if not EARLIEST <= value < LATEST:
        raise bad_param("query", name, f"must be between {EARLIEST.year} and {LATEST.year}")
    return value


def _floor(ts: datetime, step: int) -> datetime:
    seconds = (ts - _ORIGIN).total_seconds()
    return _ORIGIN + timedelta(seconds=(seconds // step) * step)


def _ceil(ts: datetime, step: int) -> datetime:
    floor = _floor(ts, step)
    return floor if floor == ts else floor + timedelta(seconds=step)


def window(from_: datetime | None, to: datetime | None, default: timedelta, align: int = _MINUTE,
           now: datetime | None = None) -> tuple[datetime, datetime]:
    """[from, to) aligned outwards to `align` seconds; to defaults to now, from to `default` before to."""
    to = _aware("to", to) or (now or datetime.now(timezone.utc))
    from_ = _aware("from", from_) or max(EARLIEST, to - default)
    if from_ >= to:
        raise bad_param("query", "from", "must be before 'to'")
    return _floor(from_, align), _ceil(to, align)


def rollup_parts(lo: datetime, hi: datetime, family: str = "mention_rollups") -> list[tuple[str, datetime, datetime]]:
    """Cover the minute-aligned [lo, hi) with the coarsest rollup tables of `family`: whole days from
    the day table, whole hours of the ragged ends from the hour table, the remaining minutes from the minute one."""
    parts: list[tuple[str, datetime, datetime]] = []

    def split(a: datetime, b: datetime, step: int, table: str) -> list[tuple[datetime, datetime]]:
        c_lo, c_hi = _ceil(a, step), _floor(b, step)
        if c_lo < c_hi:
            parts.append((table, c_lo, c_hi))
            return [(a, c_lo), (c_hi, b)]
        return [(a, b)]

    for a, b in split(lo, hi, _DAY, f"{family}_day"):
        for x, y in split(a, b, _HOUR, f"{family}_hour") if a < b else []:
            if x < y:
                parts.append((f"{family}_minute", x, y))
    return parts


class Params:
    """Positional bind parameters for a query being assembled from fixed fragments."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def tsquery_sql(q_param: str, lang_param: str | None) -> str:
    """The tsquery of a search: `q` parsed in the filter language's configuration; without a
    language filter the parameter already holds the query of every configuration (any_language_tsquery)."""
    if lang_param is not None:
        return f"websearch_to_tsquery(earful_text_search_config({lang_param}), {q_param})"
    return f"{q_param}::tsquery"


async def any_language_tsquery(pool: asyncpg.Pool, q: str) -> str:
    """`q` parsed in every text-search configuration, the distinct results OR-ed. Most configurations
    give the same lexemes, so this is usually 2-3 alternatives instead of 29, which the planner can
    estimate and the executor checks quickly. '' when no configuration finds a word in `q`."""
    alternatives = await pool.fetchval(
        "SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{}') FROM ("
        " SELECT websearch_to_tsquery(c::regconfig, $1)::text AS t FROM unnest($2::text[]) AS c) x WHERE t <> ''",
        q, [f"pg_catalog.{c}" for c in TEXT_SEARCH_CONFIGS])
    return " | ".join(f"( {a} )" for a in alternatives)


def encode_cursor(*values: Any) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[str]) -> list[Any]:
    """The keyset values of a `next_cursor`; a cursor that is not one of ours is a 422 naming it."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for kind, value in zip(kinds, raw):
            if kind == "time":
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError("naive time")
                out.append(parsed)
            elif kind == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("not an integer")
                out.append(value)
            elif kind == "uuid":
                out.append(uuid.UUID(value))
            elif kind == "str":
                if not isinstance(value, str):
                    raise ValueError("not a string")
                out.append(value)
            elif kind == "const":
                out.append(value)
        return out
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_param("query", "cursor", "is not a cursor returned by this listing (use next_cursor as given)") from exc


_FIRST_CHUNK = 200


async def _walk(pool: asyncpg.Pool, candidates_sql: str, candidate_args: Sequence[Any],
                measure: Callable[[list[asyncpg.Record]], Any], stop: Callable[[list[asyncpg.Record]], bool]) -> None:
    """Walk candidates in the order of `candidates_sql` in growing chunks, `measure` each chunk,
    until `stop(chunk)` says the answer cannot change any more (see migration 006)."""
    offset, chunk = 0, _FIRST_CHUNK
    while True:
        rows = await pool.fetch(f"{candidates_sql} OFFSET {offset} LIMIT {chunk}", *candidate_args)
        if not rows:
            return
        await measure(rows)
        if len(rows) < chunk or stop(rows):
            return
        offset, chunk = offset + chunk, min(chunk * 2, 10_000)


async def top_entities(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, limit: int,
                       type_condition: str, type_arg: str | None) -> list[dict[str, Any]]:
    """The `limit` entities with the most mentions in [lo, hi): candidates by all-time count, each
    summed over the period, until the last place beats every remaining candidate's all-time count."""
    best: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        rows = await pool.fetch(
            "SELECT r.entity_type AS type, min(r.entity_text) AS text, sum(r.mentions)::bigint AS mentions, r.entity_key"
            " FROM unnest($2::text[], $3::text[]) AS c(t, k) JOIN entity_rollups_day r ON r.watchlist_id = $1"
            " AND r.entity_type = c.t AND r.entity_key = c.k AND r.bucket >= $4 AND r.bucket < $5 GROUP BY 1, 4",
            watchlist_id, [c["entity_type"] for c in cands], [c["entity_key"] for c in cands], lo, hi)
        best.extend(dict(r) for r in rows)
        best.sort(key=lambda r: (-r["mentions"], r["entity_key"]))
        del best[limit:]

    await _walk(pool, "SELECT entity_type, entity_key, mentions FROM entity_totals WHERE watchlist_id = $1 AND "
                + type_condition + " ORDER BY mentions DESC, entity_type, entity_key", (watchlist_id, type_arg),
                measure, lambda cands: len(best) >= limit and best[-1]["mentions"] >= cands[-1]["mentions"])
    return [{k: v for k, v in r.items() if k != "entity_key"} for r in best]


_AUTHOR_SUMS = (
    "SELECT r.source, r.author_key, max(r.author_handle) AS author_handle, max(r.author_name) AS author_name,"
    " sum(r.mentions)::bigint AS mentions, sum(r.positive)::bigint AS positive, sum(r.negative)::bigint AS negative"
    " FROM unnest($2::text[], $3::text[]) AS c(s, k) JOIN author_rollups_day r ON r.watchlist_id = $1"
    " AND r.source = c.s AND r.author_key = c.k AND r.bucket >= $4 AND r.bucket < $5 GROUP BY 1, 2")


async def top_authors(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, limit: int) -> list[dict[str, Any]]:
    """The `limit` authors with the most mentions in [lo, hi) (same walk as top_entities)."""
    best: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        reach = {(c["source"], c["author_key"]): c["reach"] for c in cands}
        rows = await pool.fetch(_AUTHOR_SUMS, watchlist_id, [c["source"] for c in cands],
                                [c["author_key"] for c in cands], lo, hi)
        best.extend({**dict(r), "reach": reach[(r["source"], r["author_key"])]} for r in rows)
        best.sort(key=lambda r: (-r["mentions"], -r["reach"], r["source"], r["author_key"]))
        del best[limit:]

    await _walk(pool, "SELECT source, author_key, mentions, reach FROM author_totals WHERE watchlist_id = $1"
                " ORDER BY mentions DESC, source, author_key", (watchlist_id,),
                measure, lambda cands: len(best) >= limit and best[-1]["mentions"] >= cands[-1]["mentions"])
    return [{k: r[k] for k in ("source", "author_handle", "author_name", "mentions", "reach")} for r in best]


async def top_advocates(pool: asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime, limit: int,
                        min_positive: int, own_handles: list[str]) -> list[dict[str, Any]]:
    """Authors with at least `min_positive` positive mentions in [lo, hi), more positive than negative,
    largest reach first: candidates in reach order (all-time positive count at least `min_positive`),
    kept when their period qualifies, until `limit` are found."""
    found: list[dict[str, Any]] = []

    async def measure(cands: list[asyncpg.Record]) -> None:
        reach = {(c["source"], c["author_key"]): c["reach"] for c in cands}
        rows = await pool.fetch(_AUTHOR_SUMS, watchlist_id, [c["source"] for c in cands],
                                [c["author_key"] for c in cands], lo, hi)
        order = {key: i for i, key in enumerate(reach)}
        for r in sorted(rows, key=lambda r: order[(r["source"], r["author_key"])]):
            if r["positive"] >= min_positive and r["positive"] > r["negative"] and len(found) < limit:
                found.append({"source": r["source"], "author_handle": r["author_handle"], "author_name": r["author_name"],
                              "positive": r["positive"], "negative": r["negative"], "mentions": r["mentions"],
                              "reach": reach[(r["source"], r["author_key"])]})

    await _walk(pool, "SELECT source, author_key, reach FROM author_totals WHERE watchlist_id = $1 AND positive > 0"
                " AND positive >= $2 AND author_key <> ALL($3::text[]) ORDER BY reach DESC, source, author_key",
                (watchlist_id, min_positive, own_handles), measure, lambda cands: len(found) >= limit)
    return found


def build_api(pool: asyncpg.Pool, health: Health, api_keys: frozenset[str],
              watchlists: Callable[[], WatchlistSet] = lambda: WatchlistSet([])) -> FastAPI:
    """The FastAPI app: query endpoints, erasure, ops routes and the dashboard."""
    app = FastAPI(
        title="Earful query API", version="2",
        description="Mentions, trends, share of voice, entities, advocates, customer questions and alerts stored by "
                    "Earful. Send the API key in `X-API-Key`. Times are RFC 3339 with a time zone; buckets are UTC. "
                    "Every listing can be exported with `?format=csv`.",
    )
    add_ops_routes(app, health)
    require_key = api_key_guard(api_keys)
    notification_log_seen = False

    @app.exception_handler(ValidationError)
    async def _validation_error(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": [], "msg": str(exc), "type": "value_error"}]}, status_code=422)

    @app.exception_handler(asyncpg.QueryCanceledError)
    async def _timeout(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the query took too long; narrow the time range or the filters"}, status_code=503)

    @app.exception_handler(asyncpg.PostgresConnectionError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(OSError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503,
                            headers={"Retry-After": "5"})

    auth = [Depends(require_key)]

    async def known_watchlist(watchlist_id: str) -> None:
        if watchlist_id in watchlists().watchlists:
            return
        if await pool.fetchval("SELECT 1 FROM mention_rollups_day WHERE watchlist_id = $1 LIMIT 1", watchlist_id):
            return
        raise HTTPException(404, detail=f"watchlist_id: no watchlist {watchlist_id!r} is configured or has data")

    def watchlist_path() -> Any:
        return PathParam(..., pattern=WATCHLIST_PATTERN, description="Watchlist id.")

    def from_query(description: str = "Start of the period (inclusive, RFC 3339 with a time zone).") -> Any:
        return Query(None, alias="from", description=description)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return (STATIC / "dashboard.html").read_text(encoding="utf-8")

    # ---------------------------------------------------------------------------------- mentions

    @app.get("/v1/mentions", dependencies=auth, tags=["mentions"], responses=_CSV_RESPONSE,
             summary="Search mentions: filters, full-text search, sorted by time or reach, keyset pagination.")
    async def mentions(
        watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN, description="Only mentions of this watchlist."),
        from_: datetime | None = from_query(),
        to: datetime | None = Query(None, description="End of the period (exclusive)."),
        lang: str | None = Query(None, pattern=LANG_PATTERN, description="Detected language (ISO 639-1); also picks the full-text configuration."),
        source: str | None = Query(None, pattern=SOURCE_PATTERN, description="Source, e.g. twitter."),
        sentiment: Literal["negative", "neutral", "positive", "unknown"] | None = Query(None),
        risk: Literal[RISK_TAGS] | None = Query(None, description="Risk or intent tag."),  # type: ignore[valid-type]
        entity: str | None = Query(None, min_length=1, max_length=200, description="Entity text (case-insensitive), e.g. #AcmeAir or Zürich."),
        q: str | None = Query(None, min_length=1, max_length=500, description="Full-text query (web search syntax: words, \"phrases\", OR, -word)."),
        sort: Literal["time", "reach"] = Query("time", description="Newest first, or largest author reach first."),
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = Query(None, max_length=500, description="next_cursor of the previous page."),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        p = Params()
        where: list[str] = []
        facets = [f"w:{watchlist}"] if watchlist else []
        if entity:
            facets.append(f"e:{entity.strip().lower()}")
        if risk:
            facets.append(f"r:{risk}")
        if facets:
            where.append(f"m.facets @> {p(facets)}::text[]")
        from_, to = _aware("from", from_), _aware("to", to)
        if from_ and to and from_ >= to:
            raise bad_param("query", "from", "must be before 'to'")
        if from_:
            where.append(f"m.created_at >= {p(from_)}")
        if to:
            where.append(f"m.created_at < {p(to)}")
        lang_param = None
        if lang:
            lang_param = p(lang)
            where.append(f"m.lang = {lang_param}")
        if source:
            where.append(f"m.source = {p(source)}")
        if sentiment == "unknown":
            where.append("m.sentiment IS NULL")
        elif sentiment:
            where.append(f"m.sentiment = {p(sentiment)}")
        if q:
            query = q if lang_param else await any_language_tsquery(pool, q)
            if not query:
                return csv_response([], MENTION_FIELDS, "mentions") if format == "csv" else {"mentions": [], "next_cursor": None}
            where.append(f"m.tsv @@ {tsquery_sql(p(query), lang_param)}")
        if sort == "time":
            key_sql, kinds = "m.created_at", ["const", "time", "uuid"]
        else:
            key_sql, kinds = "coalesce(m.author_followers, 0)", ["const", "int", "uuid"]
        if cursor:
            c_sort, c_key, c_id = decode_cursor(cursor, kinds)
            if c_sort != sort:
                raise bad_param("query", "cursor", f"was made for sort={c_sort}, not sort={sort}")
            where.append(f"({key_sql}, m.mention_id) < ({p(c_key)}, {p(c_id)})")
        sql = (f"SELECT {', '.join('m.' + f for f in MENTION_FIELDS)}, {key_sql} AS sort_key FROM mentions m"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {key_sql} DESC, m.mention_id DESC LIMIT {p(limit + 1)}")
        rows = await pool.fetch(sql, *p.values)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(sort, page[-1]["sort_key"], page[-1]["mention_id"]) if more else None
        items = [{k: v for k, v in _jsonable(r).items() if k != "sort_key"} for r in page]
        if format == "csv":
            return csv_response(items, MENTION_FIELDS, "mentions")
        return {"mentions": items, "next_cursor": next_cursor}

    # ---------------------------------------------------------------------------------- series

    @app.get("/v1/watchlists/{watchlist_id}/series", dependencies=auth, tags=["trends"], responses=_WATCHLIST_RESPONSE,
             summary="Volume and sentiment of a watchlist per interval (every bucket, zeros included).")
    async def series(
        watchlist_id: str = watchlist_path(),
        from_: datetime | None = from_query("Start (inclusive; rounded down to the interval). Default: 1 day before `to` (30 days for 1d and 7d intervals)."),
        to: datetime | None = Query(None, description="End (exclusive; rounded up to the interval). Default: now."),
        interval: Literal[tuple(INTERVALS)] = Query("1h", description="Bucket length."),  # type: ignore[valid-type]
        source: str | None = Query(None, pattern=SOURCE_PATTERN),
        lang: str | None = Query(None, pattern=LANG_PATTERN),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        step = INTERVALS[interval]
        default = timedelta(days=30) if step >= _DAY else timedelta(days=1)
        lo, hi = window(from_, to, default, align=step)
        if (hi - lo).total_seconds() / step > MAX_POINTS:
            raise bad_param("query", "interval", f"gives more than {MAX_POINTS} points for this period; use a longer interval or a shorter period")
        await known_watchlist(watchlist_id)
        table = "mention_rollups_minute" if step < _HOUR else "mention_rollups_hour" if step < _DAY else "mention_rollups_day"
        p = Params()
        step_p, lo_p, hi_p = p(timedelta(seconds=step)), p(lo), p(hi)
        filters = [f"watchlist_id = {p(watchlist_id)}", f"bucket >= {lo_p}", f"bucket < {hi_p}"]
        if source:
            filters.append(f"source = {p(source)}")
        if lang:
            filters.append(f"lang = {p(lang)}")
        sql = f"""
            WITH b AS (SELECT generate_series({lo_p}::timestamptz, {hi_p}::timestamptz - {step_p}::interval, {step_p}::interval) AS start),
            r AS (SELECT date_bin({step_p}::interval, bucket, {p(_ORIGIN)}::timestamptz) AS start, sentiment, sum(mentions) AS n
                  FROM {table} WHERE {' AND '.join(filters)} GROUP BY 1, 2)
            SELECT b.start, coalesce(sum(r.n), 0)::bigint AS mentions,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'negative'), 0)::bigint AS negative,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'neutral'), 0)::bigint AS neutral,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'positive'), 0)::bigint AS positive,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'unknown'), 0)::bigint AS unknown
            FROM b LEFT JOIN r USING (start) GROUP BY b.start ORDER BY b.start"""
        points = []
        for r in await pool.fetch(sql, *p.values):
            point = _jsonable(r)
            polar = point["positive"] + point["negative"]
            point["net_sentiment"] = round((point["positive"] - point["negative"]) / polar, 4) if polar else None
            points.append(point)
        if format == "csv":
            return csv_response(points, ("start", "mentions", "negative", "neutral", "positive", "unknown", "net_sentiment"),
                                f"series-{watchlist_id}")
        return {"watchlist_id": watchlist_id, "interval": interval, "from": _iso(lo), "to": _iso(hi), "points": points}

    # ---------------------------------------------------------------------------------- share of voice

    @app.get("/v1/share-of-voice", dependencies=auth, tags=["trends"], responses=_CSV_RESPONSE,
             summary="Watchlists compared over a period: mentions, share and sentiment of each.")
    async def share_of_voice(
        watchlist: list[str] | None = Query(None, description="Compare only these watchlists (repeat the parameter). Default: every watchlist with mentions."),
        from_: datetime | None = from_query("Start (inclusive; rounded down to the minute). Default: 30 days before `to`."),
        to: datetime | None = Query(None, description="End (exclusive; rounded up to the minute). Default: now."),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        for w in watchlist or ():
            if not re.match(WATCHLIST_PATTERN, w):
                raise bad_param("query", "watchlist", f"{w[:80]!r} is not a watchlist id")
        if watchlist and len(watchlist) > 200:
            raise bad_param("query", "watchlist", "at most 200 watchlists")
        lo, hi = window(from_, to, timedelta(days=30))
        p = Params()
        only = f" AND watchlist_id = ANY({p(sorted(set(watchlist)))}::text[])" if watchlist else ""
        union = " UNION ALL ".join(
            f"SELECT watchlist_id, sentiment, mentions FROM {table} WHERE bucket >= {p(a)} AND bucket < {p(b)}"
            f" AND watchlist_id <> '(none)'{only}"
            for table, a, b in rollup_parts(lo, hi, "watchlist_rollups"))
        rows = await pool.fetch(
            f"SELECT watchlist_id, sum(mentions)::bigint AS mentions,"
            " coalesce(sum(mentions) FILTER (WHERE sentiment = 'negative'), 0)::bigint AS negative,"
            " coalesce(sum(mentions) FILTER (WHERE sentiment = 'neutral'), 0)::bigint AS neutral,"
            " coalesce(sum(mentions) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS positive,"
            " coalesce(sum(mentions) FILTER (WHERE sentiment = 'unknown'), 0)::bigint AS unknown"
            f" FROM ({union}) x GROUP BY 1 ORDER BY 2 DESC, 1", *p.values) if union else []
        total = sum(r["mentions"] for r in rows)
        names = watchlists().watchlists
        items = []
        for r in rows:
            item = dict(r)
            item["name"] = names[r["watchlist_id"]].name if r["watchlist_id"] in names else r["watchlist_id"]
            item["share"] = round(r["mentions"] / total, 6) if total else 0.0
            items.append(item)
        if format == "csv":
            return csv_response(items, ("watchlist_id", "name", "mentions", "share", "negative", "neutral", "positive", "unknown"),
                                "share-of-voice")
        return {"from": _iso(lo), "to": _iso(hi), "total": total, "watchlists": items}

    # ---------------------------------------------------------------------------------- entities

    @app.get("/v1/watchlists/{watchlist_id}/entities", dependencies=auth, tags=["trends"], responses=_WATCHLIST_RESPONSE,
             summary="Top entities, hashtags and authors of a watchlist over a period (whole UTC days).")
    async def entities(
        watchlist_id: str = watchlist_path(),
        from_: datetime | None = from_query("Start (rounded down to the UTC day). Default: 7 days before `to`."),
        to: datetime | None = Query(None, description="End (rounded up to the UTC day). Default: now."),
        type: Literal[ENTITY_TYPES] | None = Query(None, description="Only entities of this type in `entities`."),  # type: ignore[valid-type]
        limit: int = Query(20, ge=1, le=200, description="Items per list."),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        lo, hi = window(from_, to, timedelta(days=7), align=_DAY)
        await known_watchlist(watchlist_id)
        if type:
            ents = await top_entities(pool, watchlist_id, lo, hi, limit, "entity_type = $2", type)
        else:
            ents = await top_entities(pool, watchlist_id, lo, hi, limit, "entity_type NOT IN ('hashtag', 'url') AND $2::text IS NULL", None)
        tags = await top_entities(pool, watchlist_id, lo, hi, limit, "entity_type = $2", "hashtag")
        authors = await top_authors(pool, watchlist_id, lo, hi, limit)
        out = {"entities": ents, "hashtags": tags, "authors": authors}
        if format == "csv":
            rows = [{"list": name, **item} for name, items in out.items() for item in items]
            return csv_response(rows, ("list", "type", "text", "source", "author_handle", "author_name", "mentions", "reach"),
                                f"entities-{watchlist_id}")
        return {"watchlist_id": watchlist_id, "from": _iso(lo), "to": _iso(hi), **out}

    # ---------------------------------------------------------------------------------- advocates

    @app.get("/v1/watchlists/{watchlist_id}/advocates", dependencies=auth, tags=["trends"], responses=_WATCHLIST_RESPONSE,
             summary="Authors who repeatedly post positively about a watchlist, largest reach first (whole UTC days).")
    async def advocates(
        watchlist_id: str = watchlist_path(),
        from_: datetime | None = from_query("Start (rounded down to the UTC day). Default: 30 days before `to`."),
        to: datetime | None = Query(None, description="End (rounded up to the UTC day). Default: now."),
        min_positive: int = Query(2, ge=1, le=1000, description="Least positive mentions in the period (and more positive than negative ones)."),
        limit: int = Query(20, ge=1, le=200),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        lo, hi = window(from_, to, timedelta(days=30), align=_DAY)
        await known_watchlist(watchlist_id)
        w = watchlists().watchlists.get(watchlist_id)
        own = sorted({h.lower() for h in w.handles}) if w else []
        rows = await top_advocates(pool, watchlist_id, lo, hi, limit, min_positive, own)
        items = rows
        if format == "csv":
            return csv_response(items, ("source", "author_handle", "author_name", "positive", "negative", "mentions", "reach"),
                                f"advocates-{watchlist_id}")
        return {"watchlist_id": watchlist_id, "from": _iso(lo), "to": _iso(hi), "advocates": items}

    # ---------------------------------------------------------------------------------- questions

    @app.get("/v1/watchlists/{watchlist_id}/questions", dependencies=auth, tags=["trends"], responses=_WATCHLIST_RESPONSE,
             summary="Open customer questions (longest waiting first) and time to first reply from a brand handle.")
    async def questions(
        watchlist_id: str = watchlist_path(),
        from_: datetime | None = from_query("Questions asked from (inclusive). Default: 7 days before `to`."),
        to: datetime | None = Query(None, description="Questions asked before (exclusive). Default: now."),
        limit: int = Query(50, ge=1, le=500, description="Open questions per page."),
        cursor: str | None = Query(None, max_length=500, description="next_cursor of the previous page."),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        lo, hi = window(from_, to, timedelta(days=7))
        await known_watchlist(watchlist_id)
        w = watchlists().watchlists.get(watchlist_id)
        sla = w.response_sla_s if w else None
        stats = await pool.fetchrow(
            "SELECT count(*) AS asked, count(first_reply_at) AS answered,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM greatest(first_reply_at - created_at, interval '0')))"
            "   FILTER (WHERE first_reply_at IS NOT NULL) AS median_response_s,"
            " percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM greatest(first_reply_at - created_at, interval '0')))"
            "   FILTER (WHERE first_reply_at IS NOT NULL) AS p90_response_s,"
            " count(*) FILTER (WHERE $4::bigint IS NOT NULL AND coalesce(first_reply_at, now()) - created_at"
            "   > make_interval(secs => $4::bigint)) AS sla_breached"
            " FROM questions WHERE watchlist_id = $1 AND created_at >= $2 AND created_at < $3",
            watchlist_id, lo, hi, sla)
        p = Params()
        where = [f"q.watchlist_id = {p(watchlist_id)}", "q.first_reply_at IS NULL",
                 f"q.created_at >= {p(lo)}", f"q.created_at < {p(hi)}"]
        if cursor:
            c_at, c_id = decode_cursor(cursor, ["time", "uuid"])
            where.append(f"(q.created_at, q.mention_id) > ({p(c_at)}, {p(c_id)})")
        rows = await pool.fetch(
            f"SELECT q.created_at, q.mention_id, m.source, m.source_id, m.url, m.author_handle, m.author_followers, m.lang,"
            " m.text, extract(epoch FROM now() - q.created_at)::bigint AS waiting_s"
            " FROM questions q JOIN mentions m ON m.source = q.source AND m.source_id = q.source_id AND m.created_at = q.created_at"
            f" WHERE {' AND '.join(where)} AND m.created_at >= {p(lo)} AND m.created_at < {p(hi)}"  # prunes partitions
            f" ORDER BY q.created_at, q.mention_id LIMIT {p(limit + 1)}", *p.values)
        page, more = rows[:limit], len(rows) > limit
        open_items = [_jsonable(r) for r in page]
        next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["mention_id"]) if more else None
        summary = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in dict(stats).items()}
        summary["open"] = summary["asked"] - summary["answered"]
        summary["sla_s"] = sla
        if sla is None:
            summary["sla_breached"] = None
        if format == "csv":
            return csv_response(open_items, ("created_at", "waiting_s", "mention_id", "source", "source_id", "url",
                                             "author_handle", "author_followers", "lang", "text"), f"questions-{watchlist_id}")
        return {"watchlist_id": watchlist_id, "from": _iso(lo), "to": _iso(hi), "stats": summary,
                "open_questions": open_items, "next_cursor": next_cursor}

    # ---------------------------------------------------------------------------------- alerts

    @app.get("/v1/alerts", dependencies=auth, tags=["alerts"], responses=_CSV_RESPONSE,
             summary="Alert state changes, newest first, each with its notifications.")
    async def alerts(
        watchlist: str | None = Query(None, pattern=WATCHLIST_PATTERN),
        status: Literal["firing", "resolved"] | None = Query(None),
        rule: str | None = Query(None, pattern=r"^[a-z_]{1,64}$"),
        severity: Literal["info", "warning", "critical"] | None = Query(None),
        from_: datetime | None = from_query("Detected from (inclusive)."),
        to: datetime | None = Query(None, description="Detected before (exclusive)."),
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = Query(None, max_length=500, description="next_cursor of the previous page."),
        format: Format = Query("json", description=CSV_DESCRIPTION),
    ) -> Any:
        nonlocal notification_log_seen
        from_, to = _aware("from", from_), _aware("to", to)
        if from_ and to and from_ >= to:
            raise bad_param("query", "from", "must be before 'to'")
        p = Params()
        where = []
        for column, value in (("watchlist_id", watchlist), ("status", status), ("rule", rule), ("severity", severity)):
            if value:
                where.append(f"a.{column} = {p(value)}")
        if from_:
            where.append(f"a.detected_at >= {p(from_)}")
        if to:
            where.append(f"a.detected_at < {p(to)}")
        if cursor:
            c_at, c_id, c_status = decode_cursor(cursor, ["time", "str", "str"])
            where.append(f"(a.detected_at, a.alert_id, a.status) < ({p(c_at)}, {p(c_id)}, {p(c_status)})")
        if not notification_log_seen:
            notification_log_seen = bool(await pool.fetchval("SELECT to_regclass('notification_log') IS NOT NULL"))
        notifications = (
            "coalesce((SELECT jsonb_agg(jsonb_build_object('receiver', n.receiver, 'receiver_kind', n.receiver_kind,"
            " 'status', n.status, 'outcome', n.outcome, 'attempts', n.attempts, 'http_status', n.http_status,"
            " 'error', n.error, 'sent_at', n.sent_at) ORDER BY n.sent_at, n.id) FROM notification_log n"
            " WHERE a.alert_id = ANY(n.alert_ids) AND n.status = a.status), '[]'::jsonb)"
            if notification_log_seen else "'[]'::jsonb")
        rows = await pool.fetch(
            "SELECT a.alert_id, a.status, a.fingerprint, a.rule, a.watchlist_id, a.severity, a.labels, a.annotations,"
            " a.group_key, a.summary, a.observed, a.baseline, a.score, a.bucket_seconds, a.starts_at, a.ends_at,"
            " a.detected_at, a.first_received_at, a.sample_mention_ids, a.explanation,"
            f" {notifications} AS notifications FROM alerts a"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY a.detected_at DESC, a.alert_id DESC, a.status DESC LIMIT {p(limit + 1)}", *p.values)
        page, more = rows[:limit], len(rows) > limit
        items = [_jsonable(r) for r in page]
        next_cursor = (encode_cursor(page[-1]["detected_at"], page[-1]["alert_id"], page[-1]["status"]) if more else None)
        if format == "csv":
            return csv_response(items, ("detected_at", "alert_id", "status", "rule", "watchlist_id", "severity", "summary",
                                        "observed", "baseline", "score", "starts_at", "ends_at", "group_key", "notifications"),
                                "alerts")
        return {"alerts": items, "next_cursor": next_cursor}

    # ---------------------------------------------------------------------------------- privacy

    @app.delete("/v1/authors/{source}/{author}", dependencies=auth, tags=["privacy"], responses=_ERRORS,
                summary="Erase every mention by an author (handle or account id) everywhere, and record the erasure.")
    async def erase(
        source: str = PathParam(..., pattern=SOURCE_PATTERN, description="Source, e.g. twitter."),
        author: str = PathParam(..., min_length=1, max_length=256, description="Handle (case-insensitive, @ optional) or account id."),
    ) -> dict[str, Any]:
        async with pool.acquire() as conn:
            await conn.execute("SET statement_timeout = 0")  # a full scan of every partition may take a while
            try:
                result = await erase_author(conn, source, author, via="api")
            except ValidationError as exc:
                raise bad_param("path", "author" if str(exc).startswith("author") else "source", str(exc)) from exc
            finally:
                await conn.execute("RESET statement_timeout")
        return {"erasure_id": result.erasure_id, "source": result.source, "mentions_erased": result.mentions_erased,
                "requested_at": _iso(result.requested_at)}

    # ---------------------------------------------------------------------------------- dashboard summary

    @app.get("/v1/stats", dependencies=auth, tags=["trends"], responses=_ERRORS, summary="Totals per watchlist and when each was last mentioned.")
    async def stats() -> dict[str, Any]:
        total = await pool.fetchval("SELECT coalesce(sum(mentions), 0)::bigint FROM mention_totals_day")
        rows = await pool.fetch(
            "SELECT d.watchlist_id, d.mentions, d.negative,"
            " (SELECT max(bucket) FROM mention_rollups_minute m WHERE m.watchlist_id = d.watchlist_id) AS last_minute"
            " FROM (SELECT watchlist_id, sum(mentions)::bigint AS mentions,"
            "       coalesce(sum(mentions) FILTER (WHERE sentiment = 'negative'), 0)::bigint AS negative"
            "       FROM mention_rollups_day GROUP BY 1) d ORDER BY 2 DESC, 1")
        return {"mentions": total, "watchlists": [_jsonable(r) for r in rows]}

    return app
