"""The ingest HTTP API: authenticate, bound, validate, assign ids, produce with acks=all, 202 after the ack.

Checks run cheapest first, and the body is never read before the request may send one: the
request guard every API shares (earful.core.http: a Host not allowed while no keys are set 421,
NUL in the path or query 422) → API key (401) and its `ingest` scope (403) → content type (415) →
declared and actual body size (413, counted while the bytes arrive) → JSON (400) → fields (422) →
batch limits (413/422) → per-key rate (429) → room in the in-flight window (503) → broker
acknowledgement (503 on failure). Every refusal is a problem details object (RFC 9457) whose
`errors[]` names each invalid field by path.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from earful.core.apikeys import Scope
from earful.core.audit import AuditLog
from earful.core.auth import ApiAuth, KeyRing, presented_key, requires
from earful.core.errors import BackpressureError, BrokerError, EncodeError
from earful.core.health import Health
from earful.core.http import Refusal, RequestLimits, add_ops_routes, guard_requests, problem_response
from earful.core.kafka import utc_now
from earful.core.mention import MentionBatch, check_limits, format_problems, to_record
from earful.core.metrics import LATENCY_BUCKETS
from earful.core.settings import Settings
from earful.ingest.limits import RateLimiter, retry_after_header
from earful.ingest.publisher import FETCHED, Publisher, PublishResult

log = logging.getLogger(__name__)

ACCEPTED = Counter("earful_ingest_mentions_total", "Mentions accepted (acknowledged by the broker), by source "
                   "(EARFUL_INGEST_METRIC_SOURCES by name, any other as other).", ["source"])
OTHER_SOURCE = "other"
REJECTED = Counter("earful_ingest_rejected_requests_total", "Requests refused, by reason.", ["reason"])
PUBLISH_SECONDS = Histogram(
    "earful_ingest_publish_seconds", "Time from request to broker acknowledgement of the whole batch.", buckets=LATENCY_BUCKETS
)

BROKER_RETRY_AFTER_S = 5


class AcceptedBody(BaseModel):
    accepted: int = Field(..., description="Mentions in the batch; every one is durably in Kafka.")
    duplicates: int = Field(0, description="Of those, exact re-deliveries of a mention already produced (not produced again).")
    mention_ids: list[str] = Field(..., description="The stable id of each mention, in request order.")
    received_at: str = Field(..., description="When ingest accepted the batch (RFC 3339, UTC).")


def source_label(source: str, known: Collection[str]) -> str:
    """The `source` label of a mention: its name if configured, else "other". A label value taken
    from the request would let one client add series without bound (two per value and counter)."""
    return source if source in known else OTHER_SOURCE


def _error(status: int, reason: str, message: str, problems: list[dict[str, str]] | None = None,
           headers: dict[str, str] | None = None, instance: str | None = None) -> JSONResponse:
    """A refusal as problem details; `problems` ({path, message}) become `errors[]` ({path, detail})."""
    REJECTED.labels(reason).inc()
    errors = [{"path": p["path"], "detail": p["message"]} for p in problems or []]
    return problem_response(status, message, reason=reason, instance=instance, errors=errors or None, headers=headers)


class _Guard:
    """Authentication and the ingest scope, content type and body size, before FastAPI reads and
    parses the body."""

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.keys = keys
        self.max_bytes = settings.ingest_max_body_bytes

    async def check(self, request: Request) -> Response | None:
        if self.keys.enabled:
            key = self.keys.identify(presented_key(request.headers))
            if key is None:
                return _error(401, "unauthorized", "missing or unknown API key: send it as X-API-Key or Authorization: "
                              "Bearer (a key in the URL is not accepted)",
                              headers={"WWW-Authenticate": 'Bearer realm="earful"'})
            if Scope.INGEST not in key.scopes:
                return _error(403, "forbidden", f"the API key {key.name!r} lacks the scope 'ingest' this request needs "
                              f"(it has {'+'.join(sorted(key.scopes))})")
            request.state.client = f"key:{key.name}"
        else:
            request.state.client = f"addr:{request.client.host if request.client else 'unknown'}"
        media_type, _, params = (request.headers.get("content-type") or "").partition(";")
        media_type = media_type.strip().lower()
        charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";")
                        if p.strip().lower().startswith("charset=")), "utf-8")
        if media_type != "application/json" or charset not in ("utf-8", "utf8"):
            shown = request.headers.get("content-type") or "none"
            return _error(415, "unsupported_media_type", f"Content-Type must be application/json (UTF-8), not {shown[:100]}")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return _error(400, "bad_request", f"Content-Length {declared[:40]!r} is not a number")
            if int(declared) > self.max_bytes:
                return _error(413, "too_large", f"body of {int(declared)} bytes; at most {self.max_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_bytes:
                return _error(413, "too_large", f"body larger than {self.max_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _error(400, "bad_json", "request body is not UTF-8 text",
                          [{"path": "(body)", "message": f"byte {exc.start}: {exc.reason}"}])
        request._body = body  # FastAPI parses the body from here (Request.body() caches it)
        return None


def _guarded_route(guard: _Guard) -> type[APIRoute]:
    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                return await guard.check(request) or await handler(request)

            return guarded

    return GuardedRoute


RESPONSES: dict[int | str, dict[str, Any]] = {  # each answered as problem details (earful.core.http.document_api)
    400: {"description": "Body is not JSON"},
    401: {"description": "Missing or unknown API key"},
    403: {"description": "The key lacks the scope `ingest`"},
    413: {"description": "Body larger than EARFUL_INGEST_MAX_BODY_BYTES, or more mentions than EARFUL_INGEST_MAX_BATCH"},
    415: {"description": "Content-Type is not application/json"},
    422: {"description": "Invalid mentions (each problem named by path in `errors[]`)"},
    429: {"description": "Rate limit of this API key exceeded; see Retry-After"},
    503: {"description": "Kafka slow or unavailable; nothing was accepted, retry after Retry-After"},
}


def build_app(settings: Settings, publisher: Publisher, health: Health) -> FastAPI:
    """The ingest FastAPI app (its OpenAPI document is served at /openapi.json)."""
    app = FastAPI(
        title="Earful ingest",
        version="1",
        description="Push mentions into Earful. A 202 means every mention in the batch is durably in Kafka.",
    )
    # The push route's own guard bounds the body after the key check; mention texts are checked one by one.
    limits = RequestLimits.from_settings(settings, keys_configured=bool(settings.api_key_list()), bound_body=False)
    guard_requests(app, limits, render=_refusal)
    add_ops_routes(app, health)
    _add_error_handlers(app)
    app.include_router(_push_router(settings, publisher))
    return app


def _refusal(refusal: Refusal) -> Response:
    """A refusal of the shared request guard, counted as the push API's own refusals are."""
    where = ".".join(refusal.loc)
    return _error(refusal.status, refusal.reason, refusal.message, [{"path": where, "message": refusal.message}] if where else None)


