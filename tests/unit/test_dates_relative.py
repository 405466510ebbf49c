"""tests/dates.py: test data moved to recent days keeps its form, weekdays and intervals, and stays
inside the retention period and out of the future whatever today is."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from earful.core.mention import MentionIn, check_times
from earful.core.settings import Settings
from earful.ingest.connectors.feeds import parse_feed
from tests.dates import FIXTURE_DAY, MIN_AGE, WEEK, fixture_shift, recent_like, shift_dates, shifted_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
UTC = timezone.utc


def test_dates_with_a_time_move_ids_and_urls_do_not() -> None:
    text = ('{"date_published": "2026-11-02T06:00:00-05:00", "id": "2026-11-01-sustainability", '
            '"url": "https://news.example/2026/11/02/x", "tag": "tag:blog.example,2026:post-1", '
            '"csv": "2026-11-02 08:31:02.000", "rss": "Sun, 01 Nov 2026 17:30:00 +0100", "ddmm": "02/11/2026 09:00"}')
    moved = shift_dates(text, 5 * WEEK)
    assert '"2026-12-07T06:00:00-05:00"' in moved and '"2026-12-07 08:31:02.000"' in moved
    assert '"Sun, 06 Dec 2026 17:30:00 +0100"' in moved  # still a Sunday
    for kept in ('"2026-11-01-sustainability"', "/2026/11/02/x", "blog.example,2026:post-1", '"02/11/2026 09:00"'):
        assert kept in moved
    assert shift_dates("Thu, 31 Dec 2026 23:00:00 GMT", WEEK) == "Thu, 07 Jan 2027 23:00:00 GMT"
    with pytest.raises(ValueError):
        shift_dates(text, timedelta(hours=1))


@pytest.mark.parametrize("now", [datetime(2026, 11, 4, 12, tzinfo=UTC), datetime(2026, 12, 6, 23, tzinfo=UTC),
                                 datetime(2031, 2, 28, 0, 30, tzinfo=UTC)])
def test_recent_like_keeps_the_weekday_and_time_and_is_at_least_min_age_old(now: datetime) -> None:
    when = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
    moved = recent_like(when, now=now)
    assert moved.weekday() == when.weekday() and moved.time() == when.time()
    assert MIN_AGE <= now - moved < MIN_AGE + WEEK
    assert (FIXTURE_DAY + fixture_shift(now)).weekday() == FIXTURE_DAY.weekday()


@pytest.mark.parametrize("name", ["rss2.xml", "atom.xml", "feed.json"])
def test_shifted_feed_fixtures_are_neither_too_old_nor_in_the_future(name: str) -> None:
    """Every item of a shifted fixture passes the checks connectors apply with today's date."""
    retention = Settings().storage_retention_days
    now = datetime.now(UTC)
    content_type = {"rss2.xml": "application/rss+xml", "atom.xml": "application/atom+xml", "feed.json": "application/feed+json"}
    _, items = parse_feed(shifted_bytes((FIXTURES / name).read_bytes()), content_type[name])
    dated = [i for i in items if i.get("published")]
    assert dated
    for item in dated:
        published = datetime.fromisoformat(item["published"])
        mention = MentionIn.model_validate({"source": "news", "source_id": "x", "text": "t", "created_at": published})
        assert check_times(mention, now, retention) == [], item["published"]
        assert MIN_AGE - timedelta(days=1) <= now - published <= MIN_AGE + WEEK + timedelta(days=1)
