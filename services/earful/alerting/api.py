"""The alerting service's HTTP API (on its own port, next to /healthz, /readyz, /metrics):
current alerts, acknowledgements, silences and the notification log. Everything is persisted in
PostgreSQL, so it survives restarts and every replica sees the same silences.

Keys are checked by the shared guard (earful.core.auth): reads need the scope read; silences and
acknowledgements write, and are audited (the `earful.audit` log and the `api_audit` table). The app
around the router (`ops_app`) bounds bodies, refuses NUL characters and, without keys, foreign Host
headers, and answers errors as problem details. A silence ends at most
`EARFUL_ALERT_SILENCE_MAX_DAYS` from now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from earful.alerting.events import to_json
from earful.alerting.evidence_store import alert_evidence
from earful.alerting.notification.grouping import (
    MAX_MATCHER_CHARS,
    Alert,
    Clock,
    Matcher,
    Silence,
    inhibited_by,
    parse_matchers,
    silenced_by,
)
from earful.alerting.notification.routing import NotifyConfig
from earful.alerting.notification.store import AlertStore
from earful.core.audit import AuditLog
from earful.core.auth import ApiAuth, AuditedRoute, KeyRing, Scope, requires

DEFAULT_MAX_SILENCE = timedelta(days=90)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such alert or silence."}}

#: The store, or None while PostgreSQL is not connected yet (the API answers 503 meanwhile).
StoreLookup = Callable[[], "AlertStore | None"]


class MatcherIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Label name, e.g. watchlist, rule, severity.")
    value: str = Field(max_length=MAX_MATCHER_CHARS, description="Value (or, when is_regex, a regular expression in RE2"
                       " syntax matching the whole value: no backreferences or lookaround).")
    is_regex: bool = False
    is_equal: bool = Field(True, description="false: the matcher matches when the label does NOT match.")


class SilenceIn(BaseModel):
    matchers: list[MatcherIn] = Field(min_length=1, description="An alert is silenced when every matcher matches its labels.")
    starts_at: datetime | None = Field(None, description="Default: now.")
    ends_at: datetime | None = Field(None, description="End of the silence (at most EARFUL_ALERT_SILENCE_MAX_DAYS,"
                                     " 90 by default, from now); or give duration_s.")
    duration_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="Length of the silence from starts_at.")
    created_by: str = Field(min_length=1, max_length=200)
    comment: str = Field(min_length=1, max_length=2000, description="Why (shown with the silence).")


class AckIn(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="Who acknowledges.")
    comment: str = Field("", max_length=2000)


def _silence_json(s: Silence, now: datetime) -> dict[str, Any]:
    state = "active" if s.active(now) else ("pending" if now < s.starts_at else "expired")
    return {"id": s.id, "matchers": [m.__dict__ for m in s.matchers], "starts_at": to_json(s.starts_at),
            "ends_at": to_json(s.ends_at), "created_by": s.created_by, "comment": s.comment, "state": state}


def build_router(store: AlertStore | StoreLookup, config: NotifyConfig, keys: KeyRing, clock: Clock,
                 changed: Callable[[], Any], max_silence: timedelta = DEFAULT_MAX_SILENCE) -> APIRouter:
    """The routes; `changed()` is called after anything that may change what is notified.

    `store` is the store itself, or a lookup returning None until PostgreSQL is connected; a
    silence may end at most `max_silence` from now. `keys` guard every route; writes are audited
    in the store's database once it is connected (before that, in the log only).
    """
    lookup: StoreLookup = store if callable(store) else (lambda: store)

    def current() -> AlertStore:
        found = lookup()
        if found is None:
            raise HTTPException(status_code=503, detail="PostgreSQL not connected yet")
        return found

    def pool() -> Any:
        found = lookup()
        return found.pool if found is not None else None

    auth = ApiAuth(keys, AuditLog("alerting", pool))
    read, write = requires(Scope.READ, auth), requires(Scope.WRITE, auth)
    router = APIRouter(prefix="/v1", tags=["alerting"], route_class=AuditedRoute,
                       responses={503: {"description": "PostgreSQL not connected yet."}})
    _alert_routes(router, current, config, clock, changed, read, write)
    _silence_routes(router, current, clock, changed, max_silence, read, write)

    @router.get("/notifications", summary="The notification log, newest first.", operation_id="listNotifications",
                dependencies=[read])
    async def notifications(group_key: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"notifications": [to_json(n) for n in await current().notifications(group_key, limit)]}

    return router


async def _describe(store: AlertStore, config: NotifyConfig, alerts: list[Alert], now: datetime) -> list[dict[str, Any]]:
    """Alerts as the API shows them, with what mutes each (silence, inhibition) now."""
    silences = await store.silences(now)
    firing = await store.firing()
    return [{
        "fingerprint": a.fingerprint, "alert_id": a.alert_id, "status": a.status, "labels": dict(a.labels),
        "summary": a.event.get("summary"), "starts_at": to_json(a.starts_at), "ends_at": to_json(a.ends_at),
        "group_key": a.group_key, "receivers": list(a.receivers), "acked_by": a.acked_by,
        "silenced_by": silenced_by(a, silences, now) if a.firing else None,
        "inhibited_by": inhibited_by(a, firing, config.inhibit_rules) if a.firing else None,
        "annotations": a.event.get("annotations") or {},
        "severity_assessment": a.event.get("severity_assessment"),
    } for a in alerts]


def _alert_routes(router: APIRouter, current: Callable[[], AlertStore], config: NotifyConfig, clock: Clock,
                  changed: Callable[[], Any], read: Any, write: Any) -> None:
    """/alerts: current alerts, one alert with its notifications, acknowledgements."""

    @router.get("/alerts", summary="Current alerts (one per fingerprint), newest change first.", operation_id="listAlerts",
                dependencies=[read])
    async def alerts(status: str | None = Query(None, pattern="^(firing|resolved)$"),
                     limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
        store = current()
        return {"alerts": await _describe(store, config, await store.alerts(status, limit), clock())}

    @router.get("/alerts/{key}", summary="One alert (by fingerprint or alert id) with its group's notifications and the"
                " evidence it fired with.",
                responses=NOT_FOUND, operation_id="getAlert", dependencies=[read])
    async def alert(key: str) -> dict[str, Any]:
        store = current()
        found = await store.alert(key)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no alert {key}")
        (described,) = await _describe(store, config, [found], clock())
        described["event"] = found.event
        described["evidence"] = await alert_evidence(store.pool, found.alert_id)  # kept past the resolution
        described["notifications"] = [to_json(n) for n in await store.notifications(found.group_key, limit=50)]
        return described

    @router.post("/alerts/{key}/ack", summary="Acknowledge a firing alert: no repeat notifications until it resolves.",
                 responses={**NOT_FOUND, 409: {"description": "The alert is already resolved."}}, operation_id="ackAlert",
                 dependencies=[write])
    async def ack(key: str, body: AckIn) -> dict[str, Any]:
        store = current()
        found = await store.alert(key)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no alert {key}")
        if not found.firing:
            raise HTTPException(status_code=409, detail=f"alert {found.alert_id} is already resolved")
        await store.ack(found, body.by, body.comment, clock())
        changed()
        return {"alert_id": found.alert_id, "acked_by": body.by}


def _silence_routes(router: APIRouter, current: Callable[[], AlertStore], clock: Clock,
                    changed: Callable[[], Any], max_silence: timedelta, read: Any, write: Any) -> None:
    """/silences: list, create, read and expire silences."""

    @router.get("/silences", summary="Silences (active and pending; expired=true for all).", operation_id="listSilences",
                dependencies=[read])
    async def silences(expired: bool = False) -> dict[str, Any]:
        now = clock()
        return {"silences": [_silence_json(s, now) for s in await current().silences(now, include_expired=expired)]}

    @router.post("/silences", status_code=201, summary="Create a silence.", operation_id="createSilence",
                 dependencies=[write])
    async def create_silence(request: Request, body: SilenceIn) -> dict[str, Any]:
        now = clock()
        matchers, starts, ends = _silence_window(body, now, max_silence)
        silence = await current().add_silence(matchers, starts, ends, body.created_by, body.comment, now)
        request.state.audit_target = silence.id
        changed()
        return _silence_json(silence, now)

    @router.get("/silences/{silence_id}", summary="One silence.", responses=NOT_FOUND, operation_id="getSilence",
                dependencies=[read])
    async def get_silence(silence_id: str) -> dict[str, Any]:
        found = await _silence_or_404(current(), silence_id)
        return _silence_json(found, clock())

    @router.delete("/silences/{silence_id}", status_code=204, summary="Expire a silence now.", responses=NOT_FOUND,
                   operation_id="expireSilence", dependencies=[write])
    async def expire(silence_id: str) -> Response:
        store = current()
        await _silence_or_404(store, silence_id)
        await store.expire_silence(silence_id, clock())
        changed()
        return Response(status_code=204)


def _silence_window(body: SilenceIn, now: datetime, max_silence: timedelta) -> tuple[tuple[Matcher, ...], datetime, datetime]:
    """The new silence's matchers, start and end, checked (422 when they make no sense, or when it
    would end more than `max_silence` from now: a silence nobody remembers must not mute for years)."""
    try:
        matchers = parse_matchers([m.model_dump() for m in body.matchers])
    except ValueError as exc:
        raise _invalid("matchers", str(exc)) from exc
    if body.ends_at is not None and body.duration_s is not None:
        raise _invalid("ends_at", "give ends_at or duration_s, not both")
    if body.ends_at is None and body.duration_s is None:
        raise _invalid("ends_at", "give ends_at or duration_s")
    latest = now + max_silence
    too_long = _invalid("ends_at", f"a silence must end within {_days(max_silence)} from now (EARFUL_ALERT_SILENCE_MAX_DAYS)")
    try:
        starts = (body.starts_at or now).astimezone(timezone.utc)
        if starts > latest or (body.duration_s or 0) > max_silence.total_seconds():
            raise too_long
        ends = body.ends_at.astimezone(timezone.utc) if body.ends_at else starts + timedelta(seconds=body.duration_s or 0)
    except OverflowError as exc:  # a naive time at the edge of the calendar, moved to UTC
        raise _invalid("starts_at", "starts_at or ends_at is out of range") from exc
    if ends <= starts or ends <= now:
        raise _invalid("ends_at", "the silence must end after it starts and in the future")
    if ends > latest:
        raise too_long
    return matchers, starts, ends


def _invalid(field: str, message: str) -> HTTPException:
    """A 422 naming the body field (answered as problem details with `errors[]`, as FastAPI's own 422s)."""
    return HTTPException(status_code=422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:g} day" + ("" if days == 1 else "s")


async def _silence_or_404(store: AlertStore, silence_id: str) -> Silence:
    try:
        found = await store.silence(silence_id)
    except ValueError:
        found = None
    if found is None:
        raise HTTPException(status_code=404, detail=f"no silence {silence_id}")
    return found
