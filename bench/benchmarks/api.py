"""`api`: p95 latency of each query endpoint over 5 million seeded mentions."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import POSTGRES_DATA_DIR, Context, Result, median, say, service_on_fresh_broker

NAME = "api"
KEYS = ("api_p95_ms", "api_dataset")
DESCRIPTION = "p95 latency of each query API endpoint over 5 million seeded mentions (90 days, 50 watchlists)"

API_MENTIONS = 5_000_000
API_DAYS = 90
API_WATCHLISTS = 50
API_SEED = 1
API_REQUESTS = 60  # per endpoint and run
API_RUNS = 3


def _api_requests(rng: random.Random, watchlists: list[str], now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per endpoint, the requests of one run: random watchlists and periods, as a dashboard would ask."""
    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    def period(max_days: int) -> dict[str, str]:
        days = rng.choice([1, 7, 30, 90][: 1 + [1, 7, 30, 90].index(max_days)])
        to = now - timedelta(minutes=rng.randrange(0, 600))
        return {"from": iso(to - timedelta(days=days)), "to": iso(to)}

    words = ["refund", "delay", "flight", "support", "crash", "battery", "\"booking fee\"", "outage", "vuelo", "Verspätung"]
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "mentions", "mentions_search", "series", "share_of_voice", "entities", "advocates", "questions", "alerts",
        "dashboard", "kpis", "cases", "care")}
    for _ in range(API_REQUESTS):
        w = rng.choice(watchlists)
        out["mentions"].append({"path": "/v1/mentions", "params": {"watchlist": w, "limit": 50, "sort": rng.choice(["time", "reach"])}})
        search = {"q": rng.choice(words), "limit": 50}
        if rng.random() < 0.5:
            search["watchlist"] = w
        out["mentions_search"].append({"path": "/v1/mentions", "params": search})
        interval = rng.choice(["15m", "1h", "1d"])
        out["series"].append({"path": f"/v1/watchlists/{w}/series", "params": {
            "interval": interval, **period({"15m": 7, "1h": 30, "1d": 90}[interval])}})
        out["share_of_voice"].append({"path": "/v1/share-of-voice", "params": period(90)})
        out["entities"].append({"path": f"/v1/watchlists/{w}/entities", "params": period(90)})
        out["advocates"].append({"path": f"/v1/watchlists/{w}/advocates", "params": period(90)})
        out["questions"].append({"path": f"/v1/watchlists/{w}/questions", "params": period(30)})
        out["alerts"].append({"path": "/v1/alerts", "params": {"limit": 50, **({"watchlist": w} if rng.random() < 0.5 else {})}})
        # What the dashboard asks besides: its overview (figures, charts, lists), the KPI strip, the inbox and its KPIs.
        end = iso(now - timedelta(minutes=rng.randrange(0, 600)))
        out["dashboard"].append({"path": "/v1/dashboard", "params": {"watchlist": w, "length": rng.choice(["24h", "7d", "30d"]),
                                                                     "to": end}})
        out["kpis"].append({"path": f"/v1/watchlists/{w}/kpis", "params": period(30)})
        out["cases"].append({"path": "/v1/cases", "params": {"watchlist": w, "limit": 50}})
        out["care"].append({"path": f"/v1/watchlists/{w}/care", "params": period(30)})
    return out


WANTED = {"mentions": API_MENTIONS, "days": API_DAYS, "watchlists": API_WATCHLISTS, "seed": API_SEED}


