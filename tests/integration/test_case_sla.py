"""Case SLA alerts through the real alerting service (its own process), a real broker and PostgreSQL:
case events produced on earful.cases.v1 → a warning notified at warn_at, a breach at the deadline,
both resolved by the answer; a case answered in time never alerts; kill -9 and a restart rebuild
the cases from the topic and notify nobody twice, while a warning due during the outage comes late
rather than never."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from earful.core.settings import Settings
from earful.core.topics import CASES
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, eventually, example, produce, webhook_receiver

pytestmark = pytest.mark.integration
WATCHLIST = """\
id: care-test
name: Care Test
kind: brand
handles: [CareTestHelp]
query: '"Care Test"'
response_sla_s: 8
care: {warn_at: 0.75}
labels: {team: care}
"""


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def alerting_env(base_env: dict[str, str], pg_url: str, receiver: WebhookReceiver,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("watchlists")
    (folder / "care-test.yaml").write_text(WATCHLIST)
    assert receiver.url
    return {**base_env, "EARFUL_WEBHOOK_URLS": receiver.url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "EARFUL_DATABASE_URL": pg_url, "EARFUL_WATCHLISTS_DIR": str(folder), "EARFUL_ALERT_GROUP_INTERVAL_S": "1",
            "EARFUL_ALERT_GROUP_WAIT_S": "0.2", "EARFUL_KAFKA_SESSION_TIMEOUT_S": "2",
            "EARFUL_KAFKA_HEARTBEAT_INTERVAL_S": "0.5"}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def alerting(alerting_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    port = free_port()
    svc = ServiceProcess("alerting", port, service_env(alerting_env, "alerting", port), logs / "alerting-1.log")
    svc.start()
    try:
        svc.wait_ready(90)
        yield svc
    finally:
        svc.kill9()


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def case_event(case_id: str, version: int, *, state: str, event: str, owner: str | None, opened: datetime,
               occurred: datetime, answered: datetime | None = None, sla_s: float = 8.0,
               warn_s: float | None = None) -> dict[str, Any]:
    """A case of watchlist care-test (the schema's first example otherwise), warning at 75 % of `sla_s`
    unless `warn_s` says otherwise."""
    source_id = case_id.rsplit(":", 1)[-1]
    return {**example("case_event/v1/01_question_opened_and_assigned"),
            "event_id": f"{case_id}:{version}", "case_id": case_id, "watchlist_id": "care-test", "event": event,
            "state": state, "owner": owner, "priority": 82, "priority_reasons": ["reach: 120000 followers +40"],
            "source_id": source_id, "mention_id": f"m-{source_id}",
            "author_handle": f"customer_{source_id}", "opened_at": opened, "occurred_at": occurred,
            "deadline_at": opened + timedelta(seconds=sla_s),
            "warn_at": opened + timedelta(seconds=sla_s * 0.75 if warn_s is None else warn_s),
            "actor": "stream", "answered_at": answered}


async def send_cases(settings: Settings, *events: dict[str, Any]) -> None:
    codec = codecs(settings).for_topic(CASES)
    await produce(settings, CASES, [(e["case_id"].encode(), codec.encode(e)) for e in events])


def deliveries(receiver: WebhookReceiver, case_id: str, status: str, rule: str | None = None) -> list[tuple[dict[str, Any], float]]:
    """(alert, received at) of every notification that carried `case_id`'s alert with `status`."""
    return [(a, r.received_at) for r in receiver.alerts for a in r.alerts
            if a["labels"].get("case") == case_id and a["status"] == status and (rule is None or a["labels"]["rule"] == rule)]


async def test_warning_at_warn_at_breach_at_the_deadline_resolved_by_the_answer(
        settings: Settings, receiver: WebhookReceiver, alerting: ServiceProcess) -> None:
    now = datetime.now(timezone.utc)
    late, on_time = "care-test:twitter:late", "care-test:twitter:on-time"
    await send_cases(settings,
                     case_event(late, 1, state="assigned", event="opened", owner="ann", opened=now, occurred=now),
                     case_event(on_time, 1, state="open", event="opened", owner=None, opened=now, occurred=now))
    answered_early = now + timedelta(seconds=1)
    await send_cases(settings, case_event(on_time, 2, state="answered", event="answered", owner=None, opened=now,
                                          occurred=answered_early, answered=answered_early))

    assert await eventually(lambda: bool(deliveries(receiver, late, "firing", "case_sla_breach")), timeout_s=30), \
        alerting.log_tail(40)
    (warning, warned_at), = deliveries(receiver, late, "firing", "case_sla_warning")[:1]
    (breach, breached_at), = deliveries(receiver, late, "firing", "case_sla_breach")[:1]
    warn_at, deadline = now + timedelta(seconds=6), now + timedelta(seconds=8)
    # Notified once the threshold passed, within a few seconds (group wait 0.2 s, interval 1 s).
    assert warn_at.timestamp() <= warned_at < warn_at.timestamp() + 4, (warned_at, warn_at)
    assert deadline.timestamp() <= breached_at < deadline.timestamp() + 4, (breached_at, deadline)
    assert warning["earful"]["starts_at"] == warn_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert breach["earful"]["starts_at"] == deadline.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert warning["labels"] | {"alertname": "case_sla_warning"} == {
        "watchlist": "care-test", "rule": "case_sla_warning", "severity": "warning", "case": late, "owner": "ann",
        "team": "care", "alertname": "case_sla_warning"}
    assert breach["labels"]["severity"] == "critical"
    assert warning["annotations"]["summary"] == \
        "Care Test: Question from @customer_late waiting 6 s of its 8 s SLA (75 %), owner ann, priority 82"
    assert warning["annotations"]["case_id"] == late and warning["annotations"]["priority"] == "82"
    groups = {r.payload["groupKey"] for r in receiver.alerts if any(a["labels"].get("case") == late for a in r.alerts)}
    assert groups == {"watchlist=care-test,owner=ann"}  # grouped per watchlist and owner

    answered = datetime.now(timezone.utc)
    await send_cases(settings, case_event(late, 2, state="answered", event="answered", owner="ann", opened=now,
                                          occurred=answered, answered=answered))

    def both_resolved() -> bool:
        return {a["labels"]["rule"] for a, _ in deliveries(receiver, late, "resolved")} == {"case_sla_warning",
                                                                                           "case_sla_breach"}

    assert await eventually(both_resolved, timeout_s=20), alerting.log_tail(40)
    for alert, _ in deliveries(receiver, late, "resolved"):
        assert alert["earful"]["ends_at"] == answered.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert "answered by a brand reply" in alert["earful"]["summary"]
    assert deliveries(receiver, on_time, "firing") == []  # answered before its warning: never alerted


async def test_a_restart_rebuilds_the_cases_and_notifies_nobody_twice(
        settings: Settings, receiver: WebhookReceiver, alerting: ServiceProcess, alerting_env: dict[str, str],
        logs: Path) -> None:
    now = datetime.now(timezone.utc)
    before, gone, during = "care-test:twitter:before", "care-test:twitter:gone", "care-test:twitter:during"
    await send_cases(settings, *(case_event(c, 1, state="assigned", event="opened", owner=owner, opened=now, occurred=now,
                                            sla_s=600, warn_s=2) for c, owner in ((before, "bob"), (gone, "dora"))))
    assert await eventually(lambda: bool(deliveries(receiver, before, "firing") and deliveries(receiver, gone, "firing")),
                            timeout_s=30), alerting.log_tail(40)
    alerting.kill9()

    opened = datetime.now(timezone.utc)
    await send_cases(settings, case_event(gone, 2, state="answered", event="answered", owner="dora", opened=now,
                                          occurred=opened, answered=opened, sla_s=600, warn_s=2))
    await send_cases(settings, case_event(during, 1, state="assigned", event="opened", owner="carl", opened=opened,
                                          occurred=opened, sla_s=2))
    deadline = opened.timestamp() + 2
    assert await eventually(lambda: time.time() >= deadline, timeout_s=10)  # warning and breach due while nobody runs

    port = free_port()
    second = ServiceProcess("alerting", port, service_env(alerting_env, "alerting", port), logs / "alerting-2.log")
    second.start()
    try:
        second.wait_ready(90)  # readiness includes the cases read back and reconciled
        assert await eventually(lambda: len({a["labels"]["rule"] for a, _ in deliveries(receiver, during, "firing")}) == 2,
                                timeout_s=20), second.log_tail(40)
        # Answered while nobody ran: the warning PostgreSQL still had firing is resolved after the rebuild.
        assert await eventually(lambda: bool(deliveries(receiver, gone, "resolved")), timeout_s=20), second.log_tail(40)
        answered = datetime.now(timezone.utc)
        await send_cases(settings, case_event(before, 2, state="answered", event="answered", owner="bob", opened=now,
                                              occurred=answered, answered=answered, sla_s=60))
        assert await eventually(lambda: bool(deliveries(receiver, before, "resolved")), timeout_s=20), second.log_tail(40)
        await eventually(lambda: False, timeout_s=3)  # anything still in flight arrives now
    finally:
        assert second.stop() == 0, second.log_tail(40)
    # One notification per change: the warning before the restart, its resolution after; nothing repeated.
    assert len(deliveries(receiver, before, "firing")) == 1, [r.payload for r in receiver.alerts]
    assert len(deliveries(receiver, before, "resolved")) == 1
    assert len(deliveries(receiver, gone, "firing")) == len(deliveries(receiver, gone, "resolved")) == 1
    (resolved, _), = deliveries(receiver, gone, "resolved")
    assert resolved["earful"]["ends_at"] == opened.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert sorted(a["labels"]["rule"] for a, _ in deliveries(receiver, during, "firing")) == \
        ["case_sla_breach", "case_sla_warning"]  # due during the outage: fired late, once each
    assert "cases loaded" in (logs / "alerting-2.log").read_text()
