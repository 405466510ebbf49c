"""Mastodon: the streaming API (Server-Sent Events) with reconnect, and REST backfill on every (re)connect.

For every configured instance, one stream per hashtag (``/api/v1/streaming/hashtag?tag=``) and,
if enabled, the federated public timeline (``/api/v1/streaming/public``). Mastodon's streams
cannot be resumed by event id, so each stream remembers the newest status id it produced (state
file) and, before (re)connecting, fills the gap from the matching REST timeline with ``min_id``
paging; configured search queries are backfilled the same way through ``/api/v2/search``.
A status is identified by its ActivityPub ``uri``, so the same post seen through two instances
or two streams is one mention.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx

from earful.core.addresses import AddressRefused
from earful.core.errors import SourceError
from earful.core.http import parse_retry_after
from earful.core.retry import backoff_delay, unless_stopped
from earful.core.settings import Settings
from earful.ingest.connectors.base import Connector, json_object, source_transport
from earful.ingest.publisher import Publisher
from earful.ingest.state import StateFile, state_name
from earful.ingest.text import html_to_text

log = logging.getLogger(__name__)

PAGE = 40  # Mastodon's largest page


# --- Server-Sent Events (pure) -----------------------------------------------------------------


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None


@dataclass
class SseParser:
    """Line-by-line parser of an ``text/event-stream`` (the WHATWG rules: event, data, id; comments ignored)."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None  # comment / heartbeat (Mastodon sends ":thump")
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None


# --- statuses → mentions (pure) ----------------------------------------------------------------


def _post_mention(post: dict[str, Any], in_reply_to: str | None, reposted_from: str | None) -> dict[str, Any]:
    account = json_object(post.get("account"))
    content = html_to_text(str(post.get("content") or ""))
    spoiler = str(post.get("spoiler_text") or "").strip()
    followers = account.get("followers_count")
    return {
        "source": "mastodon",
        "source_id": str(post.get("uri") or ""),
        "text": f"{spoiler}\n\n{content}".strip() if spoiler else content,
        "created_at": post.get("created_at"),
        "url": post.get("url") if isinstance(post.get("url"), str) and post["url"].startswith(("http://", "https://")) else None,
        "lang": post.get("language") or None,
        "author": {"id": str(account["id"]) if account.get("id") is not None else None,
                   "handle": account.get("acct") or None,
                   "display_name": account.get("display_name") or None,
                   "followers": followers if isinstance(followers, int) and followers >= 0 else None},
        "in_reply_to": in_reply_to,
        "reposted_from": reposted_from,
        "engagement": {"likes": post.get("favourites_count") or 0, "reposts": post.get("reblogs_count") or 0,
                       "replies": post.get("replies_count") or 0},
    }


