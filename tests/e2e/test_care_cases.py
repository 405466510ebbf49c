"""End to end, the four services as processes on the real broker and PostgreSQL: a customer's
question arrives → storage opens a case with a priority → alerting warns at 75 % of the SLA, through
the notification lifecycle to a webhook → the brand's reply answers the case and the warning
resolves. And a question asked on a Friday afternoon is not due until Monday: business hours move
its deadline over the weekend, and the alerts start then."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.processes import Pipeline
from tests.dates import recent_like
from tests.support import eventually, webhook_receiver

pytestmark = pytest.mark.e2e
SAMPLE = Path(__file__).resolve().parents[2] / "services" / "earful" / "sample" / "watchlists"
SLA_S = 12  # the warning is due 9 s after the question was posted
CARE = f"""\
id: care-e2e
name: Care E2E
kind: brand
handles: [CareE2EHelp]
query: '"Care E2E" OR @CareE2EHelp'
response_sla_s: {SLA_S}
care: {{warn_at: 0.75}}
"""
HOURS = """\
id: hours-e2e
name: Hours E2E
kind: brand
handles: [HoursE2EHelp]
query: '"Hours E2E" OR @HoursE2EHelp'
response_sla_s: 7200
care:
  business_hours: {timezone: UTC, days: {mon-fri: "09:00-17:30"}}
"""
# A Friday 16:30 at least four days ago: its Monday deadline (10:00) has passed.
FRIDAY = recent_like(datetime(2026, 11, 6, 16, 30, tzinfo=timezone.utc), min_age=timedelta(days=4))


@pytest.fixture(scope="module")
async def stack(base_env, pg_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed") / "watchlists"
    shutil.copytree(SAMPLE, folder)
    (folder / "care-e2e.yaml").write_text(CARE)
    (folder / "hours-e2e.yaml").write_text(HOURS)
    async with webhook_receiver() as receiver:
        env = {**base_env, "EARFUL_DATABASE_URL": pg_url, "EARFUL_WEBHOOK_URLS": receiver.url,
               "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "EARFUL_WATCHLISTS_DIR": str(folder),
               "EARFUL_CARE_AGENTS": "care-e2e=ann;hours-e2e=bob", "EARFUL_ALERT_GROUP_WAIT_S": "0.2",
               "EARFUL_ALERT_GROUP_INTERVAL_S": "1",
               # The Friday question's thresholds passed days ago: announce them anyway (the default,
               # an hour, keeps replayed history from paging anyone: tests/unit/test_case_sla.py).
               "EARFUL_ALERT_CASE_SLA_MAX_LATE_S": str(30 * 24 * 3600)}
        pipeline = Pipeline(env, tmp_path_factory.mktemp("logs"), prefer_default_ports=False)
        await asyncio.to_thread(pipeline.start, 120)
        yield pipeline, receiver
        codes = await asyncio.to_thread(pipeline.stop)
    assert all(code == 0 for code in codes.values()), codes


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def same_instant(text: str | None, at: datetime) -> bool:
    return text is not None and datetime.fromisoformat(text.replace("Z", "+00:00")) == at


def alerts_of(receiver: WebhookReceiver, case_id: str, status: str, rule: str) -> list[tuple[dict[str, Any], float]]:
    """(alert, received at) of each notification carrying `case_id`'s `rule` alert with `status`."""
    return [(a, r.received_at) for r in receiver.alerts for a in r.alerts
            if a["labels"].get("case") == case_id and a["status"] == status and a["labels"]["rule"] == rule]


async def get_case(http: httpx.AsyncClient, storage: str, case_id: str) -> dict[str, Any] | None:
    resp = await http.get(f"{storage}/v1/cases/{case_id}")
    return resp.json() if resp.status_code == 200 else None


def logs(pipeline: Pipeline) -> list[str]:
    return [s.log_tail(30) for s in pipeline.services.values()]


