"""The weekly executive report, delivered by the storage service: EARFUL_REPORT_SCHEDULE.

At the scheduled time (e.g. `mon 08:00 Europe/London`) the service makes the PDF report of the
last complete Monday-to-Sunday UTC week for each watchlist of EARFUL_REPORT_WATCHLISTS (empty:
every brand) and delivers it by email (EARFUL_REPORT_SMTP_*: the PDF attached, the headline
figures in the text) and/or to EARFUL_REPORT_WEBHOOK_URL (multipart/form-data: a `metadata` JSON
part and a `report` PDF part; docs/reports.md).

Several storage replicas may run the schedule: the one that takes a PostgreSQL advisory lock sends
the reports and keeps the lock a while after, so the others skip that run. A delivery that fails
is retried with backoff; what was sent and what failed is logged. A run missed while no replica
was up is not made up later (`earful report` makes any week's report by hand).

The pure parts (the next run, the email, the webhook's parts) are functions of their arguments.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from earful.core.errors import DeliveryError, EarfulError
from earful.core.retry import Backoff, wait_or_stop
from earful.core.settings import Settings, parse_report_schedule
from earful.storage.api.responses import iso
from earful.storage.report import Made, dashboard_base, make_report
from earful.storage.report_data import Period, last_week
from earful.watchlists import WatchlistSet

log = logging.getLogger("earful.storage.reports")
UTC = timezone.utc
#: pg_advisory_lock key of the weekly delivery ("earfulrp" as a big-endian int64).
LOCK_KEY = int.from_bytes(b"earfulrp", "big") & 0x7FFF_FFFF_FFFF_FFFF
#: How long the replica that sent a run keeps the lock, so that replicas whose clocks are a little
#: behind skip the run instead of sending it again.
HOLD_AFTER_S = 600.0
#: The longest single sleep while waiting for a run (the next run is recomputed after each).
MAX_SLEEP_S = 3600.0
SMTP_TIMEOUT_S = 60.0
WEBHOOK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Schedule:
    """A weekly time: weekday (0 = Monday), hour and minute in a zone."""

    weekday: int
    at: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, text: str) -> Schedule:
        weekday, hour, minute, zone = parse_report_schedule(text)
        return cls(weekday, time(hour, minute), ZoneInfo(zone))

    def next_run(self, after: datetime) -> datetime:
        """The first scheduled time strictly after `after` (UTC). A time a clock change skips runs
        at the same wall time shifted by the change; one it repeats, at its first occurrence."""
        local = after.astimezone(self.tz)
        for days in range(8):
            day = (local + timedelta(days=days)).date()
            if day.weekday() != self.weekday:
                continue
            candidate = datetime.combine(day, self.at, self.tz).astimezone(UTC)
            if candidate > after:
                return candidate
        raise AssertionError("a weekday recurs within 8 days")  # pragma: no cover


def targets(settings: Settings, watchlists: WatchlistSet) -> list[str]:
    """The watchlists to report on: EARFUL_REPORT_WATCHLISTS, else every brand."""
    if settings.report_watchlists:
        return list(settings.report_watchlists)
    return sorted(w.id for w in watchlists.watchlists.values() if w.kind == "brand")


def attachment_name(made: Made) -> str:
    """'earful-acme-air-2026-11-02.pdf'."""
    return f"earful-{made.report.watchlist_id}-{made.report.period.lo:%Y-%m-%d}.{made.fmt}"


def summary_text(made: Made) -> str:
    """The email's text: what the report covers, its headline figures, where to see more."""
    r = made.report
    lines = [f"Earful report: {r.watchlist_name}, {r.title}", "", f"Period: {r.period_label}",
             f"Compared with: {r.previous_label}", ""]
    lines += [f"  {f.label}: {f.display} ({f.delta} vs previous period)" for f in r.figures]
    if r.alert_rules:
        lines += ["", f"Alerts: {r.alerts_total:,} started in the period"]
        lines += [f"  {x['rule']}: {x['alerts']:,} ({x['severity']}), first {x['first']}: {x['summary']}" for x in r.alert_rules]
    lines += ["", f"Dashboard: {r.view}", "", f"The full report is attached ({attachment_name(made)})."]
    return "\n".join(lines) + "\n"


