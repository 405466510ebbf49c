"""The one guard of every HTTP API: named keys with scopes, compared in constant time, and audited.

Every route declares the scope it needs (`requires(Scope.X)`, a FastAPI dependency). With keys
configured, a request without a known key is a 401 and one whose key lacks the scope a 403 naming
the scope; with none configured the APIs are open (local use: the request guard of
earful.core.http then answers only loopback or allowed Host names). A presented key is hashed and
compared with the digest of every configured key, always all of them, with `hmac.compare_digest`:
neither the position of the first differing byte, nor the length of a key, nor which key matched
shows in the response time. Keys are only read from headers (`X-API-Key`, or
`Authorization: Bearer`), never from the URL (URLs end up in logs, history and Referer).

Routes needing `write` or `admin` are audited (`AuditedRoute`): who, what, when and the outcome,
refusals included, as an `earful.audit` log line and, where the service has PostgreSQL, a row of
`api_audit` (earful.core.audit).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from earful.core.apikeys import ApiKey, Scope
from earful.core.audit import AuditEntry, AuditLog

__all__ = ["ApiAuth", "AuditedRoute", "KeyRing", "Scope", "ScopeCheck", "presented_key", "requires"]

AUDITED = frozenset({Scope.WRITE, Scope.ADMIN})
SCHEME_HEADER = "ApiKeyHeader"
SCHEME_BEARER = "BearerKey"
# Declared as security schemes so each operation's OpenAPI lists both (either will do) with its scope;
# neither refuses by itself (auto_error=False): `ScopeCheck` decides, with its own 401/403.
_HEADER = APIKeyHeader(name="X-API-Key", scheme_name=SCHEME_HEADER, auto_error=False,
                       description="A key of EARFUL_API_KEYS (name:scope+scope:secret); see the operation's scope.")
_BEARER = HTTPBearer(scheme_name=SCHEME_BEARER, auto_error=False, description="The same key as a bearer token.")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """The configured keys; `identify` returns the key presented, or None."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys = [(key, _digest(key.secret)) for key in keys if key.secret]

    @classmethod
    def from_settings(cls, settings: Any) -> KeyRing:
        """The keys of EARFUL_API_KEYS and EARFUL_INGEST_API_KEYS (`Settings.api_key_list`)."""
        return cls(settings.api_key_list())

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @property
    def names(self) -> list[str]:
        return [key.name for key, _ in self._keys]

    def identify(self, presented: str | None) -> ApiKey | None:
        if not presented:
            return None
        given = _digest(presented)
        found = None
        for key, digest in self._keys:  # every digest compared, whichever matches
            if hmac.compare_digest(given, digest) and found is None:
                found = key
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `X-API-Key`, else from `Authorization: Bearer <key>`."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class ApiAuth:
    """What the guard checks against and where it audits: the keys and the audit log of one service."""

    keys: KeyRing
    audit: AuditLog


@dataclass
class Access:
    """What the guard decided for one request (kept in `request.state.earful_access`)."""

    auth: ApiAuth
    scope: Scope
    key: str | None  # the key's name; None: no key (the API is open, or the key was missing or unknown)
    target: Callable[[Request], str | None] | None = None  # what the audit names as acted on (default: path params)


def _target(request: Request) -> str | None:
    values = [str(v) for v in request.path_params.values()]
    return "/".join(values) if values else None


def auth_of(request: Request) -> ApiAuth:
    """The service's `ApiAuth`, as `install_auth` put it on the app (fails closed without one)."""
    found = getattr(request.app.state, "earful_auth", None)
    if not isinstance(found, ApiAuth):
        raise RuntimeError("no ApiAuth installed on this app (earful.core.auth.install_auth)")
    return found


def install_auth(app: Any, auth: ApiAuth) -> None:
    """Make `auth` the keys and audit log of the routes declared with `requires(scope)` alone."""
    app.state.earful_auth = auth


class ScopeCheck:
    """The dependency `requires` declares: the scope a route needs (read by the OpenAPI pass, too)."""

    def __init__(self, scope: Scope, auth: ApiAuth | None = None,
                 target: Callable[[Request], str | None] | None = None) -> None:
        self.scope = scope
        self.auth = auth
        self.target = target

    async def __call__(self, request: Request, _header: str | None = Security(_HEADER),
                       _bearer: HTTPAuthorizationCredentials | None = Security(_BEARER)) -> None:
        auth = self.auth or auth_of(request)
        key = auth.keys.identify(presented_key(request.headers)) if auth.keys.enabled else None
        request.state.earful_access = Access(auth, self.scope, key.name if key else None, self.target)
        if not auth.keys.enabled:
            return
        if key is None:
            raise HTTPException(401, detail="missing or unknown API key: send it as X-API-Key or Authorization: Bearer"
                                " (a key in the URL is not accepted)",
                                headers={"WWW-Authenticate": 'Bearer realm="earful"'})
        if self.scope not in key.scopes:
            have = "+".join(sorted(key.scopes)) or "none"
            raise HTTPException(403, detail=f"the API key {key.name!r} lacks the scope {self.scope.value!r} this request "
                                f"needs (it has {have})")


def requires(scope: Scope, auth: ApiAuth | None = None, target: Callable[[Request], str | None] | None = None) -> Any:
    """The route dependency requiring `scope`: `dependencies=[requires(Scope.READ)]`. Without `auth`,
    the app's (`install_auth`); `target` names what an audited request acts on when its path
    parameters should not be recorded as they are (an erased author's handle)."""
    return Security(ScopeCheck(scope, auth, target), scopes=[scope.value])


def route_scope(route: APIRoute) -> Scope | None:
    """The scope a route declared, or None (an open route: ops endpoints, the dashboard page)."""
    for dep in route.dependant.dependencies:
        if isinstance(dep.call, ScopeCheck):
            return dep.call.scope
    return None


def principal_of(request: Request) -> str | None:
    """The name of the key that authenticated the request, or None (no keys configured)."""
    access = getattr(request.state, "earful_access", None)
    return access.key if isinstance(access, Access) and access.auth.keys.enabled else None


class AuditedRoute(APIRoute):
    """A route whose write and admin requests are audited with their outcome, refusals included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def audited(request: Request) -> Response:
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except StarletteHTTPException as exc:
                status = exc.status_code
                raise
            except RequestValidationError:
                status = 422
                raise
            finally:
                await _audit(request, status)

        return audited


async def _audit(request: Request, status: int) -> None:
    access = getattr(request.state, "earful_access", None)
    if not isinstance(access, Access) or access.scope not in AUDITED:
        return
    target = getattr(request.state, "audit_target", None) or (access.target or _target)(request)
    await access.auth.audit.record(AuditEntry.now(
        key=access.key, scope=access.scope.value, method=request.method, path=request.url.path, target=target,
        status=status, client=request.client.host if request.client else None))


def document_security(schema: dict[str, Any]) -> None:
    """Complete each secured operation of `schema` (FastAPI lists the schemes with the scope): a line in
    its description naming the scope, and the 401 and 403 it may answer."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            scopes = {scope for requirement in operation.get("security", []) for scope in requirement.get(SCHEME_HEADER, [])}
            if len(scopes) != 1:
                continue
            (scope,) = scopes
            note = f"Requires an API key with the scope `{scope}` (when keys are configured)."
            if scope in AUDITED:
                note += " Audited (`GET /v1/audit` on the storage service)."
            operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".strip()
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "Missing or unknown API key."})
            responses.setdefault("403", {"description": f"The key lacks the scope `{scope}`."})
