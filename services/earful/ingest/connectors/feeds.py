"""RSS, Atom and JSON Feed poller for blogs and news sites.

Each feed is polled on its own interval (with jitter, so many feeds do not fire together) using a
conditional GET (If-None-Match / If-Modified-Since): an unchanged feed costs a 304 and no parsing.
Errors back off exponentially and honour Retry-After. Items already produced are recognised by
their GUID, which is kept per feed in a state file (``EARFUL_INGEST_STATE_DIR``) together with the
ETag and Last-Modified, so a restart re-emits nothing. State is saved only after the broker
acknowledged the new items, so a crash re-sends rather than loses.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import feedparser
import httpx
import yaml

from earful.core.addresses import AddressRefused
from earful.core.errors import ConfigError, SourceError
from earful.core.http import parse_retry_after
from earful.core.retry import wait_or_stop
from earful.core.settings import Settings
from earful.ingest.connectors.base import Connector, source_transport
from earful.ingest.publisher import Publisher
from earful.ingest.state import StateFile, state_name
from earful.ingest.text import html_to_text

log = logging.getLogger(__name__)

ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
          "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")
_FEED_TYPES = {"atom": "application/atom+xml", "rss10": "application/rdf+xml", "rss": "application/rss+xml"}
_SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"


@dataclass(frozen=True)
class FeedConfig:
    """One feed to poll."""

    url: str
    interval_s: float
    source: str
    lang: str | None = None
    country: str | None = None


def load_feeds(settings: Settings) -> list[FeedConfig]:
    """Feeds from EARFUL_INGEST_FEED_URLS and EARFUL_INGEST_FEEDS_FILE (per-feed settings), checked."""
    feeds = [FeedConfig(url, settings.ingest_feed_interval_s, settings.ingest_feed_source) for url in settings.ingest_feed_urls]
    path = settings.ingest_feeds_file
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read feeds file {path}: {exc}") from exc
        items = doc.get("feeds") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise ConfigError(f"{path}: expected a top-level 'feeds:' list")
        for i, item in enumerate(items):
            where = f"{path}: feeds[{i}]"
            if isinstance(item, str):
                item = {"url": item}
            if not isinstance(item, dict) or not isinstance(item.get("url"), str):
                raise ConfigError(f"{where}: expected a mapping with a url")
            unknown = set(item) - {"url", "interval_s", "source", "lang", "country"}
            if unknown:
                raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
            try:
                feed = FeedConfig(
                    url=item["url"],
                    interval_s=float(item.get("interval_s", settings.ingest_feed_interval_s)),
                    source=str(item.get("source", settings.ingest_feed_source)),
                    lang=item.get("lang"),
                    country=item.get("country"),
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            feeds.append(feed)
    seen = set()
    for feed in feeds:
        if not feed.url.startswith(("http://", "https://")):
            raise ConfigError(f"feed {feed.url!r} is not an http(s) URL")
        if feed.interval_s < 1:
            raise ConfigError(f"feed {feed.url}: interval_s must be at least 1")
        if not re.match(_SOURCE_PATTERN, feed.source):
            raise ConfigError(f"feed {feed.url}: source {feed.source!r} must match {_SOURCE_PATTERN}")
        if feed.country is not None and not re.match(r"^[A-Z]{2}$", str(feed.country)):
            raise ConfigError(f"feed {feed.url}: country {feed.country!r} must be an ISO 3166-1 alpha-2 code, e.g. DE")
        if feed.url in seen:
            raise ConfigError(f"feed {feed.url} is configured twice")
        seen.add(feed.url)
    return feeds


# --- parsing (pure) ----------------------------------------------------------------------------


def _lang(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary.isalpha() and 2 <= len(primary) <= 3 else None


def _http_url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("http://", "https://")) and " " not in value and len(value) <= 2048 else None


def _source_id(guid: str) -> str:
    return guid if len(guid) <= 256 else "sha256:" + hashlib.sha256(guid.encode()).hexdigest()


def _compose_text(title: str | None, body: str | None) -> str:
    title, body = (title or "").strip(), (body or "").strip()
    if title and body and not body.startswith(title):
        return f"{title}\n\n{body}"
    return body or title


def _jsonfeed_items(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise SourceError("JSON document is not a JSON Feed (no https://jsonfeed.org/version/ version)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise SourceError("JSON Feed has no items list")
    feed_lang = doc.get("language")
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            out.append({"guid": None})
            continue
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        author = authors[0] if authors and isinstance(authors[0], dict) else {}
        title = html_to_text(str(item["title"])) if item.get("title") else None
        body = html_to_text(str(item["content_html"])) if item.get("content_html") else str(item.get("content_text") or item.get("summary") or "")
        out.append({
            "guid": str(item["id"]) if item.get("id") not in (None, "") else _http_url(item.get("url")),
            "title": title, "text": _compose_text(title, body), "url": _http_url(item.get("url")),
            "published": item.get("date_published") or item.get("date_modified"),
            "author": author.get("name") if isinstance(author.get("name"), str) else None,
            "lang": _lang(item.get("language") or feed_lang),
        })
    return out


def _struct_to_iso(value: Any) -> str | None:
    if not value:
        return None
    return datetime.fromtimestamp(calendar.timegm(value), timezone.utc).isoformat()


def parse_feed(body: bytes, content_type: str | None) -> tuple[str, list[dict[str, Any]]]:
    """A feed document → (its media type, its items as {guid, title, text, url, published, author, lang}).

    Raises SourceError when the document is no feed at all; a feed with some broken items still
    yields the good ones (broken ones, e.g. cut off by a truncated download, come back without a
    guid and are skipped later: an item needs an id or a link).
    """
    ct = (content_type or "").split(";")[0].strip().lower()
    if "json" in ct or body.lstrip()[:1] == b"{":
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise SourceError(f"JSON Feed is not valid JSON: {exc}") from exc
        return "application/feed+json", _jsonfeed_items(doc)
    parsed = feedparser.parse(body, response_headers={"content-type": content_type or "application/xml"})
    if not parsed.entries and (parsed.bozo or not parsed.version):
        reason = parsed.get("bozo_exception") or "no RSS, Atom or RDF root element"
        raise SourceError(f"not a feed: {str(reason)[:300]}")
    version = parsed.version or ""
    media = next((t for prefix, t in _FEED_TYPES.items() if version.startswith(prefix)), "application/rss+xml")
    feed_lang = parsed.feed.get("language")
    out = []
    for entry in parsed.entries:
        title = html_to_text(entry.get("title", "")) or None
        content = entry.get("content")
        html = content[0].get("value", "") if content else entry.get("summary", "")
        link = _http_url(entry.get("link"))
        guid = entry.get("id") or link  # neither: a broken or truncated item, skipped
        out.append({
            "guid": guid, "title": title, "text": _compose_text(title, html_to_text(html)), "url": link,
            "published": _struct_to_iso(entry.get("published_parsed") or entry.get("updated_parsed")),
            "author": entry.get("author") or None,
            "lang": _lang(entry.get("language") or feed_lang),
        })
    return media, out


def item_to_mention(item: dict[str, Any], feed: FeedConfig, fetched_at: datetime) -> dict[str, Any]:
    """A parsed feed item → the push API's mention shape."""
    return {
        "source": feed.source,
        "source_id": _source_id(str(item["guid"])),
        "text": item.get("text") or "",
        "created_at": item.get("published") or fetched_at.isoformat(),
        "url": item.get("url"),
        "lang": feed.lang or item.get("lang"),
        "author": {"display_name": str(item["author"])[:512]} if item.get("author") else {},
        "title": (item.get("title") or None) and str(item["title"])[:2048],
        "country": feed.country,
    }


