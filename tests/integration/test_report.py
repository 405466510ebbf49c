"""`earful report` over a seeded database, as an executive gets it: a multi-page PDF and an HTML
page with the same content (watchlist, period, figures, KPIs, charts, risks, alerts), every figure
linked to the dashboard view that shows the same numbers; clean errors; and the weekly delivery by
the storage service, by email to a real SMTP server and to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, time, timedelta, timezone
from email import message_from_bytes
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pypdf import PdfReader

from earful.core.settings import Settings
from earful.storage.api.responses import iso
from earful.storage.dashboard_views import Request, overview
from earful.storage.report import folder_watchlists
from earful.storage.report_data import gather, week_of
from earful.storage.report_schedule import ReportScheduler
from earful_dev.seed import seed
from earful_dev.stack.broker import free_port
from tests.support import service_process, wait_until

pytestmark = pytest.mark.integration
UTC = timezone.utc
SERVICES = Path(__file__).resolve().parents[2] / "services"
DASHBOARD = "https://earful.example.com/"
# Two weeks of data ending on a Sunday at least four weeks ago: the latest complete week with
# data is that Sunday's, and the week before it has data to compare with.
_TODAY = datetime.now(UTC).date() - timedelta(days=28)
SUNDAY = _TODAY - timedelta(days=(_TODAY.weekday() + 1) % 7)
END = datetime.combine(SUNDAY, time(23, 17), UTC)
WEEK = week_of(END)
WEEK_TITLE = f"Week {WEEK.lo.isocalendar()[1]}, {WEEK.lo.isocalendar()[0]}"


@pytest.fixture(scope="module")
async def data(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("report")
    wl_file = folder / "watchlists.yaml"
    await seed(pg_url, mentions=3000, days=14, watchlists=4, seed_value=5, end=END, watchlists_out=wl_file,
               progress=lambda m: None)
    conn = await asyncpg.connect(pg_url)
    try:
        top = await conn.fetchval("SELECT watchlist_id FROM mention_rollups_day WHERE watchlist_id <> '(none)'"
                                  " GROUP BY 1 ORDER BY sum(mentions) DESC LIMIT 1")
    finally:
        await conn.close()
    doc = yaml.safe_load(wl_file.read_text(encoding="utf-8"))
    doc["watchlists"][-1]["kind"] = "competitor"
    # One of the others becomes the top brand's campaign, launched in the middle of the reported week.
    campaign = next(w for w in doc["watchlists"][:-1] if w["id"] != top)
    campaign.update(kind="campaign", labels={"brand": top}, campaign={"launch_at": iso(WEEK.lo + timedelta(days=3, hours=9))})
    for w in doc["watchlists"]:
        if w["id"] == top:
            w["kpis"] = {"net_sentiment": 0.1, "share_of_voice": 0.3, "first_response_s": 1800, "answered_within_sla": 0.8}
            w["response_sla_s"] = 3600
            name = w["name"]
    wl_file.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return {"watchlists_file": wl_file, "watchlist": top, "name": name, "folder": folder, "campaign": campaign["name"]}


def report_env(pg_url: str, data: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARFUL_")}
    return {**env, "PYTHONPATH": str(SERVICES), "EARFUL_DATABASE_URL": pg_url,
            "EARFUL_WATCHLISTS_DIR": str(data["watchlists_file"]), "EARFUL_DASHBOARD_URL": DASHBOARD}


def earful(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "earful", *args], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def made(pg_url: str, data: dict[str, Any]) -> dict[str, Any]:
    """The default report of the top watchlist, as PDF and as HTML (the format from the suffix)."""
    out: dict[str, Any] = {}
    for fmt, name in (("pdf", "report.pdf"), ("html", "report.html")):
        path = data["folder"] / name
        result = earful("report", "--watchlist", data["watchlist"], "--out", str(path), env=report_env(pg_url, data))
        assert result.returncode == 0, result.stderr
        assert result.stdout == "" and "report: wrote" in result.stderr.splitlines()[-1]  # progress on stderr only
        out[fmt] = path.read_bytes()
    return out


def pdf_text(data: bytes) -> tuple[PdfReader, str]:
    pdf = PdfReader(io.BytesIO(data))
    return pdf, "\n".join(p.extract_text() for p in pdf.pages)


def flat(outline: list[Any]) -> list[Any]:
    """The entries of a PDF outline, nested sections included."""
    return [e for item in outline for e in (flat(item) if isinstance(item, list) else [item])]


def content_checks(text: str, data: dict[str, Any]) -> None:
    """What both forms must say: the watchlist, the period, the figures, the KPIs, the lists."""
    for expected in (data["name"], WEEK_TITLE, f"{WEEK.lo.day} {WEEK.lo:%b %Y}", "Headline figures", "Net sentiment",
                     "Share of voice", "Reach", "Questions answered", "Median first reply", "KPIs against targets",
                     "Median first response", "Answered within SLA", ">= +0.10", "Top risks", "Alerts of the period",
                     "Campaign lift", data["campaign"], "95 % interval", "Top entities"):
        assert expected in text.replace("≥", ">="), expected  # the PDF's built-in font has no ≥
    assert re.search(r"\b(met|at risk|missed)\b", text)  # a KPI's status against its target


def test_the_pdf_is_multi_page_with_charts_kpis_and_links(made: dict[str, Any], data: dict[str, Any]) -> None:
    assert made["pdf"].startswith(b"%PDF-") and made["pdf"].rstrip().endswith(b"%%EOF")
    pdf, text = pdf_text(made["pdf"])
    assert len(pdf.pages) >= 4
    content_checks(text, data)
    outline = [item.title for item in flat(pdf.outline)]
    assert len([t for t in outline if t.startswith("Chart ")]) >= 3, outline
    assert "negative" in text and "positive" in text  # the charts' legends are drawn as text
    uris = [a.get_object()["/A"]["/URI"] for p in pdf.pages for a in p.get("/Annots", [])
            if "/URI" in a.get_object().get("/A", {})]
    assert len(uris) > 10 and all(u.startswith(DASHBOARD + "?") for u in uris)
    views = {dict(parse_qsl(urlsplit(u).query))["to"] for u in uris}
    assert views == {iso(WEEK.hi)}  # every link names the report's period


def test_the_html_page_says_the_same(made: dict[str, Any], data: dict[str, Any]) -> None:
    html = made["html"].decode("utf-8")
    content_checks(html, data)
    assert len(re.findall(r'<figure data-chart="[a-z_]+"><h3>Chart \d: [^<]+</h3><svg ', html)) >= 3
    assert "<script" not in html and " src=" not in html and "<link" not in html  # self-contained
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert len(hrefs) > 10 and all(h.startswith(DASHBOARD + "?") for h in hrefs)
    # The same figures in both forms.
    _, text = pdf_text(made["pdf"])
    for figure in re.findall(r'data-figure="(mentions|net_sentiment|share_of_voice)"><div class="d">[^<]*</div><div class="v">'
                             r'<a href="[^"]*">([^<]+)</a>', html):
        assert figure[1].replace("−", "-") in text, figure


async def test_each_figure_is_the_one_its_dashboard_view_shows(pg_url: str, data: dict[str, Any]) -> None:
    """The view a figure links to (watchlist, length, to), asked of the dashboard, shows the same numbers."""
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    try:
        watchlists = folder_watchlists(Settings(watchlists_dir=data["watchlists_file"]))
        report = await gather(pool, watchlists, data["watchlist"], WEEK, ZoneInfo("UTC"), DASHBOARD)
        params = dict(parse_qsl(urlsplit(report.view).query))
        assert params == {"watchlist": data["watchlist"], "length": "7d", "to": iso(WEEK.hi)}
        view = await overview(pool, watchlists, Request(params["watchlist"], params["length"],
                                                        datetime.fromisoformat(params["to"].replace("Z", "+00:00")), ZoneInfo("UTC")))
    finally:
        await pool.close()
    assert view["period"]["from"] == iso(WEEK.lo) and view["period"]["to"] == iso(WEEK.hi)
    mine = {f.name: f for f in report.figures}
    theirs = {k["name"]: k for k in view["kpis"]}
    assert mine["mentions"].value == theirs["mentions"]["value"] > 0 and theirs["mentions"]["previous"] > 0
    for name in ("mentions", "net_sentiment", "share_of_voice", "alerts", "first_reply"):
        assert mine[name].value == theirs[name]["value"], name
        assert mine[name].previous == theirs[name]["previous"], name
    assert mine["share_of_voice"].display == theirs["share_of_voice"]["display"]
    assert [c.key for c in report.charts] == ["volume", "share_of_voice", "tags", "sources", "languages"]
    assert report.charts[0].svg.count("<rect class=\"bar\"") == view["charts"]["volume"].count("<rect class=\"bar\"")


@pytest.mark.parametrize(("args", "code", "says"), [
    (["--watchlist", "nobody-here"], 1, "unknown watchlist 'nobody-here'"),
    (["--from", "2020-01-06", "--to", "2020-01-13"], 1, "no mentions in"),
    (["--from", "last tuesday", "--to", "2020-01-13"], 2, "--from 'last tuesday' is not a time"),
    (["--from", "2020-01-06"], 2, "--from and --to go together"),
    (["--tz", "Mars/Olympus"], 2, "not an IANA time zone"),
    (["--out", "/nonexistent-folder/report.pdf"], 1, "does not exist"),
    (["--out", "/"], 1, "is a folder"),
])
def test_errors_are_one_clear_line(pg_url: str, data: dict[str, Any], args: list[str], code: int, says: str) -> None:
    full = ["report", "--watchlist", data["watchlist"], "--out", str(data["folder"] / "err.pdf"), *args]
    result = earful(*full, env=report_env(pg_url, data))
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("report: ")]  # the rest is progress
    assert len(errors) == 1 and errors[0].startswith("earful report: ") and says in errors[0], result.stderr
    assert not (data["folder"] / "err.pdf").exists()


def test_an_unreachable_database_is_one_line(data: dict[str, Any]) -> None:
    env = report_env(f"postgresql://postgres@127.0.0.1:{free_port()}/earful", data)
    result = earful("report", "--watchlist", "acme-air", "--out", str(data["folder"] / "x.pdf"), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("earful report: cannot connect to PostgreSQL")


# --- the weekly delivery -----------------------------------------------------------------------------------------


class Mailbox:
    """An aiosmtpd handler keeping what it receives; AUTH with one user."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"reports" and auth_data.password == b"s3cret"
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, authenticator=box, auth_require_tls=False)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    """An HTTP receiver that answers the first POST with a 503 (to be retried), then 200."""
    got: list[dict[str, Any]] = []
    calls = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(status=503, text="busy")
        form = await request.post()
        report = form["report"]
        assert isinstance(report, web.FileField)
        got.append({"metadata": form["metadata"], "filename": report.filename, "content_type": report.content_type,
                    "body": report.file.read(), "request_type": request.content_type})
        return web.Response(status=204)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/reports", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield got, f"http://127.0.0.1:{port}/reports"
    finally:
        await runner.cleanup()