def status_mentions(status: Any, uris_by_id: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A Mastodon status → mentions in the push API's shape: the post, or for a boost the boost and the boosted post.

    `uris_by_id` maps instance-local status ids to uris seen before, to fill `in_reply_to`.
    """
    if not isinstance(status, dict):
        raise SourceError("status is not a JSON object")
    known = uris_by_id or {}
    boosted = status.get("reblog")
    if isinstance(boosted, dict):
        original = _post_mention(boosted, known.get(str(boosted.get("in_reply_to_id"))), None)
        boost = _post_mention({**boosted, "uri": status.get("uri"), "url": status.get("url"), "account": status.get("account"),
                               "created_at": status.get("created_at"), "favourites_count": 0, "reblogs_count": 0,
                               "replies_count": 0}, None, original["source_id"])
        return [boost, original]
    return [_post_mention(status, known.get(str(status.get("in_reply_to_id"))), None)]


def _status_id(status: dict[str, Any]) -> int | None:
    try:
        return int(str(status.get("id")))
    except ValueError:
        return None


@dataclass(frozen=True)
class MastodonStream:
    """One stream of one instance: kind is hashtag, public or search."""

    instance: str
    kind: str
    arg: str | None = None

    @property
    def label(self) -> str:
        return f"{self.instance} {self.kind}{':' + self.arg if self.arg else ''}"

    def streaming_path(self) -> str | None:
        if self.kind == "hashtag":
            return f"/api/v1/streaming/hashtag?tag={quote(self.arg or '')}"
        if self.kind == "public":
            return "/api/v1/streaming/public"
        return None  # search has no stream: backfill only, repeated on an interval

    def backfill_request(self, min_id: int | None) -> tuple[str, dict[str, str | int]]:
        params: dict[str, str | int] = {"limit": PAGE}
        if min_id is not None:
            params["min_id"] = str(min_id)
        if self.kind == "hashtag":
            return f"/api/v1/timelines/tag/{quote(self.arg or '')}", params
        if self.kind == "public":
            return "/api/v1/timelines/public", params
        return "/api/v2/search", {**params, "q": self.arg or "", "type": "statuses", "resolve": "false"}


def configured_streams(settings: Settings) -> list[MastodonStream]:
    streams = []
    for instance in settings.ingest_mastodon_instances:
        base = instance.rstrip("/")
        streams += [MastodonStream(base, "hashtag", tag.lstrip("#")) for tag in settings.ingest_mastodon_hashtags]
        if settings.ingest_mastodon_public:
            streams.append(MastodonStream(base, "public"))
        streams += [MastodonStream(base, "search", q) for q in settings.ingest_mastodon_search]
    return streams


# --- the connector ----------------------------------------------------------------------------


class MastodonConnector(Connector):
    """Streams every configured timeline; backfills through the REST API before each (re)connect."""

    name = "mastodon"
    search_interval_s = 300.0

    def __init__(self, publisher: Publisher, settings: Settings, streams: list[MastodonStream]) -> None:
        super().__init__(publisher, settings.ingest_max_text_chars, settings.storage_retention_days)
        self.settings = settings
        self.streams = streams
        self._uris: dict[str, dict[str, str]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"User-Agent": self.settings.ingest_user_agent}
        if self.settings.ingest_mastodon_access_token is not None:
            headers["Authorization"] = f"Bearer {self.settings.ingest_mastodon_access_token.get_secret_value()}"
        timeout = httpx.Timeout(self.settings.ingest_http_timeout_s, read=self.settings.ingest_http_timeout_s * 4)
        transport = source_transport(self.settings, [stream.instance for stream in self.streams])
        async with httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=True, transport=transport) as client:
            await asyncio.gather(*(self._stream_loop(client, s, stop) for s in self.streams))

    async def _stream_loop(self, client: httpx.AsyncClient, stream: MastodonStream, stop: asyncio.Event) -> None:
        state_file = StateFile(self.settings.ingest_state_dir, state_name("mastodon", stream.instance, stream.kind, stream.arg or ""))
        state = state_file.load()
        reconnect_max = self.settings.ingest_reconnect_max_s

        async def once() -> float | None:
            await self.backfill(client, stream, state, state_file, stop)
            path = stream.streaming_path()
            if path is None:
                return self.search_interval_s
            received = await unless_stopped(self._consume_stream(client, stream, path, state, state_file, stop), stop)
            if received is None:
                return None
            if not received:
                raise SourceError(f"{stream.label}: stream closed before sending anything")
            log.info("stream ended; reconnecting", extra={"stream": stream.label, "events": received})
            return backoff_delay(1, 1.0, reconnect_max)

        await self.repeat(stop, stream.label, once, backoff_base_s=1.0, backoff_max_s=reconnect_max)

    async def backfill(self, client: httpx.AsyncClient, stream: MastodonStream, state: dict[str, Any], state_file: StateFile,
                       stop: asyncio.Event) -> int:
        """Fetch what was posted since the newest status produced (the newest page on a first start)."""
        produced = 0
        for _ in range(self.settings.ingest_mastodon_backfill_pages):
            min_id = state.get("last_id")
            path, params = stream.backfill_request(min_id)
            resp = await self._get(client, stream.instance + path, params)
            try:
                doc = resp.json()
            except ValueError as exc:
                raise SourceError(f"{stream.label}: backfill answer is not JSON") from exc
            statuses = doc.get("statuses") if isinstance(doc, dict) else doc
            if not isinstance(statuses, list):
                raise SourceError(f"{stream.label}: backfill answer is not a list of statuses")
            statuses = [s for s in statuses if isinstance(s, dict) and _status_id(s) is not None]
            if not statuses:
                break
            statuses.sort(key=lambda s: _status_id(s) or 0)
            produced += await self._produce(stream, statuses, state, state_file, stop, "application/json")
            if min_id is None or len(statuses) < PAGE:
                break  # first start: one page of history is enough; a short page is the end
        return produced

    async def _get(self, client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> httpx.Response:
        try:
            resp = await client.get(url, params=params)
        except (httpx.HTTPError, AddressRefused) as exc:
            raise SourceError(f"cannot reach {url}: {exc!r}") from exc
        if resp.status_code >= 400:
            raise SourceError(f"HTTP {resp.status_code} from {url}: {resp.text[:200]}", parse_retry_after(resp.headers.get("retry-after")))
        return resp

    async def _consume_stream(self, client: httpx.AsyncClient, stream: MastodonStream, path: str, state: dict[str, Any],
                              state_file: StateFile, stop: asyncio.Event) -> int:
        parser = SseParser()
        received = 0
        try:
            async with client.stream("GET", stream.instance + path, headers={"Accept": "text/event-stream"}) as resp:
                if resp.status_code >= 400:
                    body = (await resp.aread())[:200].decode(errors="replace")
                    raise SourceError(f"HTTP {resp.status_code} from {stream.label} stream: {body}",
                                      parse_retry_after(resp.headers.get("retry-after")))
                log.info("mastodon stream connected", extra={"stream": stream.label})
                async for line in resp.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    received += 1
                    if event.event not in ("update", "status.update"):
                        continue  # delete, notification, filters_changed...: nothing to ingest
                    try:
                        status = json.loads(event.data)
                    except ValueError:
                        self.fetched()
                        self.error("malformed_event")
                        log.warning("skipped a malformed stream event", extra={"stream": stream.label, "data": event.data[:200]})
                        continue
                    if not isinstance(status, dict) or _status_id(status) is None:
                        self.fetched()
                        self.error("malformed_event")
                        continue
                    await self._produce(stream, [status], state, state_file, stop, "text/event-stream")
                    if stop.is_set():
                        return received
        except (httpx.HTTPError, AddressRefused) as exc:
            raise SourceError(f"{stream.label} stream broke: {exc!r}") from exc
        return received

    async def _produce(self, stream: MastodonStream, statuses: list[dict[str, Any]], state: dict[str, Any],
                       state_file: StateFile, stop: asyncio.Event, content_type: str) -> int:
        fetched_at = datetime.now(timezone.utc)
        self.fetched(len(statuses))
        uris = self._uris.setdefault(stream.instance, {})
        records = []
        for status in statuses:
            for mention in status_mentions(status, uris):
                if not mention["source_id"] or not str(mention["text"]).strip():
                    continue  # media-only posts carry no text to listen to
                record = self.to_record(mention, content_type=content_type, fetched_at=fetched_at)
                if record is not None:
                    records.append(record)
            if status.get("uri"):
                uris[str(status.get("id"))] = str(status["uri"])
        if len(uris) > 10000:
            for key in list(uris)[:5000]:
                del uris[key]
        if records:
            await self.publisher.publish_until_done(records, self.name, stop, self.settings.ingest_reconnect_max_s)
        newest = max(_status_id(s) or 0 for s in statuses)
        if newest > (state.get("last_id") or 0):
            state["last_id"] = newest
            state_file.save(state)
        return len(records)
