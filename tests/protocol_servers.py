"""Local servers that speak the sources' real protocols, for the connector tests (no network here).

* `FeedServer`: feeds over HTTP with ETag / Last-Modified and 304 answers, scripted failures.
* `MastodonServer`: Mastodon's REST timelines and search (``min_id`` paging, newest first) and its
  streaming API as Server-Sent Events, with scripted events and disconnects.
* `JetstreamServer`: Bluesky Jetstream's WebSocket ``/subscribe`` with ``cursor`` replay.

Each runs on aiohttp in the test's event loop, on a free port of 127.0.0.1, and records what the
client asked for, so tests can check conditional requests, ``min_id`` and cursors.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from earful_dev.stack.broker import free_port
from tests.dates import iso_z
from tests.support import eventually


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class FeedDoc:
    body: bytes
    content_type: str
    last_modified: str = "Mon, 02 Nov 2026 09:12:00 GMT"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


class FeedServer(_Server):
    """GET /<name>: the document, 304 when If-None-Match matches; `failures[name]` are answered first."""

    def __init__(self) -> None:
        super().__init__()
        self.docs: dict[str, FeedDoc] = {}
        self.failures: dict[str, list[tuple[int, dict[str, str]] | FeedDoc]] = {}
        self.requests: dict[str, list[dict[str, str]]] = {}
        self.app.router.add_get("/{name}", self._get)

    def statuses(self, name: str) -> list[int]:
        return [int(r["status"]) for r in self.requests.get(name, [])]

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        log = self.requests.setdefault(name, [])
        entry = {"if_none_match": request.headers.get("If-None-Match", ""),
                 "if_modified_since": request.headers.get("If-Modified-Since", ""),
                 "user_agent": request.headers.get("User-Agent", "")}
        log.append(entry)
        scripted = self.failures.get(name)
        if scripted:
            step = scripted.pop(0)
            if isinstance(step, FeedDoc):
                entry["status"] = "200"
                return web.Response(body=step.body, headers={"Content-Type": step.content_type})
            status, headers = step
            entry["status"] = str(status)
            return web.Response(status=status, text="upstream trouble", headers=headers)
        doc = self.docs.get(name)
        if doc is None:
            entry["status"] = "404"
            return web.Response(status=404)
        if request.headers.get("If-None-Match") == doc.etag:
            entry["status"] = "304"
            return web.Response(status=304, headers={"ETag": doc.etag})
        entry["status"] = "200"
        return web.Response(body=doc.body, headers={"Content-Type": doc.content_type, "ETag": doc.etag,
                                                    "Last-Modified": doc.last_modified})


def make_status(status_id: int, text: str, *, instance: str = "https://mastodon.example", likes: int = 0,
                reblog: dict[str, Any] | None = None, account: str = "janedoe",
                created_at: datetime | None = None) -> dict[str, Any]:
    """A status shaped like Mastodon's API answer, posted `created_at` (default: an hour ago, so the
    connector never finds it older than the retention period)."""
    posted = created_at or datetime.now(timezone.utc) - timedelta(hours=1)
    return {
        "id": str(status_id), "created_at": iso_z(posted), "in_reply_to_id": None, "sensitive": False,
        "spoiler_text": "", "visibility": "public", "language": "en",
        "uri": f"{instance}/users/{account}/statuses/{status_id}", "url": f"{instance}/@{account}/{status_id}",
        "replies_count": 0, "reblogs_count": 0, "favourites_count": likes, "content": f"<p>{text}</p>", "reblog": reblog,
        "account": {"id": str(1000 + len(account)), "username": account, "acct": account, "display_name": account.title(),
                    "followers_count": 42},
        "media_attachments": [], "mentions": [], "tags": [], "emojis": [], "card": None, "poll": None,
    }


class MastodonServer(_Server):
    """REST timelines/search with min_id paging and SSE streams fed from `push()`; `disconnect()` ends a stream."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.timeline: list[dict[str, Any]] = []
        self.backfill_requests: list[dict[str, str]] = []
        self.stream_connections = 0
        self.unauthorized = 0
        self._queues: list[asyncio.Queue[str | None]] = []
        self.app.router.add_get("/api/v1/timelines/tag/{tag}", self._timeline)
        self.app.router.add_get("/api/v1/timelines/public", self._timeline)
        self.app.router.add_get("/api/v2/search", self._search)
        self.app.router.add_get("/api/v1/streaming/hashtag", self._stream)
        self.app.router.add_get("/api/v1/streaming/public", self._stream)

    def _authorized(self, request: web.Request) -> bool:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return False
        return True

    def _page(self, request: web.Request) -> list[dict[str, Any]]:
        self.backfill_requests.append(dict(request.query))
        limit = int(request.query.get("limit", 20))
        ordered = sorted(self.timeline, key=lambda s: int(s["id"]))
        if "min_id" in request.query:
            newer = [s for s in ordered if int(s["id"]) > int(request.query["min_id"])][:limit]  # just after min_id
        else:
            newer = ordered[-limit:]
        return list(reversed(newer))  # Mastodon answers newest first

    async def _timeline(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "The access token is invalid"}, status=401)
        return web.json_response(self._page(request))

    async def _search(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "The access token is invalid"}, status=401)
        return web.json_response({"accounts": [], "statuses": self._page(request), "hashtags": []})

    async def push(self, event: str, data: str) -> None:
        """Send one SSE event to every connected stream."""
        for queue in self._queues:
            await queue.put(f"event: {event}\ndata: {data}\n\n")

    async def disconnect(self) -> None:
        for queue in self._queues:
            await queue.put(None)

    async def wait_for_streams(self, count: int, timeout_s: float = 20.0) -> None:
        """Until `count` stream connections were made in all and one is open (so `push()` reaches it)."""
        if not await eventually(lambda: self.stream_connections >= count and bool(self._queues), timeout_s, 0.05):
            raise TimeoutError(f"{self.stream_connections} stream connections, wanted {count}")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"error": "The access token is invalid"}, status=401)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._queues.append(queue)
        self.stream_connections += 1
        try:
            await resp.write(b":)\n\n")
            while True:
                item = await queue.get()
                if item is None:
                    break
                await resp.write(item.encode())
        finally:
            self._queues.remove(queue)
        return resp


