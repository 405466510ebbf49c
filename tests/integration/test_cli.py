"""The `earful` command as operators run it: exit codes, messages, idempotency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from earful.stack.broker import free_port

pytestmark = pytest.mark.integration
SERVICES = str(Path(__file__).resolve().parents[2] / "services")


def earful(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "earful", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "PYTHONPATH": SERVICES}


def test_topics_create_is_idempotent(env: dict[str, str]) -> None:
    first = earful("topics", "create", env=env)
    second = earful("topics", "create", env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert all(line.startswith("exists") for line in second.stdout.splitlines())
    assert "earful.mentions.enriched.v1" in second.stdout


def test_unreachable_broker_is_one_clear_line(env: dict[str, str]) -> None:
    result = earful("topics", "create", env={**env, "EARFUL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 1
    assert "cannot reach Kafka" in result.stderr and "Traceback" not in result.stderr


def test_bad_setting_exits_2_naming_the_variable(env: dict[str, str]) -> None:
    result = earful("settings", env={**env, "EARFUL_ALERT_BUCKET_S": "ten"})
    assert result.returncode == 2
    assert "EARFUL_ALERT_BUCKET_S" in result.stderr and "Traceback" not in result.stderr


def test_settings_masks_secrets(env: dict[str, str]) -> None:
    result = earful("settings", env={**env, "EARFUL_WEBHOOK_SECRET": "hunter2",
                                     "EARFUL_DATABASE_URL": "postgresql://u:pw123@db/earful"})
    assert result.returncode == 0
    assert "hunter2" not in result.stdout and "pw123" not in result.stdout


def test_migrate_twice(env: dict[str, str], pg_url: str) -> None:
    for _ in range(2):
        result = earful("migrate", env={**env, "EARFUL_DATABASE_URL": pg_url})
        assert result.returncode == 0, result.stderr
        assert "migrations applied" in result.stdout


def test_enrich_file(env: dict[str, str], tmp_path: Path) -> None:
    good = {"source": "twitter", "source_id": "1", "text": "Acme Air lost my bag in London again. Terrible service, I want a refund",
            "created_at": "2026-11-02T10:00:00Z"}
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(good) + "\n" + '{"source": "twitter"}\n' + "not json\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = earful("enrich", "--in", str(inp), "--out", str(out), env=env)
    assert result.returncode == 1  # two lines refused, said so
    assert f"{inp}:2" in result.stderr and f"{inp}:3" in result.stderr and "refused 2" in result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 1
    enriched = lines[0]
    assert enriched["mention"]["text"] == good["text"] and enriched["watchlist_ids"] == ["acme-air"]
    assert enriched["sentiment"]["label"] == "negative" and enriched["language"]["code"] == "en"
    assert enriched["enriched_at"].endswith("Z")
    missing = earful("enrich", "--in", str(tmp_path / "nope.jsonl"), "--out", str(out), env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_webhook_receiver_prints_and_verifies(env: dict[str, str]) -> None:
    from earful.alerting.receivers import sign

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "earful", "webhook-receiver", "--port", str(port), "--secret", "s3"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/alerts"
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = json.dumps({"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"watchlist": "acme-air"}, "annotations": {"summary": "acme-air: 30 mentions"}}]}).encode()
        ts = str(int(time.time()))
        ok = httpx.post(url, content=body, headers={"X-Earful-Timestamp": ts, "X-Earful-Signature": "v1=" + sign("s3", ts, body)})
        forged = httpx.post(url, content=body, headers={"X-Earful-Timestamp": ts, "X-Earful-Signature": "v1=00"})
        assert ok.status_code == 200 and forged.status_code == 401
    finally:
        proc.send_signal(15)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "ALERT FIRING: acme-air: 30 mentions" in out