async def _prepare(url: str, name: str) -> dict[str, Any]:
    """The seeded data set in database `name`: reused when it was seeded with the same parameters."""
    import asyncpg

    from earful_dev.seed import seed, seed_marker

    conn = await asyncpg.connect(url)
    try:
        marker = await seed_marker(conn)
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await conn.close()
    if marker and all(marker.get(k) == v for k, v in WANTED.items()):
        say(f"  reusing database {name} ({size}), seeded {marker['end']}")
        return marker
    from earful.core.db import drop_database, ensure_database

    await drop_database(url)  # the benchmark's own database, with other or partial data: start over
    await ensure_database(url)
    say(f"  seeding {API_MENTIONS:,} mentions over {API_DAYS} days, {API_WATCHLISTS} watchlists into {name} "
        "(about 20-40 minutes on 2 shared cores)")
    summary = await seed(url, mentions=API_MENTIONS, days=API_DAYS, watchlists=API_WATCHLISTS, seed_value=API_SEED,
                         progress=lambda m: say(f"  {m}"))
    return {**WANTED, "end": datetime.now(timezone.utc).isoformat(), "size": summary["database_size"]}


def _measure(ctx: Context, url: str, marker: dict[str, Any]) -> dict[str, list[float]]:
    """p95 per endpoint and run, from the storage service over the seeded database."""
    import httpx

    from earful_dev.seed import seed_watchlists, write_watchlists_yaml

    watchlists_file = ctx.work_dir / "api-watchlists.yaml"
    write_watchlists_yaml(seed_watchlists(API_WATCHLISTS, API_SEED), watchlists_file)
    ids = [w.id for w in seed_watchlists(API_WATCHLISTS, API_SEED)]
    env = {"EARFUL_DATABASE_URL": url, "EARFUL_API_KEYS": "bench-key", "EARFUL_WATCHLISTS_DIR": str(watchlists_file),
           "EARFUL_API_QUERY_TIMEOUT_S": "30"}
    now = datetime.fromisoformat(marker["end"])
    p95s: dict[str, list[float]] = {}
    with service_on_fresh_broker(ctx, "storage", env) as (svc, _):
        with httpx.Client(base_url=svc.url, headers={"X-API-Key": "bench-key"}, timeout=60) as client:
            warm = _api_requests(random.Random(0), ids, now)
            for reqs in warm.values():  # untimed: connections, plans, caches
                for r in reqs[:10]:
                    client.get(r["path"], params=r["params"]).raise_for_status()
            for attempt in range(API_RUNS):
                plan = _api_requests(random.Random(attempt + 1), ids, now)
                line = []
                for endpoint, reqs in plan.items():
                    times = []
                    for r in reqs:
                        started = time.perf_counter()
                        resp = client.get(r["path"], params=r["params"])
                        times.append((time.perf_counter() - started) * 1000)
                        if resp.status_code != 200:
                            raise RuntimeError(f"{endpoint} {r}: HTTP {resp.status_code} {resp.text[:300]}")
                    p95 = statistics.quantiles(times, n=20)[-1]
                    p95s.setdefault(endpoint, []).append(p95)
                    line.append(f"{endpoint} p95 {p95:.0f} ms (p50 {statistics.median(times):.0f})")
                say(f"  run {attempt + 1}/{API_RUNS}: " + "; ".join(line))
    return p95s


def run(ctx: Context) -> Result:
    from earful_dev.bench import postgres_database

    name = os.environ.get("EARFUL_BENCH_API_DATABASE", "earful_bench_api")
    keep = os.environ.get("EARFUL_BENCH_KEEP_API_DATABASE") == "1"

    async def measure() -> tuple[dict[str, Any], dict[str, list[float]]]:
        async with postgres_database(name, POSTGRES_DATA_DIR, keep=keep, log=lambda m: say(f"  {m}")) as url:
            try:
                marker = await _prepare(url, name)
                return marker, await asyncio.to_thread(_measure, ctx, url, marker)
            finally:
                if keep:
                    say(f"  kept database {name} (EARFUL_BENCH_KEEP_API_DATABASE=1)")

    marker, p95s = asyncio.run(measure())
    result = {k: round(median(v), 1) for k, v in p95s.items()}
    return Result({"api_p95_ms": result, "api_dataset": {k: marker.get(k) for k in ("mentions", "days", "watchlists")}},
                  {"api_p95_ms": API_RUNS})
