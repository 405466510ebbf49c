"""Bluesky: the Jetstream WebSocket firehose (JSON), kept only where a watchlist term matches.

Jetstream sends every public post of the network as it is committed, each with ``time_us``
(microseconds). The connector subscribes to ``app.bsky.feed.post`` commits, keeps the posts whose
text matches a watchlist term (the whole firehose would swamp the pipeline), produces them, and
only then saves the cursor: the ``time_us`` of the last event handled. After a restart or a
dropped connection it reconnects with ``cursor=<saved + 1>``, so nothing is skipped or re-sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from earful.core.addresses import refused_in
from earful.core.errors import SourceError
from earful.core.retry import backoff_delay
from earful.core.settings import Settings
from earful.ingest.connectors.base import Connector, json_object, source_session
from earful.ingest.publisher import Publisher
from earful.ingest.state import StateFile, state_name
from earful.watchlists import WatchlistSet

log = logging.getLogger(__name__)

POST = "app.bsky.feed.post"
FLUSH_EVERY_S = 0.5
FLUSH_AT = 200
SAVE_IDLE_CURSOR_EVERY_S = 5.0


def subscribe_url(base: str, cursor: int | None) -> str:
    """The Jetstream subscribe URL for posts, resuming after `cursor` (µs) when given."""
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("wantedCollections", "cursor")]
    query.append(("wantedCollections", POST))
    if cursor is not None:
        query.append(("cursor", str(cursor + 1)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def event_mention(event: Any) -> dict[str, Any] | None:
    """A Jetstream event → a mention in the push API's shape; None for anything but a post create or update.

    Raises SourceError for an event that claims to be a post but lacks what a post must have.
    """
    if not isinstance(event, dict) or event.get("kind") != "commit":
        return None
    commit = event.get("commit")
    if not isinstance(commit, dict) or commit.get("collection") != POST or commit.get("operation") not in ("create", "update"):
        return None
    record, did, rkey = commit.get("record"), event.get("did"), commit.get("rkey")
    if not isinstance(record, dict) or not isinstance(did, str) or not isinstance(rkey, str):
        raise SourceError("post commit without record, did or rkey")
    text = record.get("text")
    if not isinstance(text, str):
        raise SourceError(f"post at://{did}/{POST}/{rkey} has no text")
    langs = record.get("langs")
    reply = json_object(record.get("reply"))
    parent = json_object(reply.get("parent"))
    created = record.get("createdAt")
    if not isinstance(created, str) and isinstance(event.get("time_us"), int):
        created = datetime.fromtimestamp(event["time_us"] / 1e6, timezone.utc).isoformat()
    return {
        "source": "bluesky",
        "source_id": f"at://{did}/{POST}/{rkey}",
        "text": text,
        "created_at": created,
        "url": f"https://bsky.app/profile/{did}/post/{rkey}",
        "lang": (langs[0].split("-")[0].lower() if isinstance(langs, list) and langs and isinstance(langs[0], str) else None),
        "author": {"id": did},
        "in_reply_to": parent.get("uri") if isinstance(parent.get("uri"), str) else None,
    }


class BlueskyConnector(Connector):
    """Reads Jetstream, filters by the watchlists' terms, resumes from the saved cursor."""

    name = "bluesky"

    def __init__(self, publisher: Publisher, settings: Settings, watchlists: Callable[[], WatchlistSet]) -> None:
        super().__init__(publisher, settings.ingest_max_text_chars, settings.storage_retention_days)
        self.settings = settings
        self.url = settings.ingest_bluesky_url or ""
        self.watchlists = watchlists
        self.state_file = StateFile(settings.ingest_state_dir, state_name("bluesky", self.url))

    async def run(self, stop: asyncio.Event) -> None:
        state = self.state_file.load()
        timeout = aiohttp.ClientTimeout(total=None, connect=self.settings.ingest_http_timeout_s)
        reconnect_max = self.settings.ingest_reconnect_max_s
        # The configured URL is connected as given; a redirect elsewhere only to public addresses or
        # EARFUL_INGEST_ALLOWED_NETWORKS, like the polling connectors.
        async with source_session(self.settings, [self.url], timeout=timeout,
                                  headers={"User-Agent": self.settings.ingest_user_agent}) as session:

            async def once() -> float:
                if not await self._consume(session, state, stop) and not stop.is_set():
                    raise SourceError("jetstream closed the connection before sending anything")
                return backoff_delay(1, 1.0, reconnect_max)

            await self.repeat(stop, self.url, once, backoff_base_s=1.0, backoff_max_s=reconnect_max)

    async def _consume(self, session: aiohttp.ClientSession, state: dict[str, Any], stop: asyncio.Event) -> int:
        url = subscribe_url(self.url, state.get("cursor"))
        pending: list[dict[str, Any]] = []
        last_time_us = state.get("cursor")
        received = 0
        flushed_at = saved_at = time.monotonic()

        async def flush(final: bool = False) -> None:
            nonlocal pending, flushed_at, saved_at
            if pending:
                await self.publisher.publish_until_done(pending, self.name, stop, self.settings.ingest_reconnect_max_s)
            due = final or bool(pending) or time.monotonic() - saved_at >= SAVE_IDLE_CURSOR_EVERY_S
            if last_time_us is not None and last_time_us != state.get("cursor") and due:
                state["cursor"] = last_time_us
                self.state_file.save(state)
                saved_at = time.monotonic()
            pending, flushed_at = [], time.monotonic()

        try:
            async with session.ws_connect(url, heartbeat=30.0, max_msg_size=4 * 1024 * 1024) as ws:
                log.info("jetstream connected", extra={"url": url})
                while not stop.is_set():
                    try:
                        msg = await ws.receive(timeout=FLUSH_EVERY_S)
                    except TimeoutError:
                        await flush()
                        continue
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                        break
                    if msg.type == aiohttp.WSMsgType.ERROR:
                        raise SourceError(f"jetstream connection error: {ws.exception()!r}")
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    received += 1
                    time_us = self._handle(msg.data, state.get("cursor"), pending)
                    if time_us is not None:
                        last_time_us = time_us
                    if len(pending) >= FLUSH_AT or time.monotonic() - flushed_at >= FLUSH_EVERY_S:
                        await flush()
                await flush(final=True)
        except (aiohttp.ClientError, OSError) as exc:
            await flush(final=True)
            refused = refused_in(exc)
            if refused is not None:
                raise SourceError(f"refused to connect: {refused} (jetstream at {url})") from exc
            raise SourceError(f"cannot read jetstream at {url}: {exc!r}") from exc
        return received

    def _handle(self, data: str, cursor: int | None, pending: list[dict[str, Any]]) -> int | None:
        """Parse one message; queue it if it is a matching post. Returns its time_us (None if unusable)."""
        self.fetched()
        try:
            event = json.loads(data)
        except ValueError:
            self.error("malformed_event")
            log.warning("skipped a malformed jetstream message", extra={"data": data[:200]})
            return None
        time_us = event.get("time_us") if isinstance(event, dict) else None
        if not isinstance(time_us, int):
            self.error("malformed_event")
            return None
        if cursor is not None and time_us <= cursor:
            return None  # already handled before a restart
        try:
            mention = event_mention(event)
        except SourceError as exc:
            self.error("malformed_event")
            log.warning("skipped a malformed post", extra={"error": str(exc)[:200]})
            return time_us
        if mention is None or not self.watchlists().match(mention["text"]):
            return time_us
        fetched_at = datetime.now(timezone.utc)
        record = self.to_record(mention, content_type="application/json", fetched_at=fetched_at)
        if record is not None:
            pending.append(record)
        return time_us
