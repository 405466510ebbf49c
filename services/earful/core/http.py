"""HTTP plumbing shared by the services: ops endpoints, the request guard and an embeddable
uvicorn server.

Every service exposes ``/healthz``, ``/readyz`` and ``/metrics``. Ingest and storage add their own
API routes to the same FastAPI app; alerting adds its API to the ops app, enrichment serves only
these. Every app is wrapped in the same request guard (`guard_requests`): bounded bodies, a Host
allow-list while no API keys are set, no NUL characters. Every error of every API is an RFC 9457
problem details object (`application/problem+json`: type, title, status, detail, instance, and
`errors[]` naming each invalid field), and every operation of the OpenAPI documents declares the
guard's 413 and 421, its key scope (earful.core.auth) and its errors in that shape. The server runs
inside the service's own event loop and leaves signal handling to the service, so one SIGTERM
handler decides the shutdown order (stop taking work, flush, commit, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import re
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from earful.core.auth import document_security
from earful.core.health import Health
from earful.core.metrics import render_latest
from earful.core.settings import Settings

RETRY_AFTER_MAX_S = 3600.0  # a server asking for longer is not taken at its word: an hour at most


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds an HTTP Retry-After header asks for (delta-seconds or an HTTP date, which is always
    GMT), at most RETRY_AFTER_MAX_S; 0 when absent, unreadable, negative or not a finite number,
    so a broken header never stalls a client."""
    value = (value or "").strip()
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are GMT
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds <= 0:
        return 0.0
    return min(seconds, RETRY_AFTER_MAX_S)


def add_ops_routes(app: FastAPI, health: Health) -> None:
    """Attach /healthz, /readyz and /metrics to `app`."""

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process and its event loop run.", operation_id="getHealth")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": health.service}

    @app.get("/readyz", tags=["ops"], summary="Readiness: every dependency is reachable.", operation_id="getReadiness",
             responses={503: {"description": "Not ready: `checks` names each failing dependency",
                              "content": {"application/json": {}}}})
    async def readyz() -> JSONResponse:
        ok, checks = await health.readiness()
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics.", response_class=PlainTextResponse, operation_id="getMetrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        body, content_type = render_latest()
        return Response(body, media_type=content_type)


def ops_app(health: Health, title: str, limits: RequestLimits | None = None) -> FastAPI:
    """A FastAPI app with the ops endpoints (alerting adds its API routes), guarded by `limits`,
    answering errors as problem details."""
    app = FastAPI(title=title, version="1")
    add_ops_routes(app, health)
    add_problem_handlers(app)
    if limits is not None:
        guard_requests(app, limits)
    else:
        document_api(app, None)
    return app


# --- the request guard ------------------------------------------------------------------------------

#: Answered whatever the Host: probes and scrapers name the pod's address, and these leak nothing.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_HOST = re.compile(r"^(?:\[([0-9a-f:.]+)\]|([^:\[\]]*))(?::[0-9]*)?$")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_LONE_SURROGATE = "a lone surrogate escape (\\ud800-\\udfff) is not text"


@dataclass(frozen=True)
class RequestLimits:
    """What an API refuses before routing (see `guard_requests`).

    `max_body_bytes` None: the guard leaves the body to the app (ingest bounds it after the key
    check). `allowed_hosts` None: any Host (the API has keys); else only loopback names and
    addresses and these names (lower case; '*' for any). `check_json_text`: refuse bodies whose
    JSON strings hold text PostgreSQL cannot store (NUL, lone surrogates).
    """

    max_body_bytes: int | None
    allowed_hosts: frozenset[str] | None = None
    check_json_text: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, keys_configured: bool, bound_body: bool = True) -> RequestLimits:
        """The limits of a service's API: EARFUL_HTTP_MAX_BODY_BYTES (with `bound_body`, checking
        the JSON text as well) and, while the API has no keys, EARFUL_HTTP_ALLOWED_HOSTS."""
        hosts = None if keys_configured else frozenset(h.lower() for h in settings.http_allowed_hosts)
        return cls(settings.http_max_body_bytes if bound_body else None, hosts, bound_body)


@dataclass(frozen=True)
class Refusal:
    """A request the guard answers itself: status, a short reason, a sentence, and where (a 422 names it)."""

    status: int
    reason: str
    message: str
    loc: tuple[str, ...] = ()


def problem_refusal(refusal: Refusal) -> Response:
    """A refusal of the guard as problem details (`errors[]` naming the parameter for a 422)."""
    errors = [{"loc": list(refusal.loc), "path": ".".join(refusal.loc), "detail": refusal.message,
               "type": refusal.reason}] if refusal.loc else None
    return problem_response(refusal.status, refusal.message, reason=refusal.reason, errors=errors)


def host_name(header: str) -> str | None:
    """The host of a Host header: lower case, without port, brackets or trailing dot; None when malformed."""
    found = _HOST.match(header.strip().lower())
    if found is None:
        return None
    return (found.group(1) or found.group(2) or "").rstrip(".") or None


