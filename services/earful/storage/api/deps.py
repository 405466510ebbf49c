"""FastAPI dependencies shared by the query API's routers: the period, pagination, output format,
and the pool and watchlists a request runs against (the key and its scope: earful.core.auth).

The parameter dependencies only collect values FastAPI has already type-checked; the checks beyond
types (a period's time zones, range and order, a cursor's shape) run when the handler asks for the
result. FastAPI calls a dependency before it has validated the parameters declared after it, so
raising there would change which 422 a request with several bad parameters gets.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar, cast

import asyncpg
from fastapi import Path as PathParam
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError

from earful.storage.api.queries import MINUTE, ceil_to, floor_to
from earful.storage.export import csv_response
from earful.storage.outbox import CorrectionOutbox
from earful.watchlists import WatchlistSet
from earful.watchlists.owned import OwnedHandles

WATCHLIST_PATTERN = r"^[a-z0-9()][a-z0-9()-]{0,63}$"
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
LANG_PATTERN = r"^[a-z]{2,3}$"
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)

Format = Literal["json", "csv"]
CSV_DESCRIPTION = "`json` (default) or `csv` (a spreadsheet-safe export of the listing)."
_T = TypeVar("_T")


def bad_param(where: str, name: str, message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the parameter."""
    return RequestValidationError([{"loc": (where, name), "msg": message, "type": "value_error", "input": None}])


# --- the API's state ------------------------------------------------------------------------------


@dataclass
class ApiContext:
    """What every request of one app runs against (kept in `app.state.query_api`)."""

    pool: asyncpg.Pool
    watchlists: Callable[[], WatchlistSet]
    notification_log_seen: bool = False  # the alerting service creates the table; once there, it stays
    outbox: CorrectionOutbox | None = None  # publishes corrections; None: they wait unpublished in PostgreSQL
    owned_handles: tuple[str, ...] = ()  # EARFUL_OWNED_HANDLES (earful.watchlists.owned)
    _owned: tuple[WatchlistSet | None, OwnedHandles] = field(default=(None, OwnedHandles()), init=False, repr=False)

    def owned(self) -> OwnedHandles:
        """The owned, brand and staff accounts of the watchlists in force and the setting (rebuilt when the set changes)."""
        current = self.watchlists()
        if self._owned[0] is not current:
            self._owned = (current, OwnedHandles.of(current.watchlists.values(), self.owned_handles))
        return self._owned[1]


async def context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.query_api)


async def db_pool(request: Request) -> asyncpg.Pool:
    return (await context(request)).pool


def watchlist_path() -> Any:
    """The `{watchlist_id}` of a watchlist's endpoints."""
    return PathParam(..., pattern=WATCHLIST_PATTERN, description="Watchlist id.")


# --- period ---------------------------------------------------------------------------------------


def aware(name: str, value: datetime | None) -> datetime | None:
    """`value` when it has a time zone and a year PostgreSQL and Python agree on; else a 422 naming `name`."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise bad_param("query", name, "needs a time zone, e.g. 2026-11-02T09:00:00Z")
    if not EARLIEST <= value < LATEST:
        raise bad_param("query", name, f"must be between {EARLIEST.year} and {LATEST.year}")
    return value


def window(from_: datetime | None, to: datetime | None, default: timedelta, align: int = MINUTE,
           now: datetime | None = None) -> tuple[datetime, datetime]:
    """[from, to) aligned outwards to `align` seconds; to defaults to now, from to `default` before to."""
    to = aware("to", to) or (now or datetime.now(timezone.utc))
    from_ = aware("from", from_) or max(EARLIEST, to - default)
    if from_ >= to:
        raise bad_param("query", "from", "must be before 'to'")
    return floor_to(from_, align), ceil_to(to, align)


@dataclass(frozen=True)
class Period:
    """The `from` and `to` of a request, as given."""

    from_: datetime | None
    to: datetime | None

    def window(self, default: timedelta, align: int = MINUTE, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The aligned [from, to) of an aggregate, with defaults (see `window`)."""
        return window(self.from_, self.to, default, align, now)

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The optional bounds of a listing, checked: time zones, years, from before to."""
        from_, to = aware("from", self.from_), aware("to", self.to)
        if from_ and to and from_ >= to:
            raise bad_param("query", "from", "must be before 'to'")
        return from_, to


FROM_DOC = "Start of the period (inclusive, RFC 3339 with a time zone)."
TO_DOC = "End of the period (exclusive)."


def from_query(description: str = FROM_DOC) -> Any:
    """The `from` parameter (`from_` in Python)."""
    return Query(None, alias="from", description=description)


def to_query(description: str = TO_DOC) -> Any:
    return Query(None, description=description)


def period(from_doc: str = FROM_DOC, to_doc: str = TO_DOC) -> Callable[..., Awaitable[Period]]:
    """A dependency reading `from` and `to`, documented as the endpoint means them."""

    async def dependency(from_: datetime | None = from_query(from_doc), to: datetime | None = to_query(to_doc)) -> Period:
        return Period(from_, to)

    return dependency


# --- pagination -----------------------------------------------------------------------------------


def encode_cursor(*values: Any) -> str:
    """The `next_cursor` of a keyset: the last row's sort values, opaque to clients."""
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _cursor_value(kind: str, value: Any) -> Any:
    if kind == "time":
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("not an integer")
        return value
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "str" and not isinstance(value, str):
        raise ValueError("not a string")
    return value  # "str" and "const"


def decode_cursor(cursor: str, kinds: Sequence[str]) -> list[Any]:
    """The keyset values of a `next_cursor`; a cursor that is not one of ours is a 422 naming it."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError("wrong shape")
        return [_cursor_value(kind, value) for kind, value in zip(kinds, raw)]
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_param("query", "cursor", "is not a cursor returned by this listing (use next_cursor as given)") from exc


@dataclass(frozen=True)
class Page:
    """`limit` and `cursor` of a keyset-paginated listing."""

    limit: int
    cursor: str | None

    def after(self, kinds: Sequence[str]) -> list[Any] | None:
        """The keyset values the page starts after, None on the first page."""
        return decode_cursor(self.cursor, kinds) if self.cursor else None

    def cut(self, rows: Sequence[_T]) -> tuple[Sequence[_T], bool]:
        """The page out of `limit + 1` fetched rows, and whether there are more."""
        return rows[:self.limit], len(rows) > self.limit


def pagination(limit_doc: str | None = None) -> Callable[..., Awaitable[Page]]:
    """A dependency reading `limit` (1-500, default 50) and `cursor`."""

    async def dependency(limit: int = Query(50, ge=1, le=500, description=limit_doc),
                         cursor: str | None = Query(None, max_length=500, description="next_cursor of the previous page."),
                         ) -> Page:
        return Page(limit, cursor)

    return dependency


# --- output format --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """The format a listing is answered in: JSON, or a spreadsheet-safe CSV download (export.py)."""

    format: Format

    @property
    def csv(self) -> bool:
        return self.format == "csv"

    def listing(self, body: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str], filename: str) -> Any:
        """`body` as JSON, or `rows` as CSV with `columns`."""
        return csv_response(rows, columns, filename) if self.csv else body


async def output(format: Format = Query("json", description=CSV_DESCRIPTION)) -> Output:
    return Output(format)
