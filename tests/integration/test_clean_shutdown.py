"""A clean stop logs no error: the Faust services, stopped with SIGTERM after records went through them,
exit 0 and log neither an error nor a traceback (log-based monitoring would page at every deploy)."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timezone
from pathlib import Path

import pytest

from earful.core.settings import Settings
from earful.core.topics import ENRICHED, RAW
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, committed_to_end, enriched_record, eventually, produce, raw_record

pytestmark = pytest.mark.integration

# service -> (the topic it consumes, its consumer group)
CONSUMES = {"enrichment": (RAW, "earful-enrichment"), "alerting": (ENRICHED, "earful-alerting")}


def error_lines(log: str) -> list[str]:
    """The lines of a service log that an error-level alert on logs would fire on."""
    bad = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        level = str(record.get("level", "")).lower() if isinstance(record, dict) else ""
        if level in ("error", "critical", "fatal") or "Traceback" in line or (record is None and " ERROR " in line):
            bad.append(line[:2000])
    return bad


async def send_records(service: str, settings: Settings) -> None:
    """A few records on the topic `service` consumes, so its Faust sensors have seen traffic."""
    now = datetime.now(timezone.utc)
    raws = [raw_record(f"shutdown-{service}-{i}", "Acme Air lost my bag, terrible service", now) for i in range(20)]
    topic, _ = CONSUMES[service]
    codec = codecs(settings).for_topic(topic)
    if service == "enrichment":
        items = [(r["mention_id"].encode(), codec.encode(r)) for r in raws]
    else:
        items = [(r["mention_id"].encode(), codec.encode(enriched_record(r, ["acme-air"]))) for r in raws]
    await produce(settings, topic, items)


@pytest.mark.parametrize("service", sorted(CONSUMES))
async def test_sigterm_after_traffic_exits_0_without_errors(
    service: str, base_env: dict[str, str], pg_url: str, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = {**service_env(base_env, service, port), "EARFUL_DATABASE_URL": pg_url}
    svc = ServiceProcess(service, port, env, tmp_path / f"{service}.log")
    svc.start()
    try:
        svc.wait_ready(90)
        await send_records(service, settings)
        topic, group = CONSUMES[service]
        assert await eventually(lambda: committed_to_end(settings, group, topic), timeout_s=60), svc.log_tail()
        assert svc.process is not None
        svc.process.send_signal(signal.SIGTERM)
        code = svc.process.wait(60)
    finally:
        svc.stop()  # only acts if the process is still running
    log = svc.log_path.read_text(errors="replace")
    assert code == 0, svc.log_tail(40)
    assert error_lines(log) == [], "\n".join(error_lines(log)[:5])
