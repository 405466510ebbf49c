"""Publishing watchlists, and the CRUD HTTP API (an APIRouter the storage service mounts).

Where the truth lives: the topic `earful.watchlists.v1` is what every service applies. The
YAML folder (`EARFUL_WATCHLISTS_DIR`) is the versionable seed: at start-up the registry
publishes the folder's watchlists whose content differs from the topic's (policy `changed`), or
only those the topic has never had (policy `missing`). Every API change is published to the
topic first (acknowledged by the broker), then applied by this process's own store, then
written back to the folder when the folder is writable; changes made through another replica
are written back the same way, as they arrive on the topic. On a read-only folder (a Kubernetes
ConfigMap) nothing is written: API changes live in the topic only.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Body, Header, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from earful.core.auth import ApiAuth, AuditedRoute, Scope, principal_of, requires
from earful.core.errors import BrokerError
from earful.core.kafka import make_producer
from earful.core.settings import Settings
from earful.core.topics import WATCHLISTS
from earful.watchlists.files import WatchlistFolder, load_partial
from earful.watchlists.live import Change, Published, WatchlistStore, require_folder
from earful.watchlists.matcher import WatchlistSet
from earful.watchlists.model import ID_PATTERN, Watchlist, WatchlistSpec, to_document, to_record
from earful.watchlists.query import Doc, QueryError, compile_query

log = logging.getLogger(__name__)


class Conflict(Exception):
    """A conditional write whose condition does not hold (HTTP 409/412)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(timezone.utc)