def schedule_settings(pg_url: str, data: dict[str, Any], smtp_port: int, webhook: str | None) -> Settings:
    return Settings(database_url=pg_url, watchlists_dir=data["watchlists_file"], dashboard_url=DASHBOARD,
                    report_schedule="mon 08:00 Europe/London", report_watchlists=data["watchlist"],
                    report_smtp_host="127.0.0.1", report_smtp_port=smtp_port, report_smtp_starttls=False,
                    report_smtp_user="reports", report_smtp_password="s3cret", report_smtp_from="earful@example.com",
                    report_smtp_to="ceo@example.com,cmo@example.com", report_webhook_url=webhook)


async def test_the_weekly_report_is_mailed_and_posted(pg_url: str, data: dict[str, Any], smtp: tuple[Mailbox, int],
                                                       receiver: tuple[list[dict[str, Any]], str]) -> None:
    box, port = smtp
    posted, url = receiver
    settings = schedule_settings(pg_url, data, port, url)
    due = WEEK.hi + timedelta(hours=8)  # the Monday after the seeded week, 08:00 London (winter or summer: within the hour)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=2)
    try:
        scheduler = ReportScheduler(settings, pool, lambda: folder_watchlists(settings), clock=lambda: due,
                                    retry_base_s=0.05, retry_max_s=0.1, hold_after_s=0)
        result = await scheduler.send_run(due)
    finally:
        await pool.close()
    assert result.skipped is None and result.failed == []
    assert sorted(result.sent) == [(data["watchlist"], "email"), (data["watchlist"], "webhook")]
    # Email: over real SMTP, authenticated, to both recipients, the PDF attached.
    assert box.logins == ["reports"] and len(box.messages) == 1
    sender, rcpts, raw = box.messages[0]
    assert sender == "earful@example.com" and rcpts == ["ceo@example.com", "cmo@example.com"]
    msg = message_from_bytes(raw)
    assert data["name"] in msg["Subject"] and WEEK_TITLE in msg["Subject"]
    pdf = next(p for p in msg.walk() if p.get_filename())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_filename() == f"earful-{data['watchlist']}-{WEEK.lo:%Y-%m-%d}.pdf"
    reader, text = pdf_text(pdf.get_payload(decode=True))
    assert len(reader.pages) >= 4
    content_checks(text, data)
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "Mentions:" in body and DASHBOARD in body
    # Webhook: the 503 was retried; multipart with the metadata and the same report.
    assert len(posted) == 1
    hook = posted[0]
    assert hook["request_type"] == "multipart/form-data" and hook["content_type"] == "application/pdf"
    assert hook["filename"] == pdf.get_filename() and hook["body"].startswith(b"%PDF-")
    meta = json.loads(hook["metadata"])
    assert meta["watchlist"]["id"] == data["watchlist"] and meta["period"]["from"] == iso(WEEK.lo)
    assert meta["period"]["to"] == iso(WEEK.hi) and meta["mentions"] > 0 and meta["figures"][0]["name"] == "mentions"