async def test_a_question_opens_a_case_warns_at_75_percent_and_a_brand_reply_closes_it(stack) -> None:
    pipeline, receiver = stack
    storage, ingest = pipeline["storage"].url, pipeline["ingest"].url
    sid = f"care-q-{uuid.uuid4().hex[:8]}"
    case_id = f"care-e2e:twitter:{sid}"
    asked = datetime.now(timezone.utc).replace(microsecond=0)
    question = {"source": "twitter", "source_id": sid, "lang": "en", "created_at": iso(asked),
                "text": "@CareE2EHelp my flight was cancelled and I was charged twice. Where is my refund?",
                "author": {"handle": "jane_flies", "followers": 12400}}
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{ingest}/v1/mentions", json={"mentions": [question]})
        assert resp.status_code == 202, resp.text

        async def listed() -> dict[str, Any] | None:
            resp = await http.get(f"{storage}/v1/cases", params={"watchlist": "care-e2e"})
            return next((c for c in resp.json()["cases"] if c["case_id"] == case_id), None) if resp.is_success else None

        assert await eventually(listed, timeout_s=60), logs(pipeline)
        case = await listed()
        assert case is not None
        warn_at, deadline = asked + timedelta(seconds=SLA_S * 0.75), asked + timedelta(seconds=SLA_S)
        assert (case["state"], case["owner"], case["kind"]) == ("assigned", "ann", "question")
        assert case["priority"] > 0 and case["priority_reasons"], case
        assert same_instant(case["warn_at"], warn_at) and same_instant(case["deadline_at"], deadline), case

        assert await eventually(lambda: bool(alerts_of(receiver, case_id, "firing", "case_sla_warning")), timeout_s=30), \
            logs(pipeline)
        (warning, received_at), = alerts_of(receiver, case_id, "firing", "case_sla_warning")
        assert received_at >= warn_at.timestamp()  # not before 75 % of the SLA
        assert warning["earful"]["starts_at"] == iso(warn_at)
        assert warning["labels"]["owner"] == "ann" and warning["labels"]["watchlist"] == "care-e2e"
        summary = warning["annotations"]["summary"]
        assert summary.startswith("Care E2E: ") and "@jane_flies waiting 9 s of its 12 s SLA (75 %), owner ann" in summary, \
            summary

        replied = datetime.now(timezone.utc).replace(microsecond=0)
        reply = {"source": "twitter", "source_id": f"care-r-{sid}", "lang": "en", "created_at": iso(replied),
                 "text": "@jane_flies sorry about this, the refund is on its way", "in_reply_to": sid,
                 "author": {"handle": "CareE2EHelp", "followers": 900}}
        resp = await http.post(f"{ingest}/v1/mentions", json={"mentions": [reply]})
        assert resp.status_code == 202, resp.text

        async def answered() -> bool:
            found = await get_case(http, storage, case_id)
            return found is not None and found["state"] == "answered"

        assert await eventually(answered, timeout_s=60), logs(pipeline)
        closed = await get_case(http, storage, case_id)
        assert closed is not None and closed["answered_by_source_id"] == f"care-r-{sid}"
        assert same_instant(closed["answered_at"], replied)
        assert [e["event"] for e in closed["events"]] == ["opened", "answered"]

        assert await eventually(lambda: bool(alerts_of(receiver, case_id, "resolved", "case_sla_warning")),
                                timeout_s=30), logs(pipeline)
        (resolved, _), = alerts_of(receiver, case_id, "resolved", "case_sla_warning")
        assert resolved["earful"]["ends_at"] == iso(replied)
        assert "answered by a brand reply" in resolved["earful"]["summary"]
        # Answered after its deadline only if the pipeline was slow: then the breach fired and resolved too.
        breached = alerts_of(receiver, case_id, "firing", "case_sla_breach")
        assert len(breached) == (1 if replied >= deadline else 0), breached

        async def stored() -> bool:  # storage keeps the case alert's history like any other alert's
            resp = await http.get(f"{storage}/v1/alerts", params={"watchlist": "care-e2e", "rule": "case_sla_warning"})
            kept = {r["status"] for r in resp.json()["alerts"] if r["alert_id"] == warning["earful"]["alert_id"]}
            return kept == {"firing", "resolved"}

        assert await eventually(stored, timeout_s=30), logs(pipeline)


async def test_business_hours_move_a_friday_question_to_monday(stack) -> None:
    pipeline, receiver = stack
    storage, ingest = pipeline["storage"].url, pipeline["ingest"].url
    sid = f"hours-q-{uuid.uuid4().hex[:8]}"
    case_id = f"hours-e2e:twitter:{sid}"
    question = {"source": "twitter", "source_id": sid, "lang": "en", "created_at": iso(FRIDAY),
                "text": "@HoursE2EHelp my parcel never arrived. Can you check where it is?",
                "author": {"handle": "sam_waits", "followers": 300}}
    monday = FRIDAY + timedelta(days=3)
    warn_at, deadline = monday.replace(hour=9, minute=30), monday.replace(hour=10, minute=0)
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{ingest}/v1/mentions", json={"mentions": [question]})
        assert resp.status_code == 202, resp.text
        assert await eventually(lambda: get_case(http, storage, case_id), timeout_s=60), logs(pipeline)
        case = await get_case(http, storage, case_id)
    assert case is not None and case["owner"] == "bob"
    # One hour on Friday until 17:30, the second from Monday 09:00; the warning at 90 of its 120 minutes.
    assert same_instant(case["deadline_at"], deadline) and same_instant(case["warn_at"], warn_at), case

    def both_fired() -> bool:
        return all(alerts_of(receiver, case_id, "firing", rule) for rule in ("case_sla_warning", "case_sla_breach"))

    assert await eventually(both_fired, timeout_s=30), logs(pipeline)
    (warning, _), = alerts_of(receiver, case_id, "firing", "case_sla_warning")[:1]
    (breach, _), = alerts_of(receiver, case_id, "firing", "case_sla_breach")[:1]
    assert warning["earful"]["starts_at"] == iso(warn_at) and breach["earful"]["starts_at"] == iso(deadline)
    assert "waiting 1 h 30 min of its 2 h SLA in business hours (75 %; asked 2 d 17 h ago)" in \
        warning["annotations"]["summary"], warning["annotations"]["summary"]