def build_email(made: Made, sender: str, recipients: tuple[str, ...], now: datetime) -> EmailMessage:
    """The report email: the headline figures as text, the report attached."""
    msg = EmailMessage()
    msg["Subject"] = f"Earful report: {made.report.watchlist_name}, {made.report.title}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(now.timestamp(), localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(summary_text(made))
    maintype, subtype = ("application", "pdf") if made.fmt == "pdf" else ("text", "html")
    if maintype == "text":
        msg.add_attachment(made.data.decode("utf-8"), subtype=subtype, filename=attachment_name(made))
    else:
        msg.add_attachment(made.data, maintype=maintype, subtype=subtype, filename=attachment_name(made))
    return msg


def metadata(made: Made) -> dict[str, Any]:
    """The webhook's `metadata` part: what the attached report covers and its headline figures."""
    r = made.report
    return {"type": "earful.report", "version": 1, "watchlist": {"id": r.watchlist_id, "name": r.watchlist_name},
            "period": {"from": iso(r.period.lo), "to": iso(r.period.hi), "title": r.title},
            "previous": {"from": iso(r.period.prev_lo), "to": iso(r.period.lo)},
            "generated_at": iso(r.generated_at), "dashboard_url": r.view, "mentions": r.mentions,
            "figures": [{"name": f.name, "label": f.label, "value": f.value, "previous": f.previous, "display": f.display,
                         "change": f.delta, "url": f.href} for f in r.figures],
            "alerts": r.alerts_total, "filename": attachment_name(made),
            "content_type": "application/pdf" if made.fmt == "pdf" else "text/html"}


