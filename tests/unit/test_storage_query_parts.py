"""Storage API building blocks without a database: CSV safety, windows, rollup coverage, cursors."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.exceptions import RequestValidationError

from earful.storage.api import TEXT_SEARCH_CONFIGS, decode_cursor, encode_cursor, rollup_parts, tsquery_sql, window
from earful.storage.export import safe_cell, to_csv
from earful.core.migrate import MIGRATIONS_DIR
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
