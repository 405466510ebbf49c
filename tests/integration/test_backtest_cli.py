"""`earful backtest`: the service's detector over a NAB-format series, and over a watchlist's
mentions stored in PostgreSQL, as operators run the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest

from earful.alerting.detection.backtest import infer_bucket_s, parse_duration_s, parse_time, read_series
from earful.core.errors import ValidationError
from earful.core.migrate import migrate
from earful.storage.writer import mention_row, write_batch
from tests.support import enriched_record, raw_record

pytestmark = pytest.mark.integration
SERVICES = Path(__file__).resolve().parents[2] / "services"


def earful(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EARFUL_")}
    base["PYTHONPATH"] = str(SERVICES)
    return subprocess.run([sys.executable, "-m", "earful", *args], env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


def series(path: Path, spike_at: int | None = 400, rows: int = 600, base: int = 20) -> Path:
    lines = ["timestamp,value"]
    for i in range(rows):
        minute = 5 * i
        value = base + (i % 3)
        if spike_at is not None and spike_at <= i < spike_at + 3:
            value = base * 12
        lines.append(f"2015-03-{1 + minute // 1440:02d} {minute % 1440 // 60:02d}:{minute % 60:02d}:53,{value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_spike_in_a_series_is_one_alert_line(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    done = earful("backtest", "--csv", str(series(tmp_path / "s.csv")), "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1
    alert = lines[0]
    assert alert["timestamp"] == "2015-03-02 09:20:53"  # row 400, written exactly as in the CSV
    assert alert["rule"] == "volume_spike" and alert["score"] > 6 and alert["observed"] == 240
    assert "600 rows, 1 alerts" in done.stderr


def test_a_series_that_stops_is_one_volume_drop(tmp_path: Path) -> None:
    path = series(tmp_path / "d.csv", spike_at=None, base=40)  # 40 in 5 minutes: above min_expected (30)
    rows = path.read_text().splitlines()
    rows[1 + 400:1 + 420] = [f"{row.split(',')[0]},0" for row in rows[1 + 400:1 + 420]]  # 100 minutes of silence
    path.write_text("\n".join(rows) + "\n")
    done = earful("backtest", "--csv", str(path), "--rule", "drop")
    assert done.returncode == 0, done.stderr
    (alert,) = [json.loads(line) for line in done.stdout.splitlines()]
    # Fired as the row after the first silent one arrives: only then is that 5-minute bucket closed.
    assert alert["rule"] == "volume_drop" and alert["timestamp"] == rows[1 + 401].split(",")[0] and alert["observed"] == 0


def test_a_quiet_series_has_no_alerts_and_stdout_is_the_default(tmp_path: Path) -> None:
    done = earful("backtest", "--csv", str(series(tmp_path / "q.csv", spike_at=None)), "--rule", "volume", "--bucket", "5m")
    assert done.returncode == 0 and done.stdout == ""


def test_settings_apply_as_in_the_service(tmp_path: Path) -> None:
    strict = earful("backtest", "--csv", str(series(tmp_path / "s.csv")), env={"EARFUL_ALERT_MIN_RATIO": "20"})
    assert strict.returncode == 0 and strict.stdout == ""


@pytest.mark.parametrize("content,fragment", [
    ("time,count\n2015-03-01 00:00:00,1\n", "expected a header with timestamp,value"),
    ("timestamp,value\n2015-03-01 00:00:00,many\n", "s.csv:2: value 'many' is not a number"),
    ("timestamp,value\n2015-03-01 00:00:00,-4\n", "must be a count"),
    ("timestamp,value\nyesterday,1\n", "s.csv:2: bad timestamp 'yesterday'"),
    ("timestamp,value\n2015-03-01 00:05:00,1\n2015-03-01 00:00:00,1\n", "s.csv:3: timestamps must not go backwards"),
    ("timestamp,value\n", "no rows"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(content)
    done = earful("backtest", "--csv", str(path))
    assert done.returncode == 1 and fragment in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,fragment", [
    ([], "give either --csv SERIES.csv or --watchlist"),
    (["--watchlist", "acme-air"], "--watchlist needs --from and --to"),
    (["--csv", "/nonexistent.csv"], "no such file"),
    (["--csv", "x.csv", "--watchlist", "acme-air"], "give either"),
    (["--csv", "{csv}", "--rule", "negative"], "supports volume_spike and volume_drop, not negative_surge"),
    (["--csv", "{csv}", "--rule", "astrology"], "unknown rule 'astrology'"),
    (["--csv", "{csv}", "--bucket", "5x"], "bad duration '5x'"),
])
def test_bad_arguments(tmp_path: Path, args: list[str], fragment: str) -> None:
    csv = str(series(tmp_path / "s.csv", rows=10))
    done = earful("backtest", *[a.replace("{csv}", csv) for a in args])
    assert done.returncode == 1 and fragment in done.stderr and "Traceback" not in done.stderr


def test_helpers() -> None:
    assert [parse_duration_s(x) for x in ("5m", "10s", "1h", "300", "2d", "10 min")] == [300, 10, 3600, 300, 172800, 600]
    for bad in ("", "0s", "1.5s", "500ms", "m5"):
        with pytest.raises(ValidationError):
            parse_duration_s(bad)
    assert parse_time("2015-03-01 00:05:53", "x").tzinfo is not None
    assert parse_time("2026-11-02T07:30:00Z", "x").isoformat() == "2026-11-02T07:30:00+00:00"


def test_bucket_is_inferred_from_the_rows(tmp_path: Path) -> None:
    _, times, _ = read_series(series(tmp_path / "s.csv", rows=20))
    assert infer_bucket_s(times) == 300


# --- stored history ------------------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
async def history(pg_url: str) -> str:
    """Two hours of acme-air mentions (one a minute) with a burst of 40 in ten seconds at 07:30."""
    rows = []
    for i in range(120):
        raw = raw_record(f"h{i}", "Acme Air as usual", T0 + timedelta(minutes=i, seconds=7))
        rows.append(mention_row(enriched_record(raw, ["acme-air"], "neutral")))
    burst = T0 + timedelta(minutes=90, seconds=1)
    for i in range(40):
        raw = raw_record(f"b{i}", "Acme Air lost my bag", burst + timedelta(milliseconds=200 * i))
        rows.append(mention_row(enriched_record(raw, ["acme-air"], "negative")))
    conn = await asyncpg.connect(pg_url)
    try:
        await migrate(conn)
        await write_batch(conn, rows, [])
    finally:
        await conn.close()
    return pg_url


def test_a_watchlists_history_through_its_rules(history: str, tmp_path: Path) -> None:
    out = tmp_path / "decisions.jsonl"
    folder = tmp_path / "watchlists"  # acme-air as the sample has it, but without rules of its own
    folder.mkdir()
    (folder / "acme-air.yaml").write_text('id: acme-air\nname: Acme Air\nquery: \'"Acme Air" OR #AcmeAir OR @AcmeAir\'\n')
    done = earful("backtest", "--watchlist", "acme-air", "--from", "2026-11-02T07:00:00Z", "--to", "2026-11-02T08:00:00Z",
                  "--out", str(out), env={"EARFUL_DATABASE_URL": history, "EARFUL_WATCHLISTS_DIR": str(folder)})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # the default rules: the burst is a volume spike and, all negative, a negative surge; both resolve
    assert [(d["rule"], d["status"]) for d in lines] == [
        ("volume_spike", "firing"), ("negative_surge", "firing"), ("volume_spike", "resolved"), ("negative_surge", "resolved")]
    assert lines[0]["starts_at"] == "2026-11-02T07:30:00.000Z" and lines[0]["labels"]["watchlist"] == "acme-air"
    assert "would have fired at 2026-11-02T07:30:00.000Z" in done.stderr
    assert "replaying 160 stored mentions of acme-air" in done.stderr  # an hour of warm-up (60) + the period (100)


def test_a_candidate_rule_that_would_not_have_fired(history: str) -> None:
    done = earful("backtest", "--watchlist", "acme-air", "--from", "2026-11-02T07:00:00Z", "--to", "2026-11-02T08:00:00Z",
                  "--rule", "volume_spike", "--threshold", "min_count=50", env={"EARFUL_DATABASE_URL": history})
    assert done.returncode == 0 and done.stdout == "", done.stderr
    bad = earful("backtest", "--watchlist", "acme-air", "--from", "2026-11-02T07:00:00Z", "--to", "2026-11-02T08:00:00Z",
                 "--rule", "volume_spike", "--threshold", "min_ratioo=5", env={"EARFUL_DATABASE_URL": history})
    assert bad.returncode == 1 and "use name=value with a name of volume_spike" in bad.stderr


def test_history_errors_are_one_line(history: str) -> None:
    unknown = earful("backtest", "--watchlist", "nope", "--from", "2026-11-02", "--to", "2026-11-03",
                     env={"EARFUL_DATABASE_URL": history})
    assert unknown.returncode == 1 and "unknown watchlist 'nope'" in unknown.stderr
    backwards = earful("backtest", "--watchlist", "acme-air", "--from", "2026-11-03", "--to", "2026-11-02",
                       env={"EARFUL_DATABASE_URL": history})
    assert backwards.returncode == 1 and "--to must be after --from" in backwards.stderr
    nodb = earful("backtest", "--watchlist", "acme-air", "--from", "2026-11-02", "--to", "2026-11-03",
                  env={"EARFUL_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    assert nodb.returncode == 1 and "cannot connect to PostgreSQL" in nodb.stderr and "Traceback" not in nodb.stderr
