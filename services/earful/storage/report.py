"""`earful report`: the executive report of one watchlist and period, as a PDF or an HTML page.

The command reads PostgreSQL (EARFUL_DATABASE_URL) and never writes to it; the watchlists' names,
SLAs and targets come from EARFUL_WATCHLISTS_DIR (a watchlist with stored mentions but no file is
reported under its id). What the report holds is earful.storage.report_data; how it is laid out,
earful.storage.report_render; the weekly delivery, earful.storage.report_schedule.

Exit codes: 0 written; 2 a bad option (dates, zone, period, format); 1 anything else that stops
it (unknown watchlist, no mentions in the period, --out not writable, PostgreSQL unreachable), each
said in one line on stderr, where the progress lines go too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from earful.core.errors import EarfulError, StorageError, ValidationError
from earful.core.settings import Settings
from earful.storage.report_data import (
    PERIOD_NAMES,
    Period,
    Report,
    custom_period,
    gather,
    has_data,
    last_month,
    last_week,
    latest_week_with_data,
    newest_day_before,
    parse_time,
    week_start,
    zone,
)
from earful.storage.report_render import render
from earful.watchlists import WatchlistSet
from earful.watchlists.files import load_partial

UTC = timezone.utc
CONNECT_TIMEOUT_S = 10.0
QUERY_TIMEOUT_S = 120.0


class ReportUsageError(ValidationError):
    """An option of `earful report` is wrong (exit code 2, like argparse's)."""

    kind = "report_usage"


class ReportError(EarfulError):
    """The report cannot be made: unknown watchlist, no data, nowhere to write."""

    kind = "report_error"


def dashboard_base(settings: Settings) -> str:
    """The dashboard's address the report links to: EARFUL_DASHBOARD_URL, else
    EARFUL_ALERT_DASHBOARD_URL, else the storage service on this machine; ends with '/'."""
    url = settings.dashboard_url or settings.alert_dashboard_url or f"http://127.0.0.1:{settings.port_for('storage')}/"
    return url.split("#", 1)[0].split("?", 1)[0].rstrip("/") + "/"


def choose_period(start: str | None, end: str | None, name: str | None, now: datetime,
                  newest_before_this_week: datetime | None) -> Period | None:
    """The period the options ask for (ReportUsageError when they contradict each other); None
    for the default when the watchlist has no mentions before the current week."""
    if (start is None) != (end is None):
        raise ReportUsageError("--from and --to go together (or use --period)")
    if start is not None and name is not None:
        raise ReportUsageError("give either --from/--to or --period, not both")
    if start is not None and end is not None:
        try:
            return custom_period(parse_time("--from", start), parse_time("--to", end))
        except ValueError as exc:
            raise ReportUsageError(str(exc)) from exc
    if name == "last-week":
        return last_week(now)
    if name == "last-month":
        return last_month(now)
    if name is not None:
        raise ReportUsageError(f"--period {name!r}: choose from {', '.join(PERIOD_NAMES)}")
    return latest_week_with_data(newest_before_this_week)


def output_format(fmt: str | None, out: str) -> str:
    """--format, else the suffix of --out (.html/.htm: html), else pdf."""
    if fmt:
        return fmt
    return "html" if out.lower().endswith((".html", ".htm")) else "pdf"


def check_writable(out: str) -> None:
    """Fail before any work when --out cannot be written (ReportError saying why)."""
    if out == "-":
        return
    path = Path(out)
    if path.is_dir():
        raise ReportError(f"--out {out}: is a folder; name a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ReportError(f"--out {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ReportError(f"--out {out}: not writable (permission denied)")


def write_atomically(out: str, data: bytes) -> None:
    """Write `data` to `out` (whole or not at all: a temporary file renamed into place)."""
    if out == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ReportError(f"--out {out}: cannot write it: {exc.strerror or exc}") from exc


def folder_watchlists(settings: Settings) -> WatchlistSet:
    """The watchlists of EARFUL_WATCHLISTS_DIR (invalid files skipped: the report needs only names and targets)."""
    found, _ = load_partial(settings.watchlists_dir) if settings.watchlists_dir.exists() else ([], [])
    return WatchlistSet(w for w, _ in found)


@dataclass(frozen=True)
class Made:
    report: Report
    data: bytes
    fmt: str


async def make_report(pool: asyncpg.Pool, watchlists: WatchlistSet, watchlist_id: str, period: Period, tz: ZoneInfo,
                      base_url: str, fmt: str, fonts: Sequence[Path] = (), now: datetime | None = None,
                      say: Callable[[str], None] = lambda m: None) -> Made:
    """Gather and render one report (ReportError when the period has no mentions of the watchlist)."""
    report = await gather(pool, watchlists, watchlist_id, period, tz, base_url, now)
    if report.mentions == 0:
        raise ReportError(f"{watchlist_id} has no mentions in {report.title if period.kind != 'custom' else report.period_label}"
                          " (choose another period with --from/--to or --period)")
    say(f"report: {report.watchlist_name}, {report.title}: {report.mentions:,} mentions, {len(report.charts)} charts,"
        f" {report.alerts_total:,} alerts; rendering {fmt}")
    data = await asyncio.to_thread(render, report, fmt, fonts)
    return Made(report, data, fmt)


async def resolve_watchlist(pool: asyncpg.Pool, watchlists: WatchlistSet, watchlist_id: str) -> None:
    """ReportError for a watchlist neither configured nor in the data, naming some that are."""
    if watchlist_id in watchlists.watchlists or await has_data(pool, watchlist_id):
        return
    known = sorted(set(watchlists.watchlists) | {r["watchlist_id"] for r in await pool.fetch(
        "SELECT DISTINCT watchlist_id FROM mention_rollups_day WHERE watchlist_id <> '(none)' LIMIT 50")})
    hint = f"; known: {', '.join(known[:12])}{', …' if len(known) > 12 else ''}" if known else "; no watchlist has mentions yet"
    raise ReportError(f"unknown watchlist {watchlist_id!r} (not in EARFUL_WATCHLISTS_DIR and no stored mentions){hint}")


async def open_report_pool(url: str) -> asyncpg.Pool:
    """A small read-only pool for a report (StorageError when PostgreSQL cannot be reached)."""
    try:
        return await asyncpg.create_pool(url, min_size=1, max_size=2, timeout=CONNECT_TIMEOUT_S, command_timeout=QUERY_TIMEOUT_S,
                                         server_settings={"jit": "off", "default_transaction_read_only": "on"})
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL (EARFUL_DATABASE_URL): {exc}") from exc


async def _run(args: argparse.Namespace, settings: Settings, say: Callable[[str], None], now: datetime) -> int:
    try:
        tz = zone(args.tz)
    except ValueError as exc:
        raise ReportUsageError(f"--tz: {exc}") from exc
    fmt = output_format(args.fmt, args.out)
    choose_period(args.start, args.end, args.period, now, None)  # option errors before connecting
    check_writable(args.out)
    say("report: connecting to PostgreSQL")
    pool = await open_report_pool(settings.database_url.get_secret_value())
    try:
        watchlists = folder_watchlists(settings)
        try:
            await resolve_watchlist(pool, watchlists, args.watchlist)
            newest = await newest_day_before(pool, args.watchlist, week_start(now))
        except asyncpg.UndefinedTableError as exc:
            raise StorageError("the database has no Earful tables; run `earful migrate` (or start the storage service) first") from exc
        period = choose_period(args.start, args.end, args.period, now, newest)
        if period is None:
            raise ReportError(f"{args.watchlist} has no mentions before the current week, so no complete week has data;"
                              " give --from and --to")
        made = await make_report(pool, watchlists, args.watchlist, period, tz, dashboard_base(settings), fmt,
                                 tuple(Path(f) for f in settings.report_fonts), now, say)
    finally:
        await pool.close()
    write_atomically(args.out, made.data)
    where = "standard output" if args.out == "-" else args.out
    say(f"report: wrote {where} ({fmt}, {len(made.data) / 1024:.0f} KiB)")
    return 0


def run(args: argparse.Namespace, settings: Settings, now: datetime | None = None) -> int:
    """`earful report` (earful.cli's handler): 0 when written, 2 for a bad option; other
    failures raise EarfulError, which the CLI prints in one line (exit code 1)."""

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        return asyncio.run(_run(args, settings, say, now or datetime.now(UTC)))
    except ReportUsageError as exc:
        print(f"earful report: {exc}", file=sys.stderr)
        return 2
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StorageError(f"PostgreSQL refused a query of the report: {exc}") from exc
