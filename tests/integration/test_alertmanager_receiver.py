"""Alerting as a real process, its only receiver a real Prometheus Alertmanager (Debian's
prometheus-alertmanager, installed by `make install-system`): a spike fires, Alertmanager lists the
alert as active and keeps it active through re-sends (its endsAt moves on), and once Earful
resolves it Alertmanager gets the alert's own end: it leaves the active list and Alertmanager's own
webhook notification says resolved with that end time."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from earful.core.topics import ENRICHED
from earful.webhook_receiver import WebhookReceiver
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, enriched_record, eventually, produce, raw_record, wait_until, webhook_receiver

pytestmark = pytest.mark.integration
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
RESEND_S = 2


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[WebhookReceiver]:
    """Where Alertmanager sends its own notifications (its webhook_config)."""
    async with webhook_receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def alertmanager(sink: WebhookReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("alertmanager")
    (folder / "alertmanager.yml").write_text(f"""
route:
  receiver: sink
  group_by: [alertname, watchlist]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: {sink.url}
        send_resolved: true
""", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "alertmanager.log").open("w")
    proc = subprocess.Popen([ALERTMANAGER, f"--config.file={folder / 'alertmanager.yml'}",
                             f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None

    try:
        wait_until(ready, timeout_s=30, message=lambda: (folder / "alertmanager.log").read_text())
        assert proc.poll() is None, (folder / "alertmanager.log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def alerting(base_env: dict[str, str], pg_url: str, alertmanager: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder: Path = tmp_path_factory.mktemp("receivers")
    receivers = folder / "receivers.yaml"
    receivers.write_text(f"""
receivers:
  - {{name: am, kind: alertmanager, url: "{alertmanager}", resend_s: {RESEND_S}}}
route:
  receivers: [am]
""", encoding="utf-8")
    port = free_port()
    env = service_env(base_env, "alerting", port)
    env.update({"EARFUL_ALERT_RECEIVERS_FILE": str(receivers), "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                "EARFUL_DATABASE_URL": pg_url, "EARFUL_ALERT_GROUP_INTERVAL_S": "1"})
    svc = ServiceProcess("alerting", port, env, tmp_path_factory.mktemp("logs") / "alerting.log")
    svc.start()
    svc.wait_ready(90)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


async def _am_alerts(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{url}/api/v2/alerts")
        resp.raise_for_status()
        return [a for a in resp.json() if a["labels"].get("alertname") == "volume_spike"]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_alertmanager_sees_the_alert_fire_stay_active_and_resolve(
        alerting: ServiceProcess, alertmanager: str, sink: WebhookReceiver, settings) -> None:
    c = codecs(settings).for_topic(ENRICHED)
    start = datetime.now(timezone.utc) - timedelta(minutes=30)

    def mention(sid: str, at: datetime, text: str = "Acme Air as usual", sentiment: str = "neutral") -> tuple[bytes, bytes]:
        raw = raw_record(sid, text, at)
        return raw["mention_id"].encode(), c.encode(enriched_record(raw, ["acme-air"], sentiment))

    items = [mention(f"am-base{i}", start + timedelta(seconds=20 * i)) for i in range(40)]
    spike_at = start + timedelta(seconds=20 * 40 + 5)
    items += [mention(f"am-spike{i}", spike_at + timedelta(milliseconds=100 * i), "Acme Air leaked my data", "negative")
              for i in range(25)]
    await produce(settings, ENRICHED, items)

    seen: list[dict[str, Any]] = []

    async def active() -> bool:
        seen[:] = [a for a in await _am_alerts(alertmanager) if a["status"]["state"] == "active"]
        return bool(seen)

    assert await eventually(active, timeout_s=90), alerting.log_tail()
    (first,) = seen
    assert first["labels"]["watchlist"] == "acme-air" and first["labels"]["rule"] == "volume_spike"
    assert first["annotations"]["summary"].startswith("Acme Air")
    assert all(name.replace("_", "a").isalnum() for name in [*first["labels"], *first["annotations"]])
    ends = _time(first["endsAt"])
    assert ends > datetime.now(timezone.utc)  # firing: valid for a few resend intervals, not resolved

    async def resent() -> bool:  # Earful re-sends the firing alert, so its validity moves on
        alerts = await _am_alerts(alertmanager)
        return bool(alerts) and _time(alerts[0]["endsAt"]) > ends

    assert await eventually(resent, timeout_s=4 * RESEND_S + 10), alerting.log_tail()
    assert any(a["status"] == "firing" for r in sink.alerts for a in r.alerts)  # Alertmanager notified it

    # Ten calm minutes after the spike: Earful resolves the alert and tells Alertmanager its end.
    calm_from = spike_at + timedelta(seconds=30)
    await produce(settings, ENRICHED, [mention(f"am-after{i}", calm_from + timedelta(seconds=20 * i)) for i in range(30)])

    async def gone() -> bool:
        return not await _am_alerts(alertmanager)

    assert await eventually(gone, timeout_s=90), alerting.log_tail()
    resolved = await _earful_resolved(alerting.url)
    assert resolved.get("ends_at"), resolved

    def notified_resolved() -> list[dict[str, Any]]:
        return [a for r in sink.alerts for a in r.alerts if a["status"] == "resolved"]

    assert await eventually(lambda: bool(notified_resolved()), timeout_s=30), alerting.log_tail()
    told_end = _time(notified_resolved()[0]["endsAt"])
    # The alert's own end (event time, minutes ago), not the end of a lapsed re-send.
    assert abs((told_end - _time(resolved["ends_at"])).total_seconds()) < 0.002, (told_end, resolved["ends_at"])
    assert told_end < ends


async def _earful_resolved(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{url}/v1/alerts", params={"status": "resolved"})
        resp.raise_for_status()
        body = resp.json()
    alerts = body["alerts"] if isinstance(body, dict) else body
    return next((a for a in alerts if a["labels"].get("rule") == "volume_spike"), {})
