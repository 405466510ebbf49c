"""The accepted shape of an incoming mention and its normalisation to a RawMention record.

Validation is strict (unknown fields are refused, so a typo never silently drops data) and every
problem is reported with its path, e.g. ``mentions[3].created_at``.

Whatever storage would refuse later is refused here, so an accepted mention is never lost on the
way: no string may hold a NUL character (PostgreSQL text cannot), and `check_times` refuses a
publication time older than the retention period (storage would drop it) and an engagement
observation time in the future (storage keeps the newest observation, so such counts would never
be updated again). The push API, the connectors and replay all validate with this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, field_validator

MENTION_ID_NAMESPACE = uuid.UUID("6f0e4c3a-5d1b-4f5e-9a57-ea7f0c11e0a1")
MAX_CLOCK_SKEW = timedelta(minutes=10)
MAX_COUNT = 2**63 - 1  # Avro long
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
# How long before the storage retention horizon ingest stops accepting: a mention accepted just inside
# the window must still be inside it when storage writes it, moments later.
RETENTION_MARGIN = timedelta(hours=1)


def _rfc3339(value: Any) -> Any:
    """Timestamps arrive as RFC 3339 strings; a bare number would be read as epoch seconds, silently."""
    if isinstance(value, (int, float)):
        raise ValueError("expected an RFC 3339 date-time string with a time zone, e.g. 2026-11-02T08:00:03Z, not a number")
    return value


_When = TypeVar("_When", datetime, datetime | None)


def _not_before_1970(value: _When) -> _When:
    if value is not None and value < EARLIEST:
        raise ValueError(f"{value.isoformat()} is before 1970")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def mention_id(source: str, source_id: str) -> str:
    """Stable id of a post: the same (source, source_id) always gives the same id (UUIDv5)."""
    return str(uuid.uuid5(MENTION_ID_NAMESPACE, f"{source}\x1f{source_id}"))


def check_storable(v: str) -> str:
    """No NUL character: PostgreSQL text cannot hold one, so storage would dead-letter the mention."""
    if "\x00" in v:
        raise ValueError("contains a NUL character (U+0000), which storage cannot hold")
    return v


def check_text(v: str) -> str:
    """A mention text must have more than whitespace and no NUL character."""
    if not v.strip():
        raise ValueError("text is blank")
    if "\x00" in v:
        raise ValueError("text contains a NUL character")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*")
    @classmethod
    def _storable(cls, v: Any) -> Any:
        """Every string field, present and future, ends in a PostgreSQL text column."""
        return check_storable(v) if isinstance(v, str) else v


class AuthorIn(_Strict):
    id: str | None = Field(None, max_length=256)
    handle: str | None = Field(None, max_length=256)
    display_name: str | None = Field(None, max_length=512)
    followers: StrictInt | None = Field(None, ge=0, le=MAX_COUNT)

    @field_validator("handle")
    @classmethod
    def _no_at(cls, v: str | None) -> str | None:
        return v.lstrip("@") if v else v


class EngagementIn(_Strict):
    likes: StrictInt = Field(0, ge=0, le=MAX_COUNT)
    reposts: StrictInt = Field(0, ge=0, le=MAX_COUNT)
    replies: StrictInt = Field(0, ge=0, le=MAX_COUNT)
    observed_at: Timestamp | None = Field(
        None, description="When the source reported these counts (RFC 3339). Default: when ingest accepted the mention."
    )

    @field_validator("observed_at")
    @classmethod
    def _plausible_time(cls, v: datetime | None) -> datetime | None:
        return _not_before_1970(v)


class MentionIn(_Strict):
    """One mention as a source pushes it."""

    source: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$", description="Lower-case source name, e.g. twitter.")
    source_id: str = Field(..., min_length=1, max_length=256, description="The post's id at its source.")
    text: str = Field(..., min_length=1, description="The text as published.")
    created_at: Timestamp = Field(..., description="Publication time, RFC 3339 with a time zone.")
    url: str | None = Field(None, max_length=2048, pattern=r"^https?://\S+$")
    lang: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})?$", description="Language the source declares.")
    author: AuthorIn = Field(default_factory=AuthorIn)
    in_reply_to: str | None = Field(None, max_length=256)
    reposted_from: str | None = Field(None, max_length=256)
    engagement: EngagementIn = Field(default_factory=EngagementIn)
    title: str | None = Field(None, max_length=2048, description="Headline of an article or feed item.")
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country, upper case.")

    @field_validator("created_at")
    @classmethod
    def _plausible_time(cls, v: datetime) -> datetime:
        return _not_before_1970(v)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        return check_text(v)


class MentionBatch(_Strict):
    """The body of ``POST /v1/mentions``."""

    mentions: list[MentionIn] = Field(..., min_length=1)


def check_times(m: MentionIn, now: datetime, retention_days: int = 0) -> list[tuple[str, str]]:
    """(field path, message) for each time storage would refuse or mishandle.

    A publication time in the future (beyond MAX_CLOCK_SKEW) or before the retention horizon
    (`retention_days` before now, less RETENTION_MARGIN; 0 = storage keeps everything), and an
    engagement observation time in the future: storage keeps the newest observation of a mention,
    so counts dated in the future would never be updated again.
    """
    problems = []
    if m.created_at - now > MAX_CLOCK_SKEW:
        problems.append(("created_at", f"{m.created_at.isoformat()} is in the future"))
    elif retention_days and now - m.created_at > timedelta(days=retention_days) - RETENTION_MARGIN:
        problems.append(("created_at", (f"{m.created_at.isoformat()} is older than the retention period of "
                                       f"{retention_days} days (EARFUL_STORAGE_RETENTION_DAYS): storage would not keep it")))
    observed = m.engagement.observed_at
    if observed is not None and observed - now > MAX_CLOCK_SKEW:
        problems.append(("engagement.observed_at", f"{observed.isoformat()} is in the future"))
    return problems


def check_limits(batch: MentionBatch, max_batch: int, max_text_chars: int, now: datetime,
                 retention_days: int = 0) -> list[dict[str, str]]:
    """Problems the settings-dependent limits find (size, text length, times; see `check_times`)."""
    problems = []
    if len(batch.mentions) > max_batch:
        problems.append({"path": "mentions", "message": f"{len(batch.mentions)} mentions; at most {max_batch} per request"})
    for i, m in enumerate(batch.mentions):
        if len(m.text) > max_text_chars:
            problems.append({"path": f"mentions[{i}].text", "message": f"{len(m.text)} characters; at most {max_text_chars}"})
        problems += [{"path": f"mentions[{i}].{path}", "message": message}
                     for path, message in check_times(m, now, retention_days)]
    return problems


def to_record(
    m: MentionIn,
    received_at: datetime,
    *,
    connector: str = "push",
    content_type: str = "application/json",
    fetched_at: datetime | None = None,
) -> dict[str, Any]:
    """A validated mention → the RawMention Avro record.

    Engagement counts are dated by the source's own observation time when it gave one, else by
    when the mention was fetched (connectors) or accepted (push).
    """
    engagement = m.engagement
    observed_at = engagement.observed_at or fetched_at or received_at
    return {
        "schema_version": 2,
        "mention_id": mention_id(m.source, m.source_id),
        "source": m.source,
        "source_id": m.source_id,
        "url": m.url,
        "author": m.author.model_dump(),
        "text": m.text,
        "lang": m.lang,
        "created_at": m.created_at.astimezone(timezone.utc),
        "received_at": received_at,
        "in_reply_to": m.in_reply_to,
        "reposted_from": m.reposted_from,
        "engagement": {"likes": engagement.likes, "reposts": engagement.reposts, "replies": engagement.replies,
                       "observed_at": observed_at.astimezone(timezone.utc)},
        "title": m.title,
        "country": m.country,
        "connector": connector,
        "content_type": content_type,
        "fetched_at": fetched_at,
    }


def format_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors → [{path: 'mentions[3].created_at', message: ...}]."""
    out = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p != "body"]
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append({"path": path or "(body)", "message": err.get("msg", "invalid")})
    return out