def send_email(settings: Settings, msg: EmailMessage) -> None:
    """Send through EARFUL_REPORT_SMTP_HOST (STARTTLS with a checked certificate unless turned
    off; AUTH when a user is set); DeliveryError saying what failed."""
    assert settings.report_smtp_host is not None
    try:
        with smtplib.SMTP(settings.report_smtp_host, settings.report_smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
            smtp.ehlo()
            if settings.report_smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.report_smtp_user:
                password = settings.report_smtp_password.get_secret_value() if settings.report_smtp_password else ""
                smtp.login(settings.report_smtp_user, password)
            refused = smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {settings.report_smtp_host}:{settings.report_smtp_port}: {exc}") from exc
    if refused:
        log.warning("report email refused for some recipients", extra={"refused": sorted(refused)})


async def post_webhook(url: str, made: Made, client: httpx.AsyncClient) -> None:
    """POST the report to `url` as multipart/form-data (`metadata`: JSON, `report`: the file);
    DeliveryError unless the answer is 2xx."""
    content_type = "application/pdf" if made.fmt == "pdf" else "text/html"
    files: dict[str, tuple[str | None, bytes, str]] = {
        "metadata": (None, json.dumps(metadata(made)).encode("utf-8"), "application/json"),
        "report": (attachment_name(made), made.data, content_type)}
    try:
        response = await client.post(url, files=files, headers={"User-Agent": "earful-report"})
    except httpx.HTTPError as exc:
        raise DeliveryError(f"report webhook: {exc!r}") from exc
    if not response.is_success:
        raise DeliveryError(f"report webhook answered {response.status_code}: {response.text[:200]}")


@dataclass
class RunResult:
    """What one scheduled run did (for logs and tests)."""

    due: datetime
    skipped: str | None = None  # why nothing was sent (another replica holds the run)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (watchlist, channel)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (watchlist, channel, error)
    empty: list[str] = field(default_factory=list)  # watchlists without mentions that week


class ReportScheduler:
    """Sends the weekly reports at EARFUL_REPORT_SCHEDULE until the service stops."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, watchlists: Callable[[], WatchlistSet], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), attempts: int = 5,
                 retry_base_s: float = 30.0, retry_max_s: float = 600.0, hold_after_s: float = HOLD_AFTER_S) -> None:
        self.settings = settings
        self.schedule = Schedule.parse(settings.report_schedule)
        self.pool = pool
        self.watchlists = watchlists
        self.clock = clock
        self.attempts = attempts
        self.retry = (retry_base_s, retry_max_s)
        self.hold_after_s = hold_after_s
        self.fonts = tuple(Path(f) for f in settings.report_fonts)

    @classmethod
    def from_settings(cls, settings: Settings, pool: asyncpg.Pool, watchlists: Callable[[], WatchlistSet]) -> ReportScheduler | None:
        """A scheduler when EARFUL_REPORT_SCHEDULE is set, else None."""
        return cls(settings, pool, watchlists) if settings.report_schedule else None

    async def run(self, stopping: asyncio.Event) -> None:
        """Wait for each scheduled time and send that week's reports; returns when `stopping` is set."""
        due = self.schedule.next_run(self.clock())
        log.info("weekly reports scheduled", extra={"next_run": iso(due), "schedule": self.settings.report_schedule})
        while not stopping.is_set():
            wait = (due - self.clock()).total_seconds()
            if wait > 0:
                if await wait_or_stop(stopping, min(wait, MAX_SLEEP_S)):
                    return
                continue
            backoff = Backoff(*self.retry)
            for attempt in range(1, self.attempts + 1):
                try:
                    await self.send_run(due, stopping)
                    break
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # PostgreSQL away: try again
                    log.warning("weekly reports: PostgreSQL unavailable", extra={"attempt": attempt, "error": repr(exc)})
                    if attempt == self.attempts or await wait_or_stop(stopping, backoff.next_delay()):
                        break
                except Exception:  # a bug in one run must not stop the service's other work; logged with its traceback
                    log.exception("the weekly report run failed")
                    break
            due = self.schedule.next_run(max(due, self.clock()))
            log.info("next weekly reports", extra={"next_run": iso(due)})

    async def send_run(self, due: datetime, stopping: asyncio.Event | None = None) -> RunResult:
        """The run due at `due`: every target's report of the week before, to every channel, by
        the replica that takes the lock."""
        result = RunResult(due)
        stop = stopping or asyncio.Event()
        # A connection of its own holds the lock (minutes, after the sending): the pools stay whole.
        conn = await asyncpg.connect(self.settings.database_url.get_secret_value(), timeout=30)
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                result.skipped = "another storage replica is sending this run"
                log.info("weekly reports: another replica sends this run", extra={"due": iso(due)})
                return result
            await self._send_all(due, result, stop)
            log.info("weekly reports sent", extra={"due": iso(due), "sent": len(result.sent), "failed": len(result.failed),
                                                   "without_mentions": result.empty})
            await wait_or_stop(stop, max(0.0, self.hold_after_s - (self.clock() - due).total_seconds()))
        finally:
            await conn.close()  # ends the session, and with it the lock
        return result

    async def _send_all(self, due: datetime, result: RunResult, stop: asyncio.Event) -> None:
        period: Period = last_week(due)
        watchlists = self.watchlists()
        base = dashboard_base(self.settings)
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
            for wid in targets(self.settings, watchlists):
                try:
                    made = await make_report(self.pool, watchlists, wid, period, self.schedule.tz, base, "pdf", self.fonts,
                                             self.clock())
                except EarfulError as exc:  # no mentions that week: nothing to say
                    result.empty.append(wid)
                    log.info("no weekly report for a watchlist without mentions", extra={"watchlist": wid, "reason": str(exc)})
                    continue
                channels: list[tuple[str, Callable[[], Awaitable[None]]]] = []
                if self.settings.report_smtp_host:
                    msg = build_email(made, self.settings.report_smtp_from or "", self.settings.report_smtp_to, self.clock())
                    channels.append(("email", functools.partial(asyncio.to_thread, send_email, self.settings, msg)))
                if self.settings.report_webhook_url:
                    channels.append(("webhook", functools.partial(post_webhook, self.settings.report_webhook_url, made, client)))
                for channel, send in channels:
                    error = await self._with_retries(send, stop)
                    if error is None:
                        result.sent.append((wid, channel))
                        log.info("weekly report delivered", extra={"watchlist": wid, "channel": channel,
                                                                   "period": made.report.title})
                    else:
                        result.failed.append((wid, channel, error))
                        log.error("weekly report not delivered", extra={"watchlist": wid, "channel": channel, "error": error})

    async def _with_retries(self, send: Callable[[], Awaitable[None]], stop: asyncio.Event) -> str | None:
        """None once `send()` succeeded; the last error after `attempts` tries (or a stop)."""
        backoff = Backoff(*self.retry)
        error = "not attempted"
        for attempt in range(1, self.attempts + 1):
            try:
                await send()
                return None
            except DeliveryError as exc:
                error = str(exc)
                log.warning("weekly report delivery failed; retrying", extra={"attempt": attempt, "error": error})
            if attempt < self.attempts and await wait_or_stop(stop, backoff.next_delay()):
                break
        return error