@dataclass
class JetstreamServer(_Server):
    """WebSocket /subscribe: replays `events` with time_us >= cursor; `drop_after` ends a connection early."""

    events: list[str] = field(default_factory=list)
    drop_after: list[int] = field(default_factory=list)  # per connection: close after this many messages
    cursors: list[str | None] = field(default_factory=list)
    collections: list[str | None] = field(default_factory=list)
    refuse: int = 0  # answer this many connection attempts with 503 instead of upgrading
    refused: int = 0

    def __post_init__(self) -> None:
        super().__init__()
        self.app.router.add_get("/subscribe", self._subscribe)
        self._more = asyncio.Event()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/subscribe"

    def add(self, *lines: str) -> None:
        self.events.extend(lines)
        self._more.set()

    @staticmethod
    def _time_us(line: str) -> int:
        try:
            return int(json.loads(line)["time_us"])
        except (ValueError, KeyError, TypeError):
            return -1  # malformed lines are always sent

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        if self.refused < self.refuse:
            self.refused += 1
            return web.Response(status=503, text="overloaded", headers={"Retry-After": "1"})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        cursor = request.query.get("cursor")
        self.cursors.append(cursor)
        self.collections.append(request.query.get("wantedCollections"))
        limit = self.drop_after.pop(0) if self.drop_after else None
        sent, index = 0, 0
        while not ws.closed:
            while index < len(self.events):
                line = self.events[index]
                index += 1
                if cursor is not None and 0 <= self._time_us(line) < int(cursor):
                    continue
                if limit is not None and sent >= limit:
                    await ws.close()
                    return ws
                await ws.send_str(line)
                sent += 1
            self._more.clear()
            try:
                await asyncio.wait_for(self._more.wait(), 0.2)
            except TimeoutError:
                pass
        return ws