# --- polling -----------------------------------------------------------------------------------


class FeedPoller(Connector):
    """Polls every configured feed on its own schedule."""

    name = "feed"

    def __init__(self, publisher: Publisher, settings: Settings, feeds: list[FeedConfig]) -> None:
        super().__init__(publisher, settings.ingest_max_text_chars, settings.storage_retention_days)
        self.settings = settings
        self.feeds = feeds
        self.guid_memory = 5000

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.settings.ingest_http_timeout_s, follow_redirects=True,
                                     headers={"User-Agent": self.settings.ingest_user_agent, "Accept": ACCEPT},
                                     transport=source_transport(self.settings, [feed.url for feed in self.feeds])) as client:
            await asyncio.gather(*(self._poll_loop(client, feed, stop) for feed in self.feeds))

    async def _poll_loop(self, client: httpx.AsyncClient, feed: FeedConfig, stop: asyncio.Event) -> None:
        state_file = StateFile(self.settings.ingest_state_dir, state_name("feed", feed.url))
        state = state_file.load()
        # Start at a random point of the first interval, so feeds configured together do not poll together.
        if await wait_or_stop(stop, random.uniform(0, min(feed.interval_s, 5.0) * self.settings.ingest_feed_jitter)):
            return
        spread = self.settings.ingest_feed_jitter

        async def poll() -> float:
            await self.poll_once(client, feed, state, state_file, stop)
            return feed.interval_s * random.uniform(1 - spread, 1 + spread)

        await self.repeat(stop, feed.url, poll, backoff_base_s=feed.interval_s,
                          backoff_max_s=max(feed.interval_s, self.settings.ingest_reconnect_max_s))

    async def poll_once(self, client: httpx.AsyncClient, feed: FeedConfig, state: dict[str, Any], state_file: StateFile,
                        stop: asyncio.Event) -> int:
        """One conditional GET; publishes new items, then saves the state. Returns how many were produced."""
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        try:
            async with client.stream("GET", feed.url, headers=headers) as resp:
                if resp.status_code == 304:
                    return 0
                if resp.status_code >= 400:
                    raise SourceError(f"HTTP {resp.status_code} from {feed.url}", parse_retry_after(resp.headers.get("retry-after")))
                body = await _read_limited(resp, self.settings.ingest_feed_max_bytes)
                content_type = resp.headers.get("content-type")
                etag, last_modified = resp.headers.get("etag"), resp.headers.get("last-modified")
        except (httpx.HTTPError, AddressRefused) as exc:
            raise SourceError(f"cannot fetch {feed.url}: {exc!r}") from exc
        fetched_at = datetime.now(timezone.utc)
        media, items = parse_feed(body, content_type)
        self.fetched(len(items))
        seen: list[str] = state.get("guids", [])
        seen_set = set(seen)
        records, guids = [], []
        for item in items:
            guid = item.get("guid")
            if not guid:
                self.error("malformed_item")
                continue
            guids.append(guid)
            if guid in seen_set:
                continue
            record = self.to_record(item_to_mention(item, feed, fetched_at), content_type=media, fetched_at=fetched_at)
            if record is not None:
                records.append(record)
        if records:
            await self.publisher.publish_until_done(records, self.name, stop, self.settings.ingest_reconnect_max_s)
        new_guids = [g for g in dict.fromkeys(guids) if g not in seen_set]
        keep = max(self.guid_memory, 3 * len(items))
        state.update({"etag": etag, "last_modified": last_modified, "guids": (seen + new_guids)[-keep:],
                      "last_success": fetched_at.isoformat()})
        state_file.save(state)
        return len(records)


async def _read_limited(resp: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise SourceError(f"feed larger than {limit} bytes (EARFUL_INGEST_FEED_MAX_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)
