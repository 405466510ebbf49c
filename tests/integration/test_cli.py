"""The `earful` command as operators run it: exit codes, messages, idempotency."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from earful_dev.stack.broker import free_port
from tests.support import wait_until

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
    minimal = {"id": "m-1", "text": "Acme Air lost my bag in London again. Terrible service, I want a refund"}
    ingest_shape = {"source": "twitter", "source_id": "1", "created_at": "2026-11-02T10:00:00Z",
                    "text": "Me encanta Acme Air, el vuelo fue perfecto y el personal muy amable"}
    german = {"id": 7, "text": "Die App von Globex ist schon wieder down, seit heute Morgen kein Login möglich!",
              "lang": "de", "source": "mastodon", "author": "anna", "created_at": "2026-11-02T10:00:00+01:00"}
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join([json.dumps(minimal), '{"id": "m-2"}', "not json", json.dumps(ingest_shape), "",
                              '{"id": "m-3", "text": "hi", "txt": "typo"}', json.dumps(german), "[1, 2]"]) + "\n",
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = earful("enrich", "--in", str(inp), "--out", str(out), env=env)
    assert result.returncode == 1, result.stderr  # some lines refused, and the exit status says so
    for line_no, why in ((2, "text"), (3, "not JSON"), (6, "txt"), (8, "JSON object")):
        assert f"{inp}:{line_no}:" in result.stderr and why in result.stderr, (line_no, result.stderr)
    assert "refused 4" in result.stderr and "Traceback" not in result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines][0::2] == ["m-1", "7"]
    first, second, third = lines
    assert set(first) >= {"id", "lang", "lang_confidence", "entities", "sentiment", "risks", "watchlists", "models"}
    assert first["lang"] == "en" and 0.3 <= first["lang_confidence"] <= 1
    assert first["sentiment"]["label"] == "negative" and first["watchlists"] == ["acme-air"]
    assert {"text": "London", "type": "location"}.items() <= next(e for e in first["entities"] if e["text"] == "London").items()
    assert {t["tag"]: t["evidence"] for t in first["risks"]}["complaint"] == "lost my bag"
    assert set(first["models"]) == {"language", "ner", "sentiment", "risk", "watchlists"}
    assert second["lang"] == "es" and second["sentiment"]["label"] == "positive" and len(second["id"]) == 36
    assert third["lang"] == "de" and "operational" in {t["tag"] for t in third["risks"]}
    assert first["enriched_at"].endswith("Z")

    clean = tmp_path / "clean.jsonl"
    clean.write_text(json.dumps(minimal) + "\n", encoding="utf-8")
    ok = earful("enrich", "--in", str(clean), "--out", str(tmp_path / "clean-out.jsonl"), env=env)
    assert ok.returncode == 0 and "refused 0" in ok.stderr
    missing = earful("enrich", "--in", str(tmp_path / "nope.jsonl"), "--out", str(out), env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_models_evaluate_refuses_bad_arguments(env: dict[str, str], tmp_path: Path) -> None:
    missing = earful("models", "evaluate", "--data", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 1 and "no such folder" in missing.stderr and "Traceback" not in missing.stderr
    unknown = earful("models", "evaluate", "--data", str(tmp_path), "--only", "vibes", env=env)
    assert unknown.returncode == 1 and "unknown vibes" in unknown.stderr
    empty = earful("models", "train-sentiment", "--data", str(tmp_path), "--out", str(tmp_path / "m"), env=env)
    assert empty.returncode == 1 and "no UMSAB data" in empty.stderr and "Traceback" not in empty.stderr


def test_webhook_receiver_prints_and_verifies(env: dict[str, str]) -> None:
    from earful.alerting.notification.signing import signed_headers

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "earful", "webhook-receiver", "--port", str(port), "--secret", "s3"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/alerts"
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, timeout_s=30,
                   message="the webhook receiver never answered /healthz")
        body = json.dumps({"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"watchlist": "acme-air"}, "annotations": {"summary": "acme-air: 30 mentions"}}]}).encode()
        ok = httpx.post(url, content=body, headers=signed_headers({"webhook-id": "msg1"}, "s3", body))
        forged = httpx.post(url, content=body, headers={**signed_headers({"webhook-id": "msg2"}, "s3", body),
                                                        "webhook-signature": "v1,AAAA"})
        stale = httpx.post(url, content=body, headers=signed_headers({"webhook-id": "msg3"}, "s3", body, time.time() - 600))
        assert ok.status_code == 200 and forged.status_code == 401 and stale.status_code == 401
    finally:
        proc.send_signal(15)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "ALERT FIRING: acme-air: 30 mentions" in out
