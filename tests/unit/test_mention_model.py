"""The ingest model: stable ids, strict validation with paths, limits and the RawMention record."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earful.core.codec import AvroCodec, SchemaStore
from earful.core.mention import (
    MAX_CLOCK_SKEW,
    RETENTION_MARGIN,
    MentionBatch,
    MentionIn,
    check_limits,
    format_problems,
    mention_id,
    to_record,
)
from earful.storage.writer import MENTION_COLUMNS, expired, mention_row, nul_columns, retention_horizon
from tests.support import enriched_record

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2025, 3, 14, 9, 30, 1, 412000, tzinfo=timezone.utc)

VALID: dict[str, Any] = {
    "source": "twitter",
    "source_id": "1900413877765287936",
    "text": "@AcmeAir my flight to Zürich was cancelled again 😡 #AcmeAir",
    "created_at": "2025-03-14T10:29:58+01:00",
    "url": "https://twitter.com/jdoe/status/1900413877765287936",
    "lang": "en",
    "author": {"id": "81234567", "handle": "@jdoe", "display_name": "Jane Doe", "followers": 1843},
    "in_reply_to": "1900413000000000000",
    "engagement": {"likes": 12, "reposts": 3},
}
MINIMAL: dict[str, Any] = {
    "source": "mastodon",
    "source_id": "113998213471920466",
    "text": "Globex ist schon wieder down",
    "created_at": "2025-03-14T09:31:12Z",
}


# --- mention_id -------------------------------------------------------------------------------


def test_mention_id_is_stable() -> None:
    assert mention_id("twitter", "123") == mention_id("twitter", "123")
    assert mention_id("twitter", "123") == str(uuid.uuid5(uuid.UUID("6f0e4c3a-5d1b-4f5e-9a57-ea7f0c11e0a1"), "twitter\x1f123"))


def test_mention_id_is_a_uuid5() -> None:
    assert uuid.UUID(mention_id("reddit", "t1_abc")).version == 5


@pytest.mark.parametrize(
    "a,b",
    [
        (("twitter", "123"), ("twitter", "124")),
        (("twitter", "123"), ("mastodon", "123")),
        (("ab", "c"), ("a", "bc")),  # the separator keeps the parts apart
        (("twitter", "123"), ("twitter", "123 ")),
    ],
)
def test_mention_id_is_distinct(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert mention_id(*a) != mention_id(*b)


# --- valid input → record ---------------------------------------------------------------------


def test_valid_mention_to_record() -> None:
    m = MentionIn.model_validate(VALID)
    record = to_record(m, NOW)
    assert record == {
        "schema_version": 2,
        "mention_id": mention_id("twitter", "1900413877765287936"),
        "source": "twitter",
        "source_id": "1900413877765287936",
        "url": "https://twitter.com/jdoe/status/1900413877765287936",
        "author": {"id": "81234567", "handle": "jdoe", "display_name": "Jane Doe", "followers": 1843},
        "text": VALID["text"],
        "lang": "en",
        "created_at": datetime(2025, 3, 14, 9, 29, 58, tzinfo=timezone.utc),
        "received_at": NOW,
        "in_reply_to": "1900413000000000000",
        "reposted_from": None,
        "engagement": {"likes": 12, "reposts": 3, "replies": 0, "observed_at": NOW},
        "title": None,
        "country": None,
        "connector": "push",
        "content_type": "application/json",
        "fetched_at": None,
    }
    assert record["created_at"].utcoffset() == timedelta(0)


def test_source_observation_time_title_and_country_are_kept() -> None:
    m = MentionIn.model_validate({**VALID, "title": "Outage", "country": "CH",
                                  "engagement": {"likes": 1, "observed_at": "2025-03-14T09:00:00+01:00"}})
    record = to_record(m, NOW, connector="replay", content_type="text/csv", fetched_at=NOW)
    assert record["engagement"]["observed_at"] == datetime(2025, 3, 14, 8, 0, tzinfo=timezone.utc)
    assert (record["title"], record["country"], record["connector"], record["content_type"], record["fetched_at"]) == \
        ("Outage", "CH", "replay", "text/csv", NOW)


def test_minimal_mention_gets_defaults() -> None:
    record = to_record(MentionIn.model_validate(MINIMAL), NOW)
    assert record["author"] == {"id": None, "handle": None, "display_name": None, "followers": None}
    assert record["engagement"] == {"likes": 0, "reposts": 0, "replies": 0, "observed_at": NOW}
    assert record["url"] is None and record["lang"] is None
    assert record["created_at"] == datetime(2025, 3, 14, 9, 31, 12, tzinfo=timezone.utc)


def test_text_is_kept_unmodified() -> None:
    text = "  Globex\u00a0rocks \U0001F680\n\tsecond line  "
    assert to_record(MentionIn.model_validate({**MINIMAL, "text": text}), NOW)["text"] == text


@pytest.mark.parametrize("payload", [VALID, MINIMAL], ids=["full", "minimal"])
def test_record_encodes_with_the_raw_mention_schema(payload: dict[str, Any]) -> None:
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store.current("raw_mention"), store)
    record = to_record(MentionIn.model_validate(payload), NOW)
    assert codec.decode(codec.encode(record)) == record


# --- invalid input → problems with paths ------------------------------------------------------


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()

INVALID = [
    # (id, mention, expected path)
    ("source-upper-case", _with(("source",), "Twitter"), "mentions[1].source"),
    ("source-with-space", _with(("source",), "my source"), "mentions[1].source"),
    ("source-empty", _with(("source",), ""), "mentions[1].source"),
    ("source-id-missing", _with(("source_id",), _DELETE), "mentions[1].source_id"),
    ("source-id-empty", _with(("source_id",), ""), "mentions[1].source_id"),
    ("text-missing", _with(("text",), _DELETE), "mentions[1].text"),
    ("text-empty", _with(("text",), ""), "mentions[1].text"),
    ("text-blank", _with(("text",), " \n\t "), "mentions[1].text"),
    ("text-nul", _with(("text",), "Globex\x00down"), "mentions[1].text"),
    ("created-at-naive", _with(("created_at",), "2025-03-14T09:29:58"), "mentions[1].created_at"),
    ("created-at-garbage", _with(("created_at",), "yesterday"), "mentions[1].created_at"),
    ("created-at-number", _with(("created_at",), 1741944598), "mentions[1].created_at"),  # not read as epoch seconds
    ("created-at-float", _with(("created_at",), 2.2e-308), "mentions[1].created_at"),
    ("created-at-before-1970", _with(("created_at",), "0147-06-30T13:17:23-04:46"), "mentions[1].created_at"),
    ("observed-at-number", _with(("engagement", "observed_at"), 0), "mentions[1].engagement.observed_at"),
    ("observed-at-naive", _with(("engagement", "observed_at"), "2025-03-14T09:29:58"), "mentions[1].engagement.observed_at"),
    ("country-lower-case", _with(("country",), "de"), "mentions[1].country"),
    ("title-too-long", _with(("title",), "x" * 2049), "mentions[1].title"),
    ("url-not-http", _with(("url",), "ftp://example.com/x"), "mentions[1].url"),
    ("url-with-space", _with(("url",), "https://example.com/a b"), "mentions[1].url"),
    ("lang-bad", _with(("lang",), "English"), "mentions[1].lang"),
    ("followers-negative", _with(("author", "followers"), -1), "mentions[1].author.followers"),
    ("likes-negative", _with(("engagement", "likes"), -3), "mentions[1].engagement.likes"),
    # counts are JSON integers: a string, a boolean or a float is refused, never silently converted
    ("followers-string", _with(("author", "followers"), "1843"), "mentions[1].author.followers"),
    ("followers-boolean", _with(("author", "followers"), True), "mentions[1].author.followers"),
    ("reposts-float", _with(("engagement", "reposts"), 3.0), "mentions[1].engagement.reposts"),
    ("unknown-field", _with(("likes",), 3), "mentions[1].likes"),
    ("unknown-author-field", _with(("author", "verified"), True), "mentions[1].author.verified"),
]


@pytest.mark.parametrize("mention,path", [(m, p) for _, m, p in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_mention_is_reported_with_its_path(mention: dict[str, Any], path: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        MentionBatch.model_validate({"mentions": [VALID, mention]})
    problems = format_problems(info.value.errors())
    assert [p["path"] for p in problems] == [path]
    assert all(p["message"] for p in problems)


def test_every_problem_is_reported() -> None:
    bad = {**VALID, "source": "Twitter", "text": " ", "likes": 1}
    with pytest.raises(pydantic.ValidationError) as info:
        MentionBatch.model_validate({"mentions": [bad, VALID, {**VALID, "created_at": "2025-03-14T09:29:58"}]})
    paths = sorted(p["path"] for p in format_problems(info.value.errors()))
    assert paths == ["mentions[0].likes", "mentions[0].source", "mentions[0].text", "mentions[2].created_at"]


@pytest.mark.parametrize(
    "body,path",
    [({"mentions": []}, "mentions"), ({}, "mentions"), ({"mentions": [VALID], "extra": 1}, "extra")],
    ids=["empty-list", "no-mentions", "unknown-top-level"],
)
def test_batch_shape_problems(body: dict[str, Any], path: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        MentionBatch.model_validate(body)
    assert [p["path"] for p in format_problems(info.value.errors())] == [path]


@pytest.mark.parametrize(
    "loc,path",
    [
        (("body", "mentions", 3, "created_at"), "mentions[3].created_at"),
        (("mentions", 0, "author", "followers"), "mentions[0].author.followers"),
        (("body",), "(body)"),
        ((), "(body)"),
        (("body", 2), "[2]"),
    ],
)
def test_format_problems_paths(loc: tuple[Any, ...], path: str) -> None:
    assert format_problems([{"loc": loc, "msg": "bad"}]) == [{"path": path, "message": "bad"}]


def test_format_problems_without_message() -> None:
    assert format_problems([{"loc": ("mentions",)}]) == [{"path": "mentions", "message": "invalid"}]


# --- settings-dependent limits ----------------------------------------------------------------


def _batch(*mentions: dict[str, Any]) -> MentionBatch:
    return MentionBatch.model_validate({"mentions": list(mentions)})


def test_limits_pass_a_normal_batch() -> None:
    assert check_limits(_batch(VALID, MINIMAL), max_batch=2, max_text_chars=len(VALID["text"]), now=NOW) == []


def test_batch_too_big() -> None:
    problems = check_limits(_batch(MINIMAL, MINIMAL, MINIMAL), max_batch=2, max_text_chars=1000, now=NOW)
    assert [p["path"] for p in problems] == ["mentions"]
    assert "3" in problems[0]["message"] and "2" in problems[0]["message"]


def test_text_too_long() -> None:
    long = {**MINIMAL, "text": "x" * 101}
    problems = check_limits(_batch(MINIMAL, long), max_batch=10, max_text_chars=100, now=NOW)
    assert [p["path"] for p in problems] == ["mentions[1].text"]
    assert "101" in problems[0]["message"]


def test_text_length_counts_code_points() -> None:
    emoji = {**MINIMAL, "text": "\U0001F680" * 100}  # 100 code points, 400 UTF-8 bytes
    assert check_limits(_batch(emoji), max_batch=10, max_text_chars=100, now=NOW) == []


@pytest.mark.parametrize(
    "ahead,problem",
    [
        (timedelta(0), False),
        (MAX_CLOCK_SKEW - timedelta(seconds=1), False),
        (MAX_CLOCK_SKEW, False),
        (MAX_CLOCK_SKEW + timedelta(seconds=1), True),
        (timedelta(days=1), True),
        (-timedelta(days=365), False),
    ],
    ids=["now", "within-skew", "at-skew", "beyond-skew", "tomorrow", "last-year"],
)
def test_future_created_at(ahead: timedelta, problem: bool) -> None:
    created = (NOW + ahead).astimezone(timezone(timedelta(hours=-5)))  # the zone must not matter
    m = {**MINIMAL, "created_at": created.isoformat()}
    problems = check_limits(_batch(MINIMAL, m), max_batch=10, max_text_chars=1000, now=NOW)
    assert [p["path"] for p in problems] == (["mentions[1].created_at"] if problem else [])


def test_all_limits_reported_together() -> None:
    future = {**MINIMAL, "created_at": (NOW + timedelta(hours=2)).isoformat(), "text": "y" * 20}
    problems = check_limits(_batch(future, future), max_batch=1, max_text_chars=10, now=NOW)
    assert sorted(p["path"] for p in problems) == [
        "mentions", "mentions[0].created_at", "mentions[0].text", "mentions[1].created_at", "mentions[1].text",
    ]


# --- what storage would refuse is refused here, with its path ---------------------------------


def _string_fields(model: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    """Every string field of the model, nested ones as author.handle: all of them reach a text column."""
    out = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        nested = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type)
                  and issubclass(a, pydantic.BaseModel)]
        if nested:
            out += _string_fields(nested[0], f"{prefix}{name}.")
        elif annotation is str or str in getattr(annotation, "__args__", ()):
            out.append(prefix + name)
    return out


STRING_FIELDS = _string_fields(MentionIn)


def test_every_string_field_is_covered() -> None:
    assert {"source_id", "text", "url", "author.id", "author.handle", "author.display_name", "title", "in_reply_to",
            "reposted_from", "source", "lang", "country"} <= set(STRING_FIELDS)


@pytest.mark.parametrize("path", STRING_FIELDS)
def test_a_nul_character_in_any_string_field_is_refused_with_its_path(path: str) -> None:
    """PostgreSQL text cannot hold NUL: accepted, such a mention would end in the dead-letter queue."""
    keys = tuple(path.split("."))
    current: Any = VALID
    for key in keys:
        current = current.get(key) if isinstance(current, dict) else None
    value = current if isinstance(current, str) else "https://a.example/b" if path == "url" else "ab"
    mention = _with(keys, value[:1] + "\x00" + value[1:])
    with pytest.raises(pydantic.ValidationError) as info:
        MentionBatch.model_validate({"mentions": [VALID, mention]})
    assert [p["path"] for p in format_problems(info.value.errors())] == [f"mentions[1].{path}"]


@pytest.mark.parametrize(
    ("age", "days", "problem"),
    [
        (timedelta(days=30), 395, False),
        (timedelta(days=394), 395, False),
        (timedelta(days=395) - RETENTION_MARGIN + timedelta(seconds=1), 395, True),  # would expire on its way to storage
        (timedelta(days=396), 395, True),
        (timedelta(days=3650), 395, True),
        (timedelta(days=3650), 0, False),  # 0: storage keeps everything
        (timedelta(days=8), 7, True),
    ],
    ids=["last-month", "inside", "at-the-edge", "just-outside", "ten-years", "keep-everything", "short-retention"],
)
def test_created_at_older_than_the_retention_period_is_refused(age: timedelta, days: int, problem: bool) -> None:
    m = {**MINIMAL, "created_at": (NOW - age).isoformat()}
    problems = check_limits(_batch(MINIMAL, m), max_batch=10, max_text_chars=1000, now=NOW, retention_days=days)
    assert [p["path"] for p in problems] == (["mentions[1].created_at"] if problem else [])
    if problem:
        assert "retention" in problems[0]["message"]


@pytest.mark.parametrize(
    ("observed_at", "problem"),
    [
        (NOW.isoformat(), False),
        ((NOW + MAX_CLOCK_SKEW).isoformat(), False),
        ((NOW + MAX_CLOCK_SKEW + timedelta(seconds=1)).isoformat(), True),
        ((NOW + timedelta(days=365)).isoformat(), True),
        ("9999-12-31T23:59:59-01:00", True),  # past the end of datetime in UTC: refused, not a crash
        ((NOW - timedelta(days=3)).isoformat(), False),
    ],
    ids=["now", "at-skew", "beyond-skew", "next-year", "year-9999", "before"],
)
def test_engagement_observed_in_the_future_is_refused(observed_at: str, problem: bool) -> None:
    """Storage keeps the newest observation: counts dated in the future would never be updated again."""
    m = {**MINIMAL, "engagement": {"likes": 1, "observed_at": observed_at}}
    problems = check_limits(_batch(MINIMAL, m), max_batch=10, max_text_chars=1000, now=NOW, retention_days=395)
    assert [p["path"] for p in problems] == (["mentions[1].engagement.observed_at"] if problem else [])


_ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
_TIMES = st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(9999, 12, 30), timezones=_ZONES)
_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_OPTIONAL = st.none() | _TEXT


@st.composite
def _pushed(draw: st.DrawFn) -> dict[str, Any]:
    """A mention as a client might push it, hostile values included (NUL, old and future times)."""
    recent = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2025, 3, 15), timezones=_ZONES)
    author = {k: draw(_OPTIONAL) for k in ("id", "handle", "display_name")}
    engagement: dict[str, Any] = {"likes": draw(st.integers(0, 10**6))}
    if draw(st.booleans()):
        engagement["observed_at"] = draw(recent | _TIMES).isoformat()
    return {
        "source": draw(st.sampled_from(["twitter", "news", "x.y-z"])), "source_id": draw(_TEXT), "text": draw(_TEXT),
        "created_at": draw(recent | _TIMES).isoformat(), "author": author, "engagement": engagement,
        "url": draw(st.none() | _TEXT.map(lambda t: "https://a.example/" + t)),
        **{k: draw(_OPTIONAL) for k in ("title", "in_reply_to", "reposted_from")},
    }


_CODEC = AvroCodec(SchemaStore(SCHEMAS).current("raw_mention"), SchemaStore(SCHEMAS))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(pushed=_pushed(), retention_days=st.sampled_from([0, 7, 395]))
def test_whatever_ingest_accepts_storage_can_write(pushed: dict[str, Any], retention_days: int) -> None:
    """The ingest model and storage's row checks agree: nothing accepted with a 202 is refused later.

    The record goes the whole way a pushed mention goes, without the services: validated, limited,
    to_record, Avro on the raw topic, enriched, storage's row, storage's checks (with storage
    writing it a while after ingest accepted it)."""
    try:
        batch = MentionBatch.model_validate({"mentions": [pushed]})
    except pydantic.ValidationError:
        return
    if check_limits(batch, max_batch=10, max_text_chars=1000, now=NOW, retention_days=retention_days):
        return
    raw = _CODEC.decode(_CODEC.encode(to_record(batch.mentions[0], NOW)))
    row = mention_row(enriched_record(raw, ["acme-air"]))
    assert nul_columns(row) == []
    written_at = NOW + RETENTION_MARGIN - timedelta(seconds=1)
    assert not expired(row, retention_horizon(retention_days or None, written_at))
    observed_at = dict(zip(MENTION_COLUMNS, row))["engagement_observed_at"]
    assert observed_at - NOW <= MAX_CLOCK_SKEW  # a later observation can still replace it


def test_storage_checks_see_what_ingest_refuses() -> None:
    """The checks the property above relies on do find a NUL (in text and in jsonb) and an old row."""
    raw = to_record(MentionIn.model_validate(MINIMAL), NOW)
    enriched = enriched_record({**raw, "author": {**raw["author"], "display_name": "a\x00b"}}, ["acme-air"])
    enriched["entities"] = [{"text": "x\x00", "type": "org", "start": 0, "end": 2}]
    row = mention_row(enriched)
    assert nul_columns(row) == ["author_name", "entities", "facets"]
    assert expired(row, retention_horizon(7, NOW + timedelta(days=8)))
    assert not expired(row, retention_horizon(None, NOW + timedelta(days=8000)))