def _add_error_handlers(app: FastAPI) -> None:
    """Errors FastAPI raises itself, as problem details counted by reason."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Errors the framework raises itself (unknown path, wrong method, unparsable body) in the documented shape.
        return _error(exc.status_code, f"http_{exc.status_code}", str(exc.detail), headers=getattr(exc, "headers", None),
                      instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            message = str(bad_json.get("ctx", {}).get("error", bad_json["msg"]))
            return _error(400, "bad_json", "request body is not valid JSON", [{"path": "(body)", "message": message}],
                          instance=request.url.path)
        return _error(422, "invalid", "invalid mentions", format_problems(errors), instance=request.url.path)


async def _publish(publisher: Publisher, limiter: RateLimiter, client: str, records: list[dict[str, Any]],
                   connector: str) -> PublishResult | JSONResponse:
    """The broker's acknowledgement of `records`, or the refusal to answer; a batch the broker could
    not take gives its mentions back to the client's rate budget, since nothing was accepted."""
    try:
        return await publisher.publish(records, connector)
    except EncodeError as exc:  # validation should have caught it; still a client problem, not a 500
        return _error(422, "invalid", "invalid mentions", [{"path": "mentions", "message": str(exc)}])
    except BackpressureError as exc:
        limiter.give_back(client, len(records))
        return _error(503, "backpressure", f"ingest is busy ({exc}); nothing was accepted, retry later",
                      headers={"Retry-After": "1"})
    except BrokerError as exc:
        limiter.give_back(client, len(records))
        log.error("publish failed", extra={"error": str(exc), "count": len(records)})
        return _error(503, "broker_unavailable", "Kafka is unavailable; nothing was accepted, retry later",
                      headers={"Retry-After": str(BROKER_RETRY_AFTER_S)})


def _push_router(settings: Settings, publisher: Publisher) -> APIRouter:
    """POST /v1/mentions, behind the guard (key, content type, size) and the per-key rate limit."""
    limiter = RateLimiter(settings.ingest_rate_limit_per_s,
                          settings.ingest_rate_limit_burst or max(settings.ingest_rate_limit_per_s, settings.ingest_max_batch))
    keys = KeyRing.from_settings(settings)
    guard = _Guard(settings, keys)
    metric_sources = frozenset(settings.ingest_metric_sources)
    router = APIRouter(route_class=_guarded_route(guard))
    # The guard above has checked the key and its scope already; the declaration documents it (and
    # would check it again, were the route ever mounted without its guard).
    scope = requires(Scope.INGEST, ApiAuth(keys, AuditLog("ingest")))

    @router.post("/v1/mentions", status_code=202, summary="Accept a batch of mentions.", response_model=AcceptedBody,
                 responses=RESPONSES, operation_id="pushMentions", dependencies=[scope])
    async def post_mentions(
        batch: MentionBatch,
        request: Request,
        connector: Literal["push", "replay"] = Header(
            "push", alias="X-Earful-Connector", description="Which tool sends: push (default) or replay (`earful replay`)."),
    ) -> JSONResponse:
        started = time.perf_counter()
        now = utc_now()
        problems = check_limits(batch, settings.ingest_max_batch, settings.ingest_max_text_chars, now,
                                settings.storage_retention_days)
        if problems:
            status = 413 if problems[0]["path"] == "mentions" else 422
            return _error(status, "limits", "invalid mentions", problems)
        FETCHED.labels(connector).inc(len(batch.mentions))
        wait = limiter.take(request.state.client, len(batch.mentions))
        if wait > 0:
            return _error(429, "rate_limited", f"rate limit of {settings.ingest_rate_limit_per_s:g} mentions/s exceeded; "
                          f"retry in {wait:.1f}s", headers={"Retry-After": retry_after_header(wait)})
        records = [to_record(m, now, connector=connector) for m in batch.mentions]
        result = await _publish(publisher, limiter, request.state.client, records, connector)
        if isinstance(result, JSONResponse):
            return result
        for label, n in Tally(source_label(r["source"], metric_sources) for r in records).items():
            ACCEPTED.labels(label).inc(n)
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        return JSONResponse(
            {"accepted": len(records), "duplicates": result.duplicates, "mention_ids": result.mention_ids,
             "received_at": now.isoformat().replace("+00:00", "Z")},
            status_code=202,
        )

    return router
