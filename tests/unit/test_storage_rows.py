"""Storage: records → table rows (pure) and the migration file rules."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from earful.core.errors import StorageError
from earful.core.migrate import migration_files
from earful.storage.writer import (
    ALERT_COLUMNS,
    MENTION_COLUMNS,
    WRITTEN_COLUMNS,
    alert_row,
    facets,
    mention_row,
    with_owned,
)
from earful.watchlists import Watchlist
from earful.watchlists.owned import OwnedHandles
from tests.support import example


def _ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


ENRICHED = example("enriched_mention/v1/01_english_complaint")  # v1: the later columns get their defaults
RAW = ENRICHED["mention"]
ALERT = example("alert_event/v2/01_firing")


def _table_columns(table: str) -> list[str]:
    """The columns of `table` after every migration: its newest CREATE TABLE plus later ADD COLUMNs."""
    cols: list[str] = []
    for _, _, sql in migration_files():
        body = re.search(rf"CREATE TABLE {table} \((.*?)\n\)", sql, re.S)
        if body:
            cols = []
            for line in body.group(1).splitlines():
                m = re.match(r"\s+([a-z_]+)\s", line)  # constraints start with upper-case keywords
                if m:
                    cols.append(m.group(1))
        cols += re.findall(rf"ALTER TABLE {table} ADD COLUMN ([a-z_]+)", sql)
    return cols


# --- mention_row ------------------------------------------------------------------------------


def test_mention_row_matches_the_columns() -> None:
    row = mention_row(ENRICHED)
    assert len(row) == len(MENTION_COLUMNS) == len(set(MENTION_COLUMNS))
    got = dict(zip(MENTION_COLUMNS, row))
    assert got == {
        "mention_id": "9ec6ba32-ba62-5d3f-ba26-c2229307cfa0",
        "source": "twitter",
        "source_id": "1900413877765287936",
        "url": "https://twitter.com/jdoe_travels/status/1900413877765287936",
        "author_id": "81234567",
        "author_handle": "jdoe_travels",
        "author_name": "Jane Doe \u2708\ufe0f",
        "author_followers": 1843,
        "text": RAW["text"],
        "declared_lang": "en",
        "lang": "en",
        "lang_confidence": 0.9906359314918518,
        "created_at": _ts(2025, 3, 14, 9, 29, 58),
        "received_at": _ts(2025, 3, 14, 9, 30, 1, 412000),
        "enriched_at": _ts(2025, 3, 14, 9, 33, 42, 31000),
        "in_reply_to": None,
        "reposted_from": None,
        "likes": 12,
        "reposts": 3,
        "replies": 4,
        "sentiment": "negative",
        "sentiment_score": -0.7269,
        "sentiment_reason": None,
        "sentiment_probabilities": None,
        "watchlist_ids": ["acme-air"],
        "entities": got["entities"],
        "risks": got["risks"],
        "matches": got["matches"],
        "models": got["models"],
        "title": None,
        "country": None,
        "connector": "unknown",
        "content_type": "unknown",
        "fetched_at": None,
        "engagement_observed_at": None,
        "facets": ["w:acme-air", "e:@acmeair", "e:boston", "e:denver", "e:#acmeair", "e:https://example.com/status/1",
                   "r:operational", "r:reputational", "r:complaint"],
    }
    for col in ("entities", "risks", "matches", "models"):
        assert isinstance(got[col], str)
        assert json.loads(got[col]) == ENRICHED[col]
    zurich = {**ENRICHED, "entities": [{"text": "Zürich", "type": "location", "start": 0, "end": 6, "origin": "rules"}]}
    assert "Zürich" in dict(zip(MENTION_COLUMNS, mention_row(zurich)))["entities"]  # stored as text, not \u escapes


def test_mention_row_with_nulls_and_unsupported_language() -> None:
    german = {**example("enriched_mention/v1/02_german_unsupported_sentiment"),
              "watchlist_ids": [], "entities": [], "risks": [], "matches": []}
    got = dict(zip(MENTION_COLUMNS, mention_row(german)))
    assert (got["url"], got["declared_lang"], got["author_id"], got["author_handle"]) == (None, None, None, None)
    assert (got["lang"], got["sentiment"], got["sentiment_reason"]) == ("de", None, "unsupported_language:de")
    assert (got["in_reply_to"], got["reposted_from"]) == (None, "113998190412345678")
    assert got["watchlist_ids"] == [] and got["entities"] == "[]"


def test_mention_row_copies_the_watchlist_ids() -> None:
    row = mention_row(ENRICHED)
    ids = row[MENTION_COLUMNS.index("watchlist_ids")]
    assert ids == ENRICHED["watchlist_ids"] and ids is not ENRICHED["watchlist_ids"]


def test_mention_row_of_a_v2_record() -> None:
    v2 = example("enriched_mention/v2/01_english_complaint")
    v2["mention"].update(title="Flight cancelled", connector="feed", content_type="application/rss+xml",
                         fetched_at=_ts(2025, 3, 14, 9, 30))
    got = dict(zip(MENTION_COLUMNS, mention_row(v2)))
    assert (got["title"], got["country"], got["connector"], got["content_type"]) == \
        ("Flight cancelled", "US", "feed", "application/rss+xml")
    assert got["fetched_at"] == _ts(2025, 3, 14, 9, 30)
    assert got["engagement_observed_at"] == _ts(2025, 3, 14, 9, 29, 58, 412000)
    assert (got["likes"], got["reposts"], got["replies"]) == (12, 3, 4)
    assert json.loads(got["sentiment_probabilities"]) == {"negative": 0.91, "neutral": 0.07, "positive": 0.02}
    assert json.loads(got["matches"])[0]["term"] == "@AcmeAir"


def test_facets_are_lower_case_and_unique() -> None:
    entities = [{"text": "#AcmeAir"}, {"text": "#acmeair"}, {"text": "ZÜRICH"}]
    risks = [{"tag": "complaint"}, {"tag": "complaint"}]
    assert facets(["acme-air"], entities, risks) == ["w:acme-air", "e:#acmeair", "e:zürich", "r:complaint"]
    assert facets([], [], []) == []


def test_mention_columns_exist_in_the_table() -> None:
    table = _table_columns("mentions")
    assert set(MENTION_COLUMNS) <= set(table)
    assert set(WRITTEN_COLUMNS) - set(MENTION_COLUMNS) == {"owned_watchlist_ids"}  # decided by the writer
    assert set(table) - set(WRITTEN_COLUMNS) == {"stored_at", "tsv"}  # filled by the database


def test_the_writer_appends_the_watchlists_a_row_is_owned_for() -> None:
    row = mention_row(ENRICHED)
    handle = dict(zip(MENTION_COLUMNS, row))["author_handle"]
    assert with_owned(row, OwnedHandles()) == (*row, [])
    owned = OwnedHandles.of([Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), (handle,))])
    assert with_owned(row, owned)[len(MENTION_COLUMNS):] == (["acme-air"],)
    assert len(with_owned(row, owned)) == len(WRITTEN_COLUMNS)


# --- alert_row --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alert",
    [ALERT, example("alert_event/v2/02_resolved")],
    ids=["firing", "resolved"],
)
def test_alert_row_matches_the_columns(alert: dict[str, Any]) -> None:
    row = alert_row(alert)
    assert len(row) == len(ALERT_COLUMNS) == len(set(ALERT_COLUMNS))
    got = dict(zip(ALERT_COLUMNS, row))
    for col in ALERT_COLUMNS:
        if col in ("labels", "annotations", "explanation"):
            assert json.loads(got[col]) == json.loads(json.dumps(alert[col], default=lambda t: t.isoformat().replace("+00:00", "Z"))), col
        else:
            assert got[col] == alert[col], col
    assert "schema_version" not in ALERT_COLUMNS


def test_alert_columns_exist_in_the_table() -> None:
    table = _table_columns("alerts")
    assert set(ALERT_COLUMNS) <= set(table)
    assert set(table) - set(ALERT_COLUMNS) == {"stored_at"}


def test_alert_row_needs_every_column() -> None:
    with pytest.raises(KeyError):
        alert_row({k: v for k, v in ALERT.items() if k != "summary"})


# --- migration files --------------------------------------------------------------------------


def _write(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text(f"-- {name}\nSELECT 1;\n", encoding="utf-8")
    return directory


def test_bundled_migrations() -> None:
    files = migration_files()
    assert files, "no migrations bundled"
    versions = [v for v, _, _ in files]
    assert versions == sorted(set(versions)) and versions[0] == 1
    assert files[0][:2] == (1, "initial")
    assert "CREATE TABLE mentions" in files[0][2]


def test_migrations_run_in_numeric_order(tmp_path: Path) -> None:
    d = _write(tmp_path / "m", "003_add_index.sql", "001_initial.sql", "002_alerts.sql", "README.md", "notes.txt")
    files = migration_files(d)
    assert [(v, n) for v, n, _ in files] == [(1, "initial"), (2, "alerts"), (3, "add_index")]
    assert files[1][2] == "-- 002_alerts.sql\nSELECT 1;\n"


def test_version_ranges_may_leave_gaps(tmp_path: Path) -> None:
    # Each service owns a range of versions (storage 002-019, alerting 020-029): gaps are expected.
    d = _write(tmp_path / "m", "001_initial.sql", "002_mentions.sql", "020_notifications.sql")
    assert [v for v, _, _ in migration_files(d)] == [1, 2, 20]


def test_empty_directory_has_no_migrations(tmp_path: Path) -> None:
    assert migration_files(_write(tmp_path / "m")) == []


@pytest.mark.parametrize(
    "names,fragment",
    [
        (["001_initial.sql", "1_second.sql"], "1_second.sql must be named NNN_name.sql"),
        (["001_initial.sql", "002-second.sql"], "002-second.sql must be named"),
        (["001_initial.sql", "002_Second.sql"], "002_Second.sql must be named"),
        (["001_initial.sql", "002_.sql"], "002_.sql must be named"),
        (["001_initial.sql", "0002_second.sql"], "0002_second.sql must be named"),
        (["001_initial.sql", "002_has space.sql"], "must be named"),
        (["002_second.sql"], "002_second out of sequence: expected 001"),
        (["000_zero.sql", "001_initial.sql"], "000_zero out of sequence: expected 001"),
        (["001_initial.sql", "001_again.sql"], "repeats version 001"),
    ],
    ids=["short-number", "dash", "upper-case", "no-name", "long-number", "space", "no-first",
         "zero", "duplicate-version"],
)
def test_bad_migration_files(tmp_path: Path, names: list[str], fragment: str) -> None:
    d = _write(tmp_path / "m", *names)
    with pytest.raises(StorageError) as info:
        migration_files(d)
    assert fragment in str(info.value)
    assert info.value.kind == "storage_error"