class WatchlistRegistry:
    """Publishes watchlists (seed folder and API changes) and keeps the folder in step."""

    def __init__(self, settings: Settings, store: WatchlistStore, folder: WatchlistFolder,
                 producer: AIOKafkaProducer | None = None) -> None:
        self.settings = settings
        self.store = store
        self.folder = folder
        self.producer = producer  # made in start(): an aiokafka client needs the running loop
        self._lock = asyncio.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, service: str = "storage") -> WatchlistRegistry:
        return cls(settings, WatchlistStore(settings, service=service), WatchlistFolder(settings.watchlists_dir))

    async def start(self) -> dict[str, list[str]]:
        """Read the topic, publish the seed folder by the seed policy, then follow changes."""
        if self.producer is None:
            self.producer = make_producer(self.settings, "earful-watchlists")
        try:
            await self.producer.start()
        except KafkaError as exc:
            await self.producer.stop()
            raise BrokerError(f"cannot connect to Kafka at {self.settings.kafka_bootstrap}: {exc}") from exc
        await self.store.start()
        summary = await self.publish_folder()
        self.store.on_change(self._write_back)
        return summary

    async def stop(self) -> None:
        await self.store.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def publish_folder(self) -> dict[str, list[str]]:
        """Publish the seed folder's watchlists the topic lacks (or has in another version)."""
        require_folder(self.settings)
        found, errors = load_partial(self.folder.path)
        for error in errors:
            log.error("watchlist file problem (this watchlist is not published): %s", error)
        summary: dict[str, list[str]] = {"published": [], "unchanged": [], "kept_topic": [], "invalid": errors,
                                         "topic_only": []}
        policy = self.settings.watchlists_seed_policy
        for w, source in found:
            topic = self.store.published(w.id)
            differs = topic is None or topic.watchlist.revision != w.revision
            due = not self.store.ever_published(w.id) if policy == "missing" else differs
            if due:
                await self._publish(w, f"file:{source}")
                summary["published"].append(w.id)
            elif differs:
                summary["kept_topic"].append(w.id)  # policy missing: the topic's version stays in force
            else:
                summary["unchanged"].append(w.id)
        if summary["kept_topic"]:
            log.warning("these watchlist files differ from the topic and were not published"
                        " (EARFUL_WATCHLISTS_SEED_POLICY=missing); change them through the API",
                        extra={"watchlists": summary["kept_topic"]})
        in_folder = {w.id for w, _ in found}
        summary["topic_only"] = [p.watchlist.id for p in self.store.all_published() if p.watchlist.id not in in_folder]
        log.info("watchlist folder published", extra={
            "folder": str(self.folder.path), "policy": policy, "published": summary["published"],
            "unchanged": len(summary["unchanged"]), "invalid": len(errors), "topic_only": summary["topic_only"],
            "write_back": self.folder.writable})
        return summary

    async def _publish(self, w: Watchlist | None, updated_by: str, watchlist_id: str | None = None) -> tuple[int, int]:
        """Produce a value (or a tombstone), wait for the broker's ack and for our own store."""
        key = (w.id if w is not None else watchlist_id or "").encode("utf-8")
        value = None if w is None else self.store.codec.encode(to_record(w, _now(), updated_by))
        if self.producer is None:
            raise BrokerError("the watchlist registry is not started")
        try:
            meta = await self.producer.send_and_wait(WATCHLISTS, value, key=key)
        except KafkaError as exc:
            raise BrokerError(f"cannot publish to {WATCHLISTS}: {exc}") from exc
        if not await self.store.wait_for(meta.partition, meta.offset):
            log.warning("published watchlist not yet visible to this process", extra={"watchlist": key.decode()})
        return meta.partition, meta.offset

    async def put(self, w: Watchlist, updated_by: str, *, if_match: str | None = None,
                  create_only: bool = False) -> tuple[Published | None, bool]:
        """Publish `w`; (what the topic now holds, whether it was created). Conflict on a failed condition."""
        async with self._lock:
            existing = self.store.published(w.id)
            if create_only and existing is not None:
                raise Conflict(409, f"watchlist {w.id!r} exists; use PUT /v1/watchlists/{w.id} to replace it")
            if if_match is not None:
                _check_condition(if_match, existing)
            if existing is not None and existing.watchlist.revision == w.revision:
                return existing, False  # same content: nothing to publish
            await self._publish(w, updated_by)
            return self.store.published(w.id), existing is None

    async def delete(self, watchlist_id: str, updated_by: str, *, if_match: str | None = None) -> bool:
        """Publish a tombstone; False when there is no such watchlist."""
        async with self._lock:
            existing = self.store.published(watchlist_id)
            if existing is None:
                return False
            if if_match is not None:
                _check_condition(if_match, existing)
            await self._publish(None, updated_by, watchlist_id)
            log.info("watchlist deleted", extra={"watchlist": watchlist_id, "by": updated_by})
            return True

    def _write_back(self, changes: list[Change], _current: WatchlistSet) -> None:
        if not self.folder.writable:
            return
        for c in changes:
            if c.new is None:
                removed = self.folder.remove(c.watchlist_id)
                if removed:
                    log.info("watchlist file removed", extra={"path": str(removed)})
            elif self.folder.current_revision(c.watchlist_id) != c.new.revision:
                written = self.folder.write(c.new)
                if written:
                    log.info("watchlist file written", extra={"path": str(written), "revision": c.new.revision})

    def router(self, auth: ApiAuth) -> APIRouter:
        return build_router(self, auth)


def _check_condition(if_match: str, existing: Published | None) -> None:
    wanted = [t.strip().strip('"') for t in if_match.split(",")]
    if "*" in wanted:
        if existing is None:
            raise Conflict(412, "If-Match: * but the watchlist does not exist")
        return
    if existing is None or existing.watchlist.revision not in wanted:
        current = existing.watchlist.revision if existing else "none"
        raise Conflict(412, f"the watchlist changed (its revision is {current}, If-Match asked for {if_match}):"
                            " read it again and re-apply your change")


def _who(request: Request) -> str:
    """Who changes a watchlist: key:<name of the key>, or api when the API has no keys."""
    name = principal_of(request)
    return f"key:{name}" if name else "api"


# --- HTTP ------------------------------------------------------------------------------------


class WatchlistOut(BaseModel):
    """A watchlist as published, with its revision and provenance."""

    id: str
    name: str
    kind: str
    owner_team: str | None = None
    query: str
    handles: list[str] = Field(default_factory=list)
    response_sla_s: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    alert_rules: list[dict[str, Any]] = Field(default_factory=list)
    revision: str = Field(description="Content hash; send it as If-Match to update only this version.")
    updated_at: datetime | None = Field(None, description="When this version was published.")
    updated_by: str | None = Field(None, description="'file:<path>', 'api' (no keys) or 'key:<key name>'.")
    file: str | None = Field(None, description="Its YAML file in this service's folder, if there is one (on a read-only"
                                               " folder it may hold an older version).")


