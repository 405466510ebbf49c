"""Test data dated relative to today, so that tests do not start failing as the calendar moves on.

Ingest refuses, connectors skip and storage drops a mention published longer ago than the retention
period (EARFUL_STORAGE_RETENTION_DAYS), and everything refuses one from the future: data with fixed
calendar dates that goes through them passes only for a while. Dates are moved by whole weeks, so a
fixture keeps its weekday and time of day (RFC 822 dates name the weekday; the sample stream follows
the hour of day), and every interval between its dates.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

WEEK = timedelta(days=7)
#: The day the ingest fixtures (tests/fixtures/ingest) and most test data were written for.
FIXTURE_DAY = datetime(2026, 11, 2, tzinfo=timezone.utc)
#: How old shifted data is at least: a fixture's items span less than a day after FIXTURE_DAY.
MIN_AGE = timedelta(days=2)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?=[T ]\d{2}:\d{2})")  # a date with a time after it, not an id
_RFC822_DATE = re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) (" + "|".join(_MONTHS) + r") (\d{4})\b")


def weeks_back(when: datetime, min_age: timedelta = MIN_AGE, now: datetime | None = None) -> timedelta:
    """How far to move `when`, in whole weeks, to be the latest such time at least `min_age` ago."""
    now = now or datetime.now(timezone.utc)
    return ((now - min_age - when) // WEEK) * WEEK


def recent_like(when: datetime, min_age: timedelta = MIN_AGE, now: datetime | None = None) -> datetime:
    """`when` on the same weekday and time of day, in the most recent week that leaves it `min_age` old."""
    return when + weeks_back(when, min_age, now)


def fixture_shift(now: datetime | None = None) -> timedelta:
    """The shift that makes data written for FIXTURE_DAY between MIN_AGE and MIN_AGE + a week old."""
    return weeks_back(FIXTURE_DAY, MIN_AGE, now)


def shift_dates(text: str, delta: timedelta | None = None) -> str:
    """`text` with every date that has a time after it (RFC 3339 / ISO 8601, also with a space) and
    every RFC 822 date (feeds, e-mail) moved by `delta` whole days (default `fixture_shift()`).
    Ids and URLs that merely contain a date (2026-11-01-sustainability, /2026/11/02/) are left alone."""
    delta = fixture_shift() if delta is None else delta
    if delta % timedelta(days=1):
        raise ValueError(f"shift by whole days, not {delta}")

    def iso(found: re.Match[str]) -> str:
        day = datetime(int(found[1]), int(found[2]), int(found[3])) + delta
        return day.strftime("%Y-%m-%d")

    def rfc822(found: re.Match[str]) -> str:
        day = datetime(int(found[3]), _MONTHS.index(found[2]) + 1, int(found[1])) + delta
        return f"{day.strftime('%a')}, {day.day:0{len(found[1])}d} {_MONTHS[day.month - 1]} {day.year}"

    return _RFC822_DATE.sub(rfc822, _ISO_DATE.sub(iso, text))


def shifted_bytes(data: bytes, delta: timedelta | None = None) -> bytes:
    """`shift_dates` for a UTF-8 document (a fixture file's bytes)."""
    return shift_dates(data.decode("utf-8"), delta).encode("utf-8")


def iso_z(when: datetime) -> str:
    """RFC 3339 in UTC with a Z and milliseconds, as sources write it."""
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