def host_allowed(header: str | None, allowed: Collection[str]) -> bool:
    """Whether a request naming Host `header` may reach an API without keys: loopback names and
    addresses, the `allowed` names, anything when `allowed` holds '*'. A page whose DNS name was
    rebound to this machine still sends its own name, so it is refused (DNS rebinding)."""
    if "*" in allowed:
        return True
    name = host_name(header or "")
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost") or name in allowed:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def json_text_problem(body: bytes) -> str | None:
    """Why the strings of a JSON body cannot be stored as text, or None: PostgreSQL text has no NUL
    character and UTF-8 no lone surrogate, and both can only arrive as escapes (\\u0000, \\ud800)."""
    high_end = -1  # where the escape of a high surrogate ended, while its low half is due
    for escape in _ESCAPE.finditer(body):
        code = int(escape.group(1), 16) if escape.group(1) else None
        if high_end >= 0:
            if escape.start() != high_end or code is None or not 0xDC00 <= code <= 0xDFFF:
                return _LONE_SURROGATE
            high_end = -1
        elif code == 0:
            return "a NUL character (\\u0000) cannot be stored"
        elif code is not None and 0xD800 <= code <= 0xDBFF:
            high_end = escape.end()
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            return _LONE_SURROGATE
    return _LONE_SURROGATE if high_end >= 0 else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands out the messages already read, then the live ones."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


class RequestGuard:
    """ASGI middleware refusing, before routing: a Host not allowed (421, only while the API has no
    keys), NUL characters in the path or query (422), a body over the limit (413, by Content-Length
    or counted as it arrives) and JSON text PostgreSQL cannot store (422)."""

    def __init__(self, app: ASGIApp, limits: RequestLimits, render: Callable[[Refusal], Response] = problem_refusal) -> None:
        self.app = app
        self.limits = limits
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        refusal = self._before_body(scope)
        if refusal is None and self.limits.max_body_bytes is not None:
            messages, refusal = await self._read_body(scope, receive, self.limits.max_body_bytes)
        if refusal is not None:
            await self.render(refusal)(scope, _replay(messages, receive), send)
            return
        await self.app(scope, _replay(messages, receive), send)

    def _before_body(self, scope: Scope) -> Refusal | None:
        allowed = self.limits.allowed_hosts
        host = _header(scope, b"host")
        if allowed is not None and scope["path"] not in OPS_PATHS and not host_allowed(host, allowed):
            return Refusal(421, "host_not_allowed", f"this service has no API keys, so it answers only requests for "
                           f"localhost or a host listed in EARFUL_HTTP_ALLOWED_HOSTS, not {(host or '')[:100]!r}")
        if "\x00" in scope["path"]:
            return Refusal(422, "value_error", "must not contain NUL characters (%00)", ("path",))
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return Refusal(422, "value_error", "must not contain NUL characters (%00)", ("query", name.replace("\x00", "")))
        return None

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> tuple[list[Message], Refusal | None]:
        """The request's messages, read up to `limit` bytes (the app gets them replayed), or why not."""
        too_large = Refusal(413, "too_large", f"the body is larger than {limit} bytes")
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            return [], too_large
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client left: the app sees it as it would have
                return messages, None
            size += len(message.get("body", b""))
            if size > limit:
                return messages, too_large
            if not message.get("more_body", False):
                break
        if self.limits.check_json_text and size:
            problem = json_text_problem(b"".join(m.get("body", b"") for m in messages))
            if problem:
                return messages, Refusal(422, "value_error", problem, ("body",))
        return messages, None


# --- problem details (RFC 9457) ----------------------------------------------------------------------

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:earful:problem:"


class ProblemError(BaseModel):
    """One invalid part of a request."""

    path: str = Field(description="Where: e.g. body.matchers[0].value, query.limit, mentions[3].created_at.")
    detail: str = Field(description="What is wrong there.")
    loc: list[str | int] | None = Field(None, description="The same place as a list (FastAPI's `loc`), when known.")
    type: str | None = Field(None, description="The kind of problem, e.g. missing, value_error, query_error.")


class ProblemDetails(BaseModel):
    """Every error of every Earful API (RFC 9457, `application/problem+json`)."""

    type: str = Field("about:blank", description="What kind of problem: `urn:earful:problem:<reason>`, or about:blank"
                      " when the status says it all.")
    title: str = Field(description="The HTTP status phrase, e.g. Unprocessable Content.")
    status: int = Field(description="The HTTP status code, as sent.")
    detail: str = Field(description="What went wrong with this request, in one or two sentences.")
    instance: str | None = Field(None, description="The path of the request.")
    errors: list[ProblemError] | None = Field(None, description="Each invalid field or parameter (422, and some 400 and 413).")


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(status: int, detail: str, *, reason: str | None = None, instance: str | None = None,
                     errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An RFC 9457 answer; `reason` becomes its type (urn:earful:problem:<reason>), else about:blank."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE_PREFIX + reason.replace("_", "-") if reason else "about:blank",
                            "title": _title(status), "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(jsonable_encoder(body, custom_encoder={float: _text_if_not_finite}), status_code=status,
                        headers=headers, media_type=PROBLEM_JSON)


