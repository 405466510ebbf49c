"""The SLA clock on business hours: weekends, overnight, holidays and clock changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from earful.watchlists.care import business_seconds_between, humanise_seconds, sla_deadline, sla_used, warn_time
from earful.watchlists.model import BusinessHours, parse_watchlist

LONDON = ZoneInfo("Europe/London")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
WEEKDAYS_0900_1730 = BusinessHours("Europe/London", dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), (("09:00", "17:30"),)))
WEEKDAYS_0900_1700 = BusinessHours("Europe/London", dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), (("09:00", "17:00"),)))


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)  # type: ignore[misc]


def test_friday_afternoon_question_is_due_on_monday_morning() -> None:
    friday = local(LONDON, 2026, 11, 6, 16, 30)
    assert friday.strftime("%a") == "Fri"
    # 17:30 closes: 1 h of the 2 h on Friday, the other hour from Monday 09:00.
    assert sla_deadline(friday, 7200, WEEKDAYS_0900_1730) == local(LONDON, 2026, 11, 9, 10, 0)
    # Closing at 17:00 leaves half an hour on Friday: due Monday 10:30.
    assert sla_deadline(friday, 7200, WEEKDAYS_0900_1700) == local(LONDON, 2026, 11, 9, 10, 30)


def test_the_deadline_keeps_the_zone_of_the_question_and_the_instant() -> None:
    friday_utc = local(LONDON, 2026, 11, 6, 16, 30).astimezone(UTC)
    due = sla_deadline(friday_utc, 7200, WEEKDAYS_0900_1700)
    assert due.tzinfo is UTC and due == local(LONDON, 2026, 11, 9, 10, 30)


def test_around_the_clock_without_business_hours() -> None:
    friday = local(LONDON, 2026, 11, 6, 16, 30)
    assert sla_deadline(friday, 7200, None) == friday + timedelta(hours=2)
    assert business_seconds_between(friday, friday + timedelta(days=3), None) == 3 * 86400


def test_a_question_asked_while_closed_starts_the_clock_at_the_next_opening() -> None:
    saturday = local(LONDON, 2026, 11, 7, 11, 0)
    assert sla_deadline(saturday, 1800, WEEKDAYS_0900_1730) == local(LONDON, 2026, 11, 9, 9, 30)
    night = local(LONDON, 2026, 11, 10, 2, 0)  # Tuesday, before opening
    assert sla_deadline(night, 1800, WEEKDAYS_0900_1730) == local(LONDON, 2026, 11, 10, 9, 30)


def test_overnight_is_not_counted() -> None:
    tuesday_evening = local(LONDON, 2026, 11, 10, 17, 0)
    wednesday_morning = local(LONDON, 2026, 11, 11, 10, 0)
    assert business_seconds_between(tuesday_evening, wednesday_morning, WEEKDAYS_0900_1730) == 1800 + 3600
    assert sla_deadline(tuesday_evening, 3600, WEEKDAYS_0900_1730) == local(LONDON, 2026, 11, 11, 9, 30)


def test_several_ranges_a_day_and_a_lunch_break() -> None:
    hours = BusinessHours("UTC", {"mon": (("09:00", "12:00"), ("13:00", "17:00"))})
    monday = datetime(2026, 11, 9, 11, 0, tzinfo=UTC)
    assert sla_deadline(monday, 7200, hours) == datetime(2026, 11, 9, 14, 0, tzinfo=UTC)
    assert business_seconds_between(monday, datetime(2026, 11, 9, 18, 0, tzinfo=UTC), hours) == 5 * 3600


def test_holidays_are_closed_all_day() -> None:
    hours = BusinessHours("Europe/London", WEEKDAYS_0900_1730.days, ("2026-12-25",))
    christmas_eve = local(LONDON, 2026, 12, 24, 17, 0)  # Thursday, 30 min before closing
    # Friday the 25th is a holiday: the remaining 30 min run on Monday the 28th.
    assert sla_deadline(christmas_eve, 3600, hours) == local(LONDON, 2026, 12, 28, 9, 30)
    assert sla_deadline(christmas_eve, 3600, WEEKDAYS_0900_1730) == local(LONDON, 2026, 12, 25, 9, 30)
    assert business_seconds_between(christmas_eve, local(LONDON, 2026, 12, 28, 9, 0), hours) == 1800


def test_clock_changes_shift_the_utc_deadline_not_the_local_one() -> None:
    # Berlin leaves summer time on Sunday 25 October 2026: Friday is UTC+2, Monday UTC+1.
    hours = BusinessHours("Europe/Berlin", dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), (("09:00", "17:00"),)))
    friday = local(BERLIN, 2026, 10, 23, 16, 0)
    due = sla_deadline(friday, 7200, hours)
    assert due == local(BERLIN, 2026, 10, 26, 10, 0)
    assert due.astimezone(UTC) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert friday.astimezone(UTC) == datetime(2026, 10, 23, 14, 0, tzinfo=UTC)
    # Spring: Berlin starts summer time on Sunday 29 March 2026.
    assert sla_deadline(local(BERLIN, 2026, 3, 27, 16, 0), 7200, hours).astimezone(UTC) == datetime(
        2026, 3, 30, 8, 0, tzinfo=UTC)


def test_a_whole_day_range_lasts_as_long_as_the_day_really_is() -> None:
    always_sunday = BusinessHours("Europe/Berlin", {"sun": (("00:00", "24:00"),)})
    short = local(BERLIN, 2026, 3, 29, 0, 0)  # 23 h
    long = local(BERLIN, 2026, 10, 25, 0, 0)  # 25 h
    assert business_seconds_between(short, short + timedelta(days=2), always_sunday) == 23 * 3600
    assert business_seconds_between(long, long + timedelta(days=2), always_sunday) == 25 * 3600
    # 24 h of Sunday clock from the short Sunday's midnight: 23 h that day, 1 h the next Sunday.
    assert sla_deadline(short, 24 * 3600, always_sunday) == local(BERLIN, 2026, 4, 5, 1, 0)


def test_the_warning_comes_at_its_share_of_the_business_clock() -> None:
    friday = local(LONDON, 2026, 11, 6, 16, 30)
    # 75 % of 2 h = 90 min: 60 on Friday, 30 on Monday.
    assert warn_time(friday, 7200, WEEKDAYS_0900_1730, 0.75) == local(LONDON, 2026, 11, 9, 9, 30)
    assert warn_time(friday, 7200, None, 0.75) == friday + timedelta(minutes=90)
    with pytest.raises(ValueError):
        warn_time(friday, 7200, None, 1.5)


def test_business_seconds_agree_with_the_deadline() -> None:
    start = local(LONDON, 2026, 11, 5, 15, 12)
    for sla_s in (60, 3600, 7200, 30000, 200000):
        due = sla_deadline(start, sla_s, WEEKDAYS_0900_1730)
        assert business_seconds_between(start, due, WEEKDAYS_0900_1730) == pytest.approx(sla_s)


def test_share_of_the_sla_used() -> None:
    friday = local(LONDON, 2026, 11, 6, 16, 30)
    monday = local(LONDON, 2026, 11, 9, 9, 30)
    assert sla_used(friday, monday, 7200, WEEKDAYS_0900_1730) == pytest.approx(0.75)
    assert sla_used(friday, monday, None, WEEKDAYS_0900_1730) is None
    assert business_seconds_between(monday, friday, WEEKDAYS_0900_1730) == 0.0


def test_naive_times_and_schedules_that_never_open_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        sla_deadline(datetime(2026, 11, 6, 16, 30), 60, None)
    never = BusinessHours("UTC", {})
    with pytest.raises(ValueError, match="open on no day"):
        sla_deadline(datetime(2026, 11, 6, tzinfo=UTC), 60, never)


def test_the_clock_reads_the_hours_a_watchlist_file_declares() -> None:
    w = parse_watchlist({"id": "acme-air", "terms": ["Acme Air"], "response_sla_s": 7200,
                         "care": {"business_hours": {"timezone": "Europe/London", "days": {"mon-fri": "09:00-17:00"},
                                                     "holidays": ["2026-11-09"]}}}, "test")
    assert w.care is not None and w.care.business_hours is not None
    friday = local(LONDON, 2026, 11, 6, 16, 30)
    assert sla_deadline(friday, 7200, w.care.business_hours) == local(LONDON, 2026, 11, 10, 10, 30)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"),
                                                (3600, "1 h"), (3660 + 240, "1 h 5 min"), (86400, "1 d"),
                                                (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"), (-5, "0 s")])
def test_waiting_times_read_as_people_say_them(seconds: float, text: str) -> None:
    assert humanise_seconds(seconds) == text


DOCUMENTED = [  # the table of docs/care.md#business-hours-and-the-sla-clock
    (local(LONDON, 2026, 11, 6, 16, 30), 7200, WEEKDAYS_0900_1730, local(LONDON, 2026, 11, 9, 9, 30),
     local(LONDON, 2026, 11, 9, 10, 0)),
    (local(LONDON, 2026, 11, 6, 16, 30), 7200, WEEKDAYS_0900_1700, local(LONDON, 2026, 11, 9, 10, 0),
     local(LONDON, 2026, 11, 9, 10, 30)),
    (local(LONDON, 2026, 11, 7, 11, 0), 1800, WEEKDAYS_0900_1730, local(LONDON, 2026, 11, 9, 9, 22, 30),
     local(LONDON, 2026, 11, 9, 9, 30)),
    (local(LONDON, 2026, 12, 24, 17, 0), 3600, BusinessHours("Europe/London", WEEKDAYS_0900_1730.days, ("2026-12-25",)),
     local(LONDON, 2026, 12, 28, 9, 15), local(LONDON, 2026, 12, 28, 9, 30)),
    (local(BERLIN, 2026, 10, 23, 16, 0), 7200,
     BusinessHours("Europe/Berlin", dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), (("09:00", "17:00"),))),
     local(BERLIN, 2026, 10, 26, 9, 30), datetime(2026, 10, 26, 9, 0, tzinfo=UTC)),
]


@pytest.mark.parametrize(("opened", "sla_s", "hours", "warned", "due"), DOCUMENTED)
def test_the_documented_examples(opened: datetime, sla_s: int, hours: BusinessHours, warned: datetime,
                                 due: datetime) -> None:
    assert warn_time(opened, sla_s, hours, 0.75) == warned
    assert sla_deadline(opened, sla_s, hours) == due