async def test_only_one_replica_sends_a_run(pg_url: str, data: dict[str, Any], smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    settings = schedule_settings(pg_url, data, port, None)
    due = WEEK.hi + timedelta(hours=8)
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=4)
    try:
        replicas = [ReportScheduler(settings, pool, lambda: folder_watchlists(settings), clock=lambda: due, hold_after_s=3)
                    for _ in range(2)]
        results = await asyncio.gather(*(r.send_run(due) for r in replicas))
    finally:
        await pool.close()
    assert sorted(r.skipped is None for r in results) == [False, True]
    assert len(box.messages) == 1


def test_the_storage_service_runs_the_schedule(base_env: dict[str, str], pg_url: str, data: dict[str, Any],
                                               smtp: tuple[Mailbox, int], tmp_path: Path) -> None:
    """The hook: a storage process with a schedule starts, says when it will send, and stops cleanly."""
    _, port = smtp
    env = {"EARFUL_DATABASE_URL": pg_url, "EARFUL_WATCHLISTS_DIR": str(data["watchlists_file"]),
           "EARFUL_REPORT_SCHEDULE": "mon 08:00 Europe/London", "EARFUL_REPORT_SMTP_HOST": "127.0.0.1",
           "EARFUL_REPORT_SMTP_PORT": str(port), "EARFUL_REPORT_SMTP_STARTTLS": "false",
           "EARFUL_REPORT_SMTP_FROM": "earful@example.com", "EARFUL_REPORT_SMTP_TO": "ceo@example.com"}
    with service_process("storage", base_env, tmp_path, **env) as svc:
        wait_until(lambda: "weekly reports scheduled" in svc.log_path.read_text(), 30, message=svc.log_tail)
    assert "next_run" in svc.log_path.read_text()