def _text_if_not_finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def dotted(loc: Sequence[Any]) -> str:
    """A location as a path: ("body", "matchers", 0, "value") → body.matchers[0].value."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's validation errors as problem `errors[]`: path, detail, loc, type, and any extra
    fields a route adds (a query error's position and column); the input is not echoed."""
    out: list[dict[str, Any]] = []
    for e in errors:
        if not isinstance(e, dict):
            out.append({"path": "", "detail": str(e)})
            continue
        loc = list(e.get("loc") or [])
        entry = {"path": dotted(loc), "detail": str(e.get("msg", "")), "loc": loc, "type": e.get("type")}
        entry.update({k: v for k, v in e.items() if k not in ("loc", "msg", "type", "input", "ctx", "url")})
        if isinstance(e.get("ctx"), dict):  # e.g. a query error's position; an exception as its text
            entry["ctx"] = {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in e["ctx"].items()}
        out.append(entry)
    return out


async def _http_problem(request: Request, exc: Exception) -> Response:
    """An HTTPException (a route's own, or the framework's 404/405) as problem details. A list
    `detail` (a route's 422 naming fields) becomes `errors[]`."""
    assert isinstance(exc, StarletteHTTPException)
    headers = getattr(exc, "headers", None)
    if isinstance(exc.detail, list):
        errors = validation_errors(exc.detail)
        summary = "; ".join(f"{e['path']}: {e['detail']}" if e["path"] else e["detail"] for e in errors)
        return problem_response(exc.status_code, summary or "the request is invalid", reason="invalid",
                                instance=request.url.path, errors=errors, headers=headers)
    if exc.status_code == 304 or exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=headers)
    return problem_response(exc.status_code, str(exc.detail), instance=request.url.path, headers=headers)


async def _validation_problem(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422 as problem details (an input JSON cannot carry, 1e999 or NaN, is echoed
    as text: encoding it as a number would fail, and the answer become a 500)."""
    errors = validation_errors(exc.errors() if isinstance(exc, RequestValidationError) else [])
    summary = "; ".join(f"{e['path']}: {e['detail']}" for e in errors[:5])
    return problem_response(422, summary or "the request is invalid", reason="invalid", instance=request.url.path,
                            errors=errors)


def add_problem_handlers(app: FastAPI) -> None:
    """Answer HTTP errors and validation errors as problem details (an app may replace either)."""
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def refusal_responses(limits: RequestLimits, path: str) -> dict[str, dict[str, Any]]:
    """The OpenAPI responses the guard may answer an operation on `path` with.

    413 only when the guard bounds bodies; 421 on every path but the ops ones, whether or not keys are
    set now (the document is the same for every deployment).
    """
    found: dict[str, dict[str, Any]] = {}
    if limits.max_body_bytes is not None:
        found["413"] = {"description": "The body is larger than EARFUL_HTTP_MAX_BODY_BYTES."}
    if path not in OPS_PATHS:
        found["421"] = {"description": "Host not allowed: while the service has no API keys it answers only requests "
                        "for localhost or a host in EARFUL_HTTP_ALLOWED_HOSTS (against DNS rebinding)."}
    return found


def _is_error(status: str) -> bool:
    return status.upper() in ("4XX", "5XX", "DEFAULT") or (status.isdigit() and int(status) >= 400)


def document_api(app: FastAPI, limits: RequestLimits | None) -> None:
    """Complete `app`'s OpenAPI document: the guard's refusals (`refusal_responses`) on every operation,
    each operation's key scope (earful.core.auth), and every error response as problem details.
    Responses a route declares itself are kept, with their content made problem+json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's own, cached after the first call: adding again changes nothing
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ProblemDetails, ProblemError):
            own = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in own.pop("$defs", {}).items():
                schemas.setdefault(name, nested)
            schemas[model.__name__] = own
        document_security(schema)
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if method not in _METHODS:
                    continue
                responses = operation.setdefault("responses", {})
                if limits is not None:
                    for status, response in refusal_responses(limits, path).items():
                        responses.setdefault(status, response)
                for status, response in responses.items():
                    if _is_error(status) and not (path in OPS_PATHS and status == "503"):
                        response["content"] = dict(content)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document


def guard_requests(app: FastAPI, limits: RequestLimits, render: Callable[[Refusal], Response] = problem_refusal) -> None:
    """Wrap `app` in the `RequestGuard` (`render` answers a refusal; problem details by default),
    answer errors as problem details (an app's own handler, like ingest's, replaces one), and
    complete its OpenAPI document (`document_api`)."""
    app.add_middleware(RequestGuard, limits=limits, render=render)
    add_problem_handlers(app)
    document_api(app, limits)


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the service owns signals
        yield


class HttpServer:
    """Runs a FastAPI app on uvicorn as a task of the current event loop."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self.host, self.port = host, port

    async def start(self) -> None:
        """Start serving; returns once the socket is bound (raises if the port is taken)."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the bind error
                raise OSError(f"HTTP server on {self.host}:{self.port} exited during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting connections and let in-flight requests finish."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
