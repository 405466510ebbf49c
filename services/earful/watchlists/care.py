"""The SLA clock of customer care: when a case is due, and how much of its SLA it has used.

A watchlist's response SLA counts only the time its care team is open (`BusinessHours`: daily
local ranges per weekday in an IANA time zone, holidays closed all day); without business hours
it counts around the clock. Local ranges are turned into instants with `zoneinfo` day by day, so a
day with a clock change is as long as it really is (a 09:00-17:30 range is 8.5 h either way; a
00:00-24:00 range is 23 h on the spring change and 25 h on the autumn one) and the deadline is
right on both sides of it. A local time that does not exist (inside the spring gap) is read with
the offset in force before the change, as `zoneinfo` does. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from earful.watchlists.model import WEEKDAYS, BusinessHours

#: How many days ahead the clock looks for opening hours before it gives up (a schedule whose
#: every open day is a holiday for ten years has no deadline).
MAX_DAYS = 3660


def _aware(name: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must have a time zone")


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _clock(value: str) -> tuple[int, int]:
    hours, minutes = value.split(":")
    return int(hours), int(minutes)


def _instant(day: date, value: str, zone: ZoneInfo) -> datetime:
    """Local `value` (HH:MM, 24:00 = the next midnight) on `day` in `zone`, as a UTC instant."""
    hours, minutes = _clock(value)
    if hours == 24:
        day, hours = day + timedelta(days=1), 0
    return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(timezone.utc)


def open_ranges(hours: BusinessHours, start: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The opening ranges (UTC instants, in order) that end after `start`, from the local day of
    `start` on, for at most MAX_DAYS days."""
    _aware("start", start)
    zone = _zone(hours.timezone)
    holidays = frozenset(hours.holidays)
    first = start.astimezone(zone).date() - timedelta(days=1)  # a range of the day before may still be open
    for offset in range(MAX_DAYS + 1):
        day = first + timedelta(days=offset)
        if day.isoformat() in holidays:
            continue
        for begin, end in hours.days.get(WEEKDAYS[day.weekday()], ()):
            lo, hi = _instant(day, begin, zone), _instant(day, end, zone)
            if hi > start and hi > lo:
                yield lo, hi


def _advance(opened_at: datetime, seconds: float, hours: BusinessHours | None) -> datetime:
    """The instant at which `seconds` of the clock have run since `opened_at`."""
    _aware("opened_at", opened_at)
    if seconds < 0:
        raise ValueError("an SLA cannot be negative")
    if hours is None:
        return opened_at + timedelta(seconds=seconds)
    remaining = float(seconds)
    for lo, hi in open_ranges(hours, opened_at):
        lo = max(lo, opened_at.astimezone(timezone.utc))
        available = (hi - lo).total_seconds()
        if remaining <= available:
            return (lo + timedelta(seconds=remaining)).astimezone(opened_at.tzinfo)
        remaining -= available
    raise ValueError(f"the business hours in {hours.timezone} open on no day within {MAX_DAYS} days")


def sla_deadline(opened_at: datetime, sla_s: int, hours: BusinessHours | None) -> datetime:
    """When a case opened at `opened_at` breaches an SLA of `sla_s` seconds of business time
    (`hours`; None: around the clock). A case opened while closed starts its clock at the next
    opening. The result is in the zone of `opened_at`."""
    return _advance(opened_at, sla_s, hours)


def warn_time(opened_at: datetime, sla_s: int, hours: BusinessHours | None, warn_at: float) -> datetime:
    """When the case has used the share `warn_at` (0-1) of its SLA: the moment it gets a warning."""
    if not 0 <= warn_at <= 1:
        raise ValueError("warn_at is a share of the SLA, between 0 and 1")
    return _advance(opened_at, sla_s * warn_at, hours)


def business_seconds_between(start: datetime, end: datetime, hours: BusinessHours | None) -> float:
    """Seconds of the SLA clock between `start` and `end` (0 when `end` is not after `start`)."""
    _aware("start", start)
    _aware("end", end)
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    total = 0.0
    for lo, hi in open_ranges(hours, start):
        if lo >= end:
            break
        total += (min(hi, end) - max(lo, start)).total_seconds()
    return total


def sla_used(opened_at: datetime, until: datetime, sla_s: int | None, hours: BusinessHours | None) -> float | None:
    """The share of the SLA used between opening and `until` (1.0 = due now; above 1: breached);
    None without an SLA."""
    if not sla_s:
        return None
    return business_seconds_between(opened_at, until, hours) / sla_s


def humanise_seconds(seconds: float) -> str:
    """A waiting time as people say it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"