class WatchlistList(BaseModel):
    watchlists: list[WatchlistOut]
    revision: str = Field(description="Revision of the whole set.")


class QueryTest(BaseModel):
    """A query and one mention to try it on."""

    query: str = Field(description="A query in Earful's query language.")
    text: str = Field(description="The mention's text.")
    lang: str | None = Field(None, description="Language code (ISO 639-1) for lang: filters.")
    source: str | None = Field(None, description="Source name for source: filters.")
    author: str | None = Field(None, description="Author handle for author: filters.")
    country: str | None = Field(None, description="Country code (ISO 3166-1 alpha-2) for country: filters.")
    url: str | None = Field(None, description="The mention's own link, for site: filters.")


class SpanOut(BaseModel):
    start: int
    end: int
    term: str
    text: str


class QueryTestResult(BaseModel):
    matches: bool
    parsed: str = Field(description="The query with its grouping made explicit.")
    spans: list[SpanOut]


def _out(p: Published, folder: WatchlistFolder) -> WatchlistOut:
    path = folder.file_for(p.watchlist.id) if folder.path.is_dir() else None
    return WatchlistOut(**to_document(p.watchlist, full=True), revision=p.watchlist.revision, updated_at=p.updated_at,
                        updated_by=p.updated_by, file=str(path) if path is not None and path.is_file() else None)


def _raise_http(exc: Exception) -> None:
    if isinstance(exc, Conflict):
        raise HTTPException(exc.status, str(exc)) from exc
    if isinstance(exc, BrokerError):
        raise HTTPException(503, f"{exc}; nothing was changed", headers={"Retry-After": "5"}) from exc
    raise exc


def build_router(registry: WatchlistRegistry, auth: ApiAuth) -> APIRouter:
    """/v1/watchlists: list, read, create, replace, delete, validate, and try a query on a text.
    Reads and checks need the scope read, changes write, deletion admin (`auth`; changes are audited)."""
    router = APIRouter(prefix="/v1/watchlists", tags=["watchlists"], route_class=AuditedRoute)
    id_param = PathParam(pattern=ID_PATTERN, description="Watchlist id.")
    _add_reads(router, registry, id_param, requires(Scope.READ, auth))
    _add_writes(router, registry, auth, id_param)
    _add_checks(router, requires(Scope.READ, auth))
    return router


def _add_reads(router: APIRouter, registry: WatchlistRegistry, id_param: Any, read: Any) -> None:
    """GET the whole set, and one watchlist with its revision as ETag."""
    folder = registry.folder

    @router.get("", summary="Every watchlist in force.", response_model=WatchlistList, operation_id="listWatchlists",
                dependencies=[read])
    async def list_watchlists() -> WatchlistList:
        return WatchlistList(watchlists=[_out(p, folder) for p in registry.store.all_published()],
                             revision=registry.store.current().revision)

    @router.get("/{watchlist_id}", summary="One watchlist (ETag: its revision).", response_model=WatchlistOut,
                responses={404: {"description": "No such watchlist."}}, operation_id="getWatchlist", dependencies=[read])
    async def get_watchlist(response: Response, watchlist_id: str = id_param) -> WatchlistOut:
        p = registry.store.published(watchlist_id)
        if p is None:
            raise HTTPException(404, f"no watchlist {watchlist_id!r}")
        response.headers["ETag"] = f'"{p.watchlist.revision}"'
        return _out(p, folder)


