"""What every connector shares: turning a source item into a validated RawMention record."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import pydantic

from earful.core.errors import ValidationError
from earful.ingest.model import MAX_CLOCK_SKEW, MentionIn, format_problems, to_record
from earful.ingest.publisher import FETCHED, Publisher, record_error

log = logging.getLogger(__name__)


class Connector:
    """A source reader: `run(stop)` until `stop` is set; progress is published through `publisher`."""

    name = "connector"

    def __init__(self, publisher: Publisher, max_text_chars: int) -> None:
        self.publisher = publisher
        self.max_text_chars = max_text_chars

    async def run(self, stop: asyncio.Event) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def fetched(self, n: int = 1) -> None:
        FETCHED.labels(self.name).inc(n)

    def error(self, kind: str) -> None:
        record_error(self.name, kind)

    def to_record(self, item: dict[str, Any], *, content_type: str, fetched_at: datetime) -> dict[str, Any] | None:
        """A source item in the push API's shape → a RawMention record, or None (counted, logged) if unusable.

        Sources are less careful than push clients: an over-long text is cut to the limit, a
        publication time in the future (clock or time-zone bugs) becomes the fetch time.
        """
        text = item.get("text")
        if isinstance(text, str) and len(text) > self.max_text_chars:
            item = {**item, "text": text[: self.max_text_chars - 1] + "…"}
        try:
            mention = MentionIn.model_validate(item)
        except pydantic.ValidationError as exc:
            self.error(ValidationError.kind)
            problems = "; ".join(f"{p['path']}: {p['message']}" for p in format_problems(exc.errors()))
            log.warning("skipped an unusable item", extra={"connector": self.name, "source_id": str(item.get("source_id"))[:200],
                                                         "problems": problems[:500]})
            return None
        if mention.created_at - fetched_at > MAX_CLOCK_SKEW:
            mention = mention.model_copy(update={"created_at": fetched_at})
        return to_record(mention, datetime.now(timezone.utc), connector=self.name, content_type=content_type,
                         fetched_at=fetched_at)
