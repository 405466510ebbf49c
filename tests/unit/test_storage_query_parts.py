"""Storage API building blocks without a database: CSV safety, windows, rollup coverage, cursors,
and the SQL each endpoint sends (text from fixed fragments, every value a bind parameter)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.exceptions import RequestValidationError

from earful.core.migrate import MIGRATIONS_DIR
from earful.storage.api.deps import Output, Page, Period, decode_cursor, encode_cursor, window
from earful.storage.api.queries import (
    TEXT_SEARCH_CONFIGS,
    AlertFilter,
    MentionFilter,
    alert_listing,
    any_of,
    chunk,
    entity_candidates,
    language_alternatives,
    mention_search,
    open_questions,
    question_posts,
    rollup_parts,
    rollup_table,
    share_of_voice,
    tsquery_sql,
    volume_series,
)
from earful.storage.export import safe_cell, to_csv
from earful.storage.writer import BrandHandles, author_hash
from earful.watchlists import Watchlist

UTC = timezone.utc


def _t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- CSV export ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\t=1", "\r=1",
                                  "  =cmd|' /C calc'!A0", "\uff1d1+1", "\uff0b1"])
def test_formula_cells_are_defused(text: str) -> None:
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value,expected", [("Acme Air", "Acme Air"), (12, 12), (-3.5, -3.5), (None, ""),
                                            (True, "true"), (["a", "b"], '["a","b"]'), ({"k": "=x"}, '{"k":"=x"}')])
def test_plain_cells_are_kept(value: object, expected: object) -> None:
    assert safe_cell(value) == expected


def test_csv_round_trip_quotes_text_and_keeps_numbers() -> None:
    rows = [{"text": 'He said "hi", then =1+1', "n": 3, "when": None}, {"text": "-1", "n": -1, "when": "2026-11-02"}]
    body = to_csv(rows, ("text", "n", "when"))
    assert body.splitlines()[1] == '"He said ""hi"", then =1+1",3,""'
    parsed = list(csv.reader(io.StringIO(body)))
    assert parsed[2] == ["'-1", "-1", "2026-11-02"]


# --- windows and rollup coverage ------------------------------------------------------------


def test_window_defaults_and_alignment() -> None:
    now = _t(2026, 11, 2, 9, 30, 15)
    lo, hi = window(None, None, timedelta(days=1), now=now)
    assert (lo, hi) == (_t(2026, 11, 1, 9, 30), _t(2026, 11, 2, 9, 31))
    lo, hi = window(_t(2026, 11, 1, 10, 7), _t(2026, 11, 1, 13, 1), timedelta(days=1), align=3600)
    assert (lo, hi) == (_t(2026, 11, 1, 10), _t(2026, 11, 1, 14))


@pytest.mark.parametrize("from_,to,name", [
    (_t(2026, 11, 2), _t(2026, 11, 1), "from"),
    (_t(2026, 11, 2), _t(2026, 11, 2), "from"),
    (datetime(2026, 11, 1), None, "from"),
    (None, datetime(2026, 11, 1), "to"),
    (None, datetime(1, 1, 1, 22, tzinfo=UTC), "to"),  # found by schemathesis: 30 days before it overflowed
    (datetime(9999, 12, 31, tzinfo=UTC), None, "from"),
])
def test_bad_windows_name_the_parameter(from_: datetime | None, to: datetime | None, name: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        window(from_, to, timedelta(days=1), now=_t(2026, 11, 3))
    assert info.value.errors()[0]["loc"] == ("query", name)


def _covered(parts: list[tuple[str, datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    return sorted((a, b) for _, a, b in parts)


@pytest.mark.parametrize("lo,hi", [
    (_t(2026, 8, 3, 10, 17), _t(2026, 11, 2, 9, 41)),  # months, ragged both ends
    (_t(2026, 11, 1), _t(2026, 11, 3)),  # whole days only
    (_t(2026, 11, 1, 10, 5), _t(2026, 11, 1, 10, 50)),  # inside one hour
    (_t(2026, 11, 1, 22, 0), _t(2026, 11, 2, 3, 0)),  # hours across midnight
    (_t(2026, 11, 1, 23, 59), _t(2026, 11, 2, 0, 1)),  # two minutes across midnight
])
def test_rollup_parts_cover_the_window_exactly_once(lo: datetime, hi: datetime) -> None:
    parts = rollup_parts(lo, hi)
    spans = _covered(parts)
    assert spans[0][0] == lo and spans[-1][1] == hi
    assert all(a < b for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1)), spans
    for table, a, b in parts:
        step = {"mention_rollups_day": 86400, "mention_rollups_hour": 3600, "mention_rollups_minute": 60}[table]
        assert a.timestamp() % step == 0 and b.timestamp() % step == 0, (table, a, b)


def test_rollup_parts_use_the_coarsest_table() -> None:
    parts = rollup_parts(_t(2026, 8, 3, 10, 17), _t(2026, 11, 2, 9, 41))
    tables = [t for t, _, _ in parts]
    assert tables.count("mention_rollups_day") == 1
    assert len(parts) <= 5  # days + at most two hour spans + two minute spans


# --- cursors ------------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    mid = uuid.uuid4()
    at = _t(2026, 11, 2, 9, 0, 1)
    assert decode_cursor(encode_cursor("time", at, mid), ["const", "time", "uuid"]) == ["time", at, mid]
    assert decode_cursor(encode_cursor("reach", 1843, mid), ["const", "int", "uuid"]) == ["reach", 1843, mid]


@pytest.mark.parametrize("cursor", ["abc", "", "W10", encode_cursor("time", "yesterday", "x"),
                                    encode_cursor("time", "2026-11-02T09:00:00", str(uuid.uuid4())),
                                    encode_cursor("reach", "12", str(uuid.uuid4())), "!!!!"])
def test_foreign_cursors_are_refused_naming_the_parameter(cursor: str) -> None:
    kinds = ["const", "int", "uuid"] if "reach" in str(cursor) else ["const", "time", "uuid"]
    with pytest.raises(RequestValidationError) as info:
        decode_cursor(cursor, kinds)
    assert info.value.errors()[0]["loc"] == ("query", "cursor")


# --- full-text configurations, erasure hashes, brand handles ---------------------------------


def _language_configs(migration: str) -> dict[str, str]:
    sql = (MIGRATIONS_DIR / migration).read_text(encoding="utf-8")
    return dict(re.findall(r"WHEN '([a-z]{2})' THEN 'pg_catalog\.([a-z]+)'", sql))


def test_text_search_configurations_match_the_migration() -> None:
    latest = _language_configs("007_text_search_config_inline.sql")
    assert set(latest.values()) | {"simple"} == set(TEXT_SEARCH_CONFIGS)
    assert latest == _language_configs("002_partitioned_mentions.sql")  # rewritten, not remapped: stored tsv stay valid


def test_tsquery_uses_bind_parameters_only() -> None:
    assert tsquery_sql("$3", "$2") == "websearch_to_tsquery(earful_text_search_config($2), $3)"
    assert tsquery_sql("$1", None) == "$1::tsquery"  # the OR of every configuration, built by any_language_tsquery


def test_author_hash_ignores_case_and_separates_sources() -> None:
    assert author_hash("twitter", "JDoe") == author_hash("twitter", "jdoe")
    assert author_hash("twitter", "jdoe") != author_hash("mastodon", "jdoe")
    assert len(author_hash("twitter", "jdoe")) == 64 and "jdoe" not in author_hash("twitter", "jdoe")


def test_brand_handles_are_lower_case_pairs() -> None:
    ws = [Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "AcmeAirHelp")),
          Watchlist("globex", "Globex", "brand", ("Globex",), ("Globex",))]
    b = BrandHandles.of(ws)
    assert list(zip(b.handles, b.watchlist_ids)) == [("acmeair", "acme-air"), ("acmeairhelp", "acme-air"),
                                                      ("globex", "globex")]


# --- the SQL of each endpoint ---------------------------------------------------------------

HOSTILE = "x'); DROP TABLE mentions; --"


def _placeholders_match(sql: str, args: list[object]) -> None:
    """Every $n in the text is one of the arguments, and every argument is used."""
    used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert used == set(range(1, len(args) + 1)), (sorted(used), len(args))


def test_mention_search_without_filters_lists_everything_newest_first() -> None:
    sql, args = mention_search(MentionFilter(), "time", None, 50)
    assert " WHERE " not in sql
    assert sql.endswith("ORDER BY m.created_at DESC, m.mention_id DESC LIMIT $1") and args == [51]
    assert "m.created_at AS sort_key FROM mentions m" in sql


def test_mention_search_binds_every_filter() -> None:
    at, mid = _t(2026, 11, 2, 9), uuid.uuid4()
    f = MentionFilter(watchlist="acme-air", entity=f"  {HOSTILE.upper()} ", risk="complaint", from_=_t(2026, 11, 1),
                      to=_t(2026, 11, 2), lang="en", source="twitter", sentiment="negative", tsquery=HOSTILE)
    sql, args = mention_search(f, "time", (at, mid), 20)
    _placeholders_match(sql, args)
    assert HOSTILE.lower() not in sql.lower()
    assert args[0] == ["w:acme-air", f"e:{HOSTILE.lower()}", "r:complaint"]  # one containment test on the facets
    assert "m.facets @> $1::text[]" in sql and "m.created_at >= $2" in sql and "m.created_at < $3" in sql
    assert "m.lang = $4" in sql and "m.source = $5" in sql and "m.sentiment = $6" in sql
    assert "m.tsv @@ websearch_to_tsquery(earful_text_search_config($4), $7)" in sql  # the filter language's stemming
    assert "(m.created_at, m.mention_id) < ($8, $9)" in sql and args[7:] == [at, mid, 21]


def test_mention_search_by_reach_unknown_sentiment_any_language() -> None:
    sql, args = mention_search(MentionFilter(sentiment="unknown", tsquery="( 'delay' )"), "reach", (1843, "id"), 5)
    _placeholders_match(sql, args)
    assert "m.sentiment IS NULL" in sql and "unknown" not in args
    assert "m.tsv @@ $1::tsquery" in sql  # already the OR of every configuration
    assert "(coalesce(m.author_followers, 0), m.mention_id) < ($2, $3)" in sql
    assert "ORDER BY coalesce(m.author_followers, 0) DESC, m.mention_id DESC LIMIT $4" in sql and args[-1] == 6


def test_language_alternatives_cover_every_configuration() -> None:
    sql, args = language_alternatives(HOSTILE)
    assert HOSTILE not in sql and args[0] == HOSTILE
    assert args[1] == [f"pg_catalog.{c}" for c in TEXT_SEARCH_CONFIGS]
    assert any_of(["'delay'", "'delays'"]) == "( 'delay' ) | ( 'delays' )"
    assert any_of([]) == ""  # no word in any configuration: the search finds nothing


@pytest.mark.parametrize("step,table", [(60, "mention_rollups_minute"), (900, "mention_rollups_minute"),
                                        (3600, "mention_rollups_hour"), (43200, "mention_rollups_hour"),
                                        (86400, "mention_rollups_day"), (604800, "mention_rollups_day")])
def test_series_reads_the_coarsest_rollup_that_fits_the_interval(step: int, table: str) -> None:
    assert rollup_table(step) == table
    sql, _ = volume_series("acme-air", _t(2026, 11, 1), _t(2026, 11, 8), step)
    assert f"FROM {table} WHERE" in sql


def test_series_fills_every_bucket_and_binds_its_filters() -> None:
    lo, hi = _t(2026, 11, 1), _t(2026, 11, 2)
    sql, args = volume_series(HOSTILE, lo, hi, 3600, "twitter", "en")
    _placeholders_match(sql, args)
    assert HOSTILE not in sql
    assert args[:4] == [timedelta(hours=1), lo, hi, HOSTILE]
    assert "generate_series($2::timestamptz, $3::timestamptz - $1::interval, $1::interval)" in sql
    assert "source = $5" in sql and "lang = $6" in sql and "LEFT JOIN r USING (start)" in sql
    sql, args = volume_series("acme-air", lo, hi, 3600)
    _placeholders_match(sql, args)
    assert "source =" not in sql and "lang =" not in sql


def test_share_of_voice_sums_each_rollup_part_once() -> None:
    lo, hi = _t(2026, 8, 3, 10, 17), _t(2026, 11, 2, 9, 41)
    query = share_of_voice(lo, hi, None)
    assert query is not None
    sql, args = query
    _placeholders_match(sql, args)
    parts = rollup_parts(lo, hi, "watchlist_rollups")
    assert sql.count(" UNION ALL ") == len(parts) - 1
    assert [(a, b) for a, b in zip(args[::2], args[1::2])] == [(a, b) for _, a, b in parts]
    assert "ANY(" not in sql and "watchlist_id <> '(none)'" in sql


def test_share_of_voice_of_chosen_watchlists_binds_them_once() -> None:
    query = share_of_voice(_t(2026, 11, 1), _t(2026, 11, 3), ["globex", HOSTILE, "globex"])
    assert query is not None
    sql, args = query
    _placeholders_match(sql, args)
    assert args[0] == sorted({"globex", HOSTILE}) and HOSTILE not in sql
    assert sql.count("watchlist_id = ANY($1::text[])") == len(rollup_parts(_t(2026, 11, 1), _t(2026, 11, 3)))


def test_entity_candidates_by_type() -> None:
    sql, args = entity_candidates("acme-air", "hashtag")
    assert "entity_type = $2" in sql and args == ["acme-air", "hashtag"]
    sql, args = entity_candidates("acme-air", None)  # every type but hashtags and links, same parameters
    assert "entity_type NOT IN ('hashtag', 'url') AND $2::text IS NULL" in sql and args == ["acme-air", None]
    assert chunk(sql, 200, 400).endswith(" OFFSET 200 LIMIT 400")


def test_open_questions_page_after_the_cursor() -> None:
    lo, hi, at, mid = _t(2026, 11, 1), _t(2026, 11, 2), _t(2026, 11, 1, 9), uuid.uuid4()
    sql, args = open_questions("acme-air", lo, hi, None, 50)
    _placeholders_match(sql, args)
    assert args == ["acme-air", lo, hi, 51] and "q.first_reply_at IS NULL" in sql
    assert " mentions " not in sql  # the page alone: its posts are read for it (question_posts)
    sql, args = question_posts([("x", "1", at), ("x", "2", hi)])
    _placeholders_match(sql, args)
    assert args[3:] == [at, hi] and "m.created_at >= $4 AND m.created_at <= $5" in sql  # only the page's days
    sql, args = open_questions("acme-air", lo, hi, (at, mid), 50)
    _placeholders_match(sql, args)
    assert "(q.created_at, q.mention_id) > ($4, $5)" in sql and args[3:5] == [at, mid]


def test_alert_listing_filters_and_notifications() -> None:
    sql, args = alert_listing(AlertFilter(), None, 50, with_notifications=False)
    assert " WHERE " not in sql and "'[]'::jsonb AS notifications" in sql and args == [51]
    at = _t(2026, 11, 2)
    f = AlertFilter(watchlist="acme-air", status="firing", rule="negative_surge", severity="critical",
                    from_=_t(2026, 11, 1), to=at)
    sql, args = alert_listing(f, (at, HOSTILE, "firing"), 10, with_notifications=True)
    _placeholders_match(sql, args)
    assert HOSTILE not in sql and "FROM notification_log n" in sql
    assert args == ["acme-air", "firing", "negative_surge", "critical", _t(2026, 11, 1), at, at, HOSTILE, "firing", 11]
    assert "(a.detected_at, a.alert_id, a.status) < ($7, $8, $9)" in sql


# --- request parameters ---------------------------------------------------------------------


def test_period_bounds_are_optional_but_ordered() -> None:
    assert Period(None, None).bounds() == (None, None)
    assert Period(_t(2026, 11, 1), None).bounds() == (_t(2026, 11, 1), None)
    with pytest.raises(RequestValidationError) as info:
        Period(_t(2026, 11, 2), _t(2026, 11, 1)).bounds()
    assert info.value.errors()[0]["loc"] == ("query", "from")
    with pytest.raises(RequestValidationError) as info:
        Period(None, datetime(2026, 11, 1)).bounds()
    assert info.value.errors()[0]["loc"] == ("query", "to")
    assert Period(None, None).window(timedelta(days=7), align=86400, now=_t(2026, 11, 2, 9)) == (
        _t(2026, 10, 26), _t(2026, 11, 3))


def test_page_cut_and_cursor() -> None:
    page = Page(limit=2, cursor=None)
    assert page.after(["time", "uuid"]) is None
    assert page.cut([1, 2, 3]) == ([1, 2], True) and page.cut([1, 2]) == ([1, 2], False)
    mid = uuid.uuid4()
    assert Page(2, encode_cursor(_t(2026, 11, 2), mid)).after(["time", "uuid"]) == [_t(2026, 11, 2), mid]


def test_output_answers_json_or_a_csv_download() -> None:
    body = {"rows": [{"a": "=1"}]}
    assert Output("json").listing(body, body["rows"], ("a",), "x") is body
    response = Output("csv").listing(body, body["rows"], ("a",), "x")
    assert response.headers["content-disposition"] == 'attachment; filename="x.csv"'
    assert response.body.decode() == "\"a\"\r\n\"'=1\"\r\n"