def _add_writes(router: APIRouter, registry: WatchlistRegistry, auth: ApiAuth, id_param: Any) -> None:
    """POST (create only), PUT (create or replace, conditional on If-Match / If-None-Match) and DELETE."""
    folder = registry.folder
    write, admin = requires(Scope.WRITE, auth), requires(Scope.ADMIN, auth)

    @router.post("", status_code=201, response_model=WatchlistOut, summary="Create a watchlist (409 if the id exists).",
                 responses={409: {"description": "The id exists."}, 503: {"description": "Kafka unreachable."}},
                 operation_id="createWatchlist", dependencies=[write])
    async def create_watchlist(request: Request, response: Response, spec: WatchlistSpec = Body(...)) -> WatchlistOut:
        request.state.audit_target = spec.id
        try:
            p, _ = await registry.put(spec.to_watchlist(), _who(request), create_only=True)
        except (Conflict, BrokerError) as exc:
            _raise_http(exc)
        assert p is not None
        response.headers["Location"] = f"/v1/watchlists/{p.watchlist.id}"
        response.headers["ETag"] = f'"{p.watchlist.revision}"'
        return _out(p, folder)

    @router.put("/{watchlist_id}", response_model=WatchlistOut,
                summary="Create or replace a watchlist (201 when created). If-Match: a revision, to update only that.",
                responses={201: {"description": "Created."}, 412: {"description": "If-Match does not hold."},
                           503: {"description": "Kafka unreachable."}}, operation_id="putWatchlist", dependencies=[write])
    async def put_watchlist(request: Request, response: Response, watchlist_id: str = id_param,
                            spec: WatchlistSpec = Body(...),
                            if_match: str | None = Header(None, description="Revision(s) the change applies to."),
                            if_none_match: str | None = Header(None, description="* : only create.")) -> WatchlistOut:
        if spec.id != watchlist_id:
            raise RequestValidationError([{"loc": ("body", "id"), "type": "value_error", "input": spec.id,
                                           "msg": f"the body's id {spec.id!r} differs from the path's {watchlist_id!r}"}])
        try:
            p, created = await registry.put(spec.to_watchlist(), _who(request), if_match=if_match,
                                            create_only=(if_none_match or "").strip() == "*")
        except Conflict as exc:
            raise HTTPException(412 if exc.status == 409 and if_none_match else exc.status, str(exc)) from exc
        except BrokerError as exc:
            _raise_http(exc)
        assert p is not None
        response.status_code = 201 if created else 200
        response.headers["ETag"] = f'"{p.watchlist.revision}"'
        return _out(p, folder)

    @router.delete("/{watchlist_id}", status_code=204, summary="Delete a watchlist (a tombstone on the topic).",
                   responses={404: {"description": "No such watchlist."}, 412: {"description": "If-Match does not hold."}},
                   operation_id="deleteWatchlist", dependencies=[admin])
    async def delete_watchlist(request: Request, watchlist_id: str = id_param,
                               if_match: str | None = Header(None)) -> Response:
        try:
            deleted = await registry.delete(watchlist_id, _who(request), if_match=if_match)
        except (Conflict, BrokerError) as exc:
            _raise_http(exc)
        if not deleted:
            raise HTTPException(404, f"no watchlist {watchlist_id!r}")
        return Response(status_code=204)


def try_query(body: QueryTest) -> QueryTestResult:
    """Whether `body.query` matches `body.text`, and where; a query that does not compile is a 422
    naming its position."""
    try:
        compiled = compile_query(body.query)
    except QueryError as exc:
        raise HTTPException(422, [{"loc": ["body", "query"], "msg": exc.message, "type": "query_error",
                                   "position": exc.position, "column": exc.position + 1}]) from exc
    doc = Doc(body.text, lang=body.lang, source=body.source, author=body.author, country=body.country, url=body.url)
    matched = compiled.matches(doc)
    spans = compiled.spans(doc) if matched else []
    return QueryTestResult(matches=matched, parsed=compiled.explain(),
                           spans=[SpanOut(start=s.start, end=s.end, term=s.term, text=body.text[s.start:s.end])
                                  for s in spans])


def _add_checks(router: APIRouter, read: Any) -> None:
    """Checks that publish nothing (so the scope read): validate a watchlist, try a query on a text."""

    @router.post("/_validate", summary="Check a watchlist without publishing it (422 lists every problem).",
                 operation_id="validateWatchlist", dependencies=[read])
    async def validate_watchlist(spec: WatchlistSpec = Body(...)) -> dict[str, Any]:
        w = spec.to_watchlist()
        return {"valid": True, "id": w.id, "revision": w.revision, "parsed": w.compiled.explain()}

    @router.post("/_test", response_model=QueryTestResult, summary="Try a query on one mention text.",
                 operation_id="testWatchlistQuery", dependencies=[read])
    async def test_query(body: QueryTest) -> QueryTestResult:
        return try_query(body)
