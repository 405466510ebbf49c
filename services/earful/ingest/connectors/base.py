"""What every connector shares: turning a source item into a validated RawMention record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from typing import Any

import aiohttp
import httpx
import pydantic

from earful.core.addresses import AddressPolicy, guarded_session, guarded_transport
from earful.core.errors import SourceError, ValidationError
from earful.core.mention import MAX_CLOCK_SKEW, MentionIn, check_times, format_problems, to_record
from earful.core.retry import Backoff, wait_or_stop
from earful.core.settings import Settings
from earful.ingest.publisher import FETCHED, Publisher, record_error

log = logging.getLogger(__name__)


def json_object(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: sources leave out or null optional objects."""
    return value if isinstance(value, dict) else {}


def source_transport(settings: Settings, configured_urls: Iterable[str]) -> httpx.AsyncHTTPTransport:
    """The HTTP transport of a polling connector: the configured URLs' origins are fetched as given;
    anywhere else (where a redirect leads) only public addresses or EARFUL_INGEST_ALLOWED_NETWORKS,
    checked on the address connected to, so a source cannot point Earful at internal services."""
    return guarded_transport(source_policy(settings), configured_urls)


def source_session(settings: Settings, configured_urls: Iterable[str], **session_options: Any) -> aiohttp.ClientSession:
    """The aiohttp session of a streaming connector (WebSockets), with the guarantee `source_transport`
    gives: the configured URLs' origins as given, anywhere a redirect leads only public addresses or
    EARFUL_INGEST_ALLOWED_NETWORKS. Call it inside the event loop."""
    return guarded_session(source_policy(settings), configured_urls, **session_options)


def source_policy(settings: Settings) -> AddressPolicy:
    """Where connectors may connect beyond their configured URLs (EARFUL_INGEST_ALLOWED_NETWORKS)."""
    return AddressPolicy(settings.ingest_allowed_networks, "EARFUL_INGEST_ALLOWED_NETWORKS")


class Connector:
    """A source reader: `run(stop)` until `stop` is set; progress is published through `publisher`."""

    name = "connector"

    def __init__(self, publisher: Publisher, max_text_chars: int, retention_days: int = 0) -> None:
        self.publisher = publisher
        self.max_text_chars = max_text_chars
        self.retention_days = retention_days

    async def run(self, stop: asyncio.Event) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def fetched(self, n: int = 1) -> None:
        FETCHED.labels(self.name).inc(n)

    def error(self, kind: str) -> None:
        record_error(self.name, kind)

    async def repeat(self, stop: asyncio.Event, where: str, once: Callable[[], Awaitable[float | None]], *,
                     backoff_base_s: float, backoff_max_s: float) -> None:
        """Call `once` until `stop` is set, pausing as long as it returns (None: the source is done).

        A SourceError is counted and logged, and the next call waits with exponential backoff (or
        as long as the source asked with Retry-After, if longer); a success resets the backoff.
        """
        backoff = Backoff(backoff_base_s, backoff_max_s)
        while not stop.is_set():
            try:
                pause = await once()
                if pause is None:
                    return
                backoff.reset()
            except SourceError as exc:
                delay = backoff.next_delay()
                self.error(SourceError.kind)
                log.warning("source failed; backing off", extra={"connector": self.name, "source": where,
                                                                  "error": str(exc)[:300], "errors_in_a_row": backoff.attempt})
                pause = max(exc.retry_after_s, delay)
            except asyncio.CancelledError:
                if stop.is_set():  # cancelled while publishing on the way out: state was not saved, nothing is lost
                    return
                raise
            if await wait_or_stop(stop, pause):
                return

    def to_record(self, item: dict[str, Any], *, content_type: str, fetched_at: datetime) -> dict[str, Any] | None:
        """A source item in the push API's shape → a RawMention record, or None (counted, logged) if unusable.

        Sources are less careful than push clients: an over-long text is cut to the limit, a
        publication time in the future (clock or time-zone bugs) becomes the fetch time. What
        storage would refuse (a NUL character, a publication time older than the retention period,
        an observation time in the future) is skipped and counted, like any invalid item.
        """
        text = item.get("text")
        if isinstance(text, str) and len(text) > self.max_text_chars:
            item = {**item, "text": text[: self.max_text_chars - 1] + "…"}
        try:
            mention = MentionIn.model_validate(item)
        except pydantic.ValidationError as exc:
            self._skip(item, [(p["path"], p["message"]) for p in format_problems(exc.errors())])
            return None
        if mention.created_at - fetched_at > MAX_CLOCK_SKEW:
            mention = mention.model_copy(update={"created_at": fetched_at})
        problems = check_times(mention, fetched_at, self.retention_days)
        if problems:
            self._skip(item, problems)
            return None
        return to_record(mention, datetime.now(timezone.utc), connector=self.name, content_type=content_type,
                         fetched_at=fetched_at)

    def _skip(self, item: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        """Count and log an item that cannot become a mention."""
        self.error(ValidationError.kind)
        log.warning("skipped an unusable item", extra={"connector": self.name, "source_id": str(item.get("source_id"))[:200],
                                                     "problems": "; ".join(f"{path}: {msg}" for path, msg in problems)[:500]})
