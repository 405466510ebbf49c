"""kill -9 of the alerting service in the middle of a spike: after the restart each group gets one
firing and one resolved notification — no storm, nothing lost (detector state from the
changelog, notification log in PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from earful.core.topics import ALERTING_DETECTOR_CHANGELOG, ENRICHED
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, consume_all, enriched_record, eventually, produce, raw_record, webhook_receiver

pytestmark = pytest.mark.integration
GROUPS = ("acme-air", "globex")


@pytest.fixture(scope="module")
async def receiver():
    async with webhook_receiver() as rec:
        yield rec


def notifications(receiver: WebhookReceiver, status: str, group: str) -> int:
    return sum(1 for r in receiver.alerts if r.payload.get("status") == status and r.payload.get("groupKey") == f"watchlist={group}")


async def test_kill9_during_a_spike_gives_one_firing_and_one_resolved_per_group(
        base_env: dict[str, str], pg_url: str, receiver: WebhookReceiver, settings, tmp_path) -> None:
    port = free_port()
    env = service_env(base_env, "alerting", port)
    env.update({"EARFUL_WEBHOOK_URLS": receiver.url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                "EARFUL_DATABASE_URL": pg_url, "EARFUL_ALERT_GROUP_INTERVAL_S": "2",
                "EARFUL_KAFKA_SESSION_TIMEOUT_S": "2", "EARFUL_KAFKA_HEARTBEAT_INTERVAL_S": "0.5"})
    first = ServiceProcess("alerting", port, env, tmp_path / "alerting-1.log")
    first.start()
    second: ServiceProcess | None = None
    try:
        first.wait_ready(90)
        c = codecs(settings).for_topic(ENRICHED)
        start = datetime.now(timezone.utc) - timedelta(minutes=30)

        def mention(sid: str, at: datetime, wids: list[str], sentiment: str = "neutral") -> tuple[bytes, bytes]:
            raw = raw_record(sid, "Acme Air and Globex", at)
            return raw["mention_id"].encode(), c.encode(enriched_record(raw, wids, sentiment))

        items = [mention(f"base{i}", start + timedelta(seconds=20 * i), list(GROUPS)) for i in range(40)]
        spike_at = start + timedelta(seconds=20 * 40 + 5)
        items += [mention(f"spike-a{i}", spike_at + timedelta(milliseconds=150 * i), list(GROUPS), "negative")
                  for i in range(30)]
        await produce(settings, ENRICHED, items)

        async def both_fired() -> bool:
            return all(notifications(receiver, "firing", g) for g in GROUPS)

        assert await eventually(both_fired, timeout_s=60), first.log_tail()
        first.kill9()  # mid-spike: its second half is still to come
        assert first.process is not None and first.process.returncode == -9

        second = ServiceProcess("alerting", port, env, tmp_path / "alerting-2.log")
        second.start()
        second.wait_ready(90)
        rest = [mention(f"spike-b{i}", spike_at + timedelta(seconds=10, milliseconds=150 * i), list(GROUPS), "negative")
                for i in range(30)]
        calm_from = spike_at + timedelta(seconds=30)
        rest += [mention(f"after{i}", calm_from + timedelta(seconds=20 * i), list(GROUPS)) for i in range(30)]  # 10 min
        await produce(settings, ENRICHED, rest)

        async def both_resolved() -> bool:
            return all(notifications(receiver, "resolved", g) for g in GROUPS)

        assert await eventually(both_resolved, timeout_s=90), second.log_tail(40)
        await eventually(lambda: _false(), timeout_s=4)  # anything still in flight arrives now
        for group in GROUPS:
            assert notifications(receiver, "firing", group) == 1, (group, [r.payload for r in receiver.alerts])
            assert notifications(receiver, "resolved", group) == 1, group
        assert receiver.duplicates <= len(GROUPS)  # at most one re-send per group, dropped by its idempotency key
        firing_ids = {a["earful"]["alert_id"] for a, _ in receiver.alerts_with("firing")}
        resolved_ids = {a["earful"]["alert_id"] for a, _ in receiver.alerts_with("resolved")}
        assert firing_ids == resolved_ids and len(firing_ids) == len(GROUPS)  # the same episodes, resolved
        # The detector's states were written to the changelog about once a second, not once per mention:
        # a restart replays far fewer records than were counted.
        observed = (len(items) + len(rest)) * len(GROUPS)
        # (read, not end offsets: Tansu's "latest" offset is the start of the last batch + 1)
        written = len(await consume_all(settings, ALERTING_DETECTOR_CHANGELOG, expect=observed, timeout_s=10))
        assert 0 < written < observed / 3, (written, observed)
    finally:
        if second is not None:
            assert second.stop() == 0, second.log_tail()
        first.kill9()


async def _false() -> bool:
    return False
