"""`soak`: does any service's memory grow under a steady load held for a long time?

The four services run as processes on a fresh broker and PostgreSQL database while a steady load
(200 mentions/s over 20 watchlists by default) is pushed to ingest for 30 minutes (or
EARFUL_BENCH_SOAK_S seconds); every few seconds the RSS of each process is read from /proc.
Growth = median RSS of the last tenth of the samples / median of the first tenth (after a
warm-up) - 1; the peak is each process's VmHWM at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import POSTGRES_DATA_DIR, Context, Result, median, sample_mentions, say, service_base_env

NAME = "soak"
KEYS = ("soak_rss_growth", "soak_rss_peak_mib", "soak_details")
DESCRIPTION = "a steady 200 mentions/s for 30 min (EARFUL_BENCH_SOAK_S): RSS growth of every service (run by name only)"

SERVICES = ("ingest", "enrichment", "alerting", "storage")
SOURCE_PREFIX = "soak"


@dataclass(frozen=True)
class SoakConfig:
    """The benchmark's settings: EARFUL_BENCH_SOAK_S for the duration, EARFUL_BENCH_SOAK_<NAME> for the others."""

    s: float = 1800.0  # how long the load runs
    rate: float = 200.0  # mentions/s pushed to ingest
    watchlists: int = 20
    # Samples before this are not compared: start-up, first batches, caches filling. Alerting keeps
    # up to 2,000 recent posts per watchlist for explanations: at the default 10/s per watchlist that
    # cache fills in 200 s. A shorter run (EARFUL_BENCH_SOAK_S) gets a sixth of its length.
    warmup_s: float = 300.0
    sample_s: float = 5.0
    drain_s: float = 120.0  # after the load, how long the mentions may take to be stored

    @classmethod
    def from_env(cls) -> SoakConfig:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"EARFUL_BENCH_SOAK_{f.name.upper()}")
            if raw is not None and raw.strip():
                values[f.name] = type(getattr(cls, f.name))(raw.strip())
        if "warmup_s" not in values and "s" in values:
            values["warmup_s"] = min(cls.warmup_s, values["s"] / 6)
        cfg = cls(**values)
        if cfg.s - cfg.warmup_s < 20 * cfg.sample_s:
            raise ValueError(f"EARFUL_BENCH_SOAK_S={cfg.s:g} leaves fewer than 20 samples after the {cfg.warmup_s:g} s warm-up "
                             f"at one per {cfg.sample_s:g} s")
        return cfg


EARLY_WARMUP_S = 60.0  # the growth is also given from here, with the caches filling


def rss_growth(samples: list[float]) -> tuple[float, float, float]:
    """(growth, median of the first tenth, median of the last tenth) of RSS samples in time order."""
    tenth = max(1, len(samples) // 10)
    first, last = median(samples[:tenth]), median(samples[-tenth:])
    return last / first - 1.0, first, last


async def _sample(group: Any, broker_pid: int, cfg: SoakConfig, load_task: asyncio.Task[Any],
                  started: float) -> dict[str, list[tuple[float, float]]]:
    """RSS of each service (and the broker) every `sample_s` until the load ends: label → [(t, MiB)]
    (and "load": the machine's 1-minute load average)."""
    from earful_dev.bench import process_memory_mib

    series: dict[str, list[tuple[float, float]]] = {label: [] for label in (*SERVICES, "broker", "load")}
    next_at = time.monotonic()
    last_note = started
    while not load_task.done():
        dead = group.dead()
        if dead:
            raise RuntimeError(f"{dead[0]} exited during the soak:\n{group[dead[0]].log_tail()}")
        now = time.monotonic() - started
        for label, pid in {**group.pids(), "broker": broker_pid}.items():
            with contextlib.suppress(OSError, KeyError):
                series[label].append((now, process_memory_mib(pid)[0]))
        series["load"].append((now, os.getloadavg()[0]))
        if time.monotonic() - last_note >= 60:
            last_note = time.monotonic()
            say(f"  {now:.0f}s: RSS " + ", ".join(f"{k} {v[-1][1]:.0f}" for k, v in series.items() if v and k != "load")
                + f" MiB; load average {series['load'][-1][1]:.2f}")
        next_at += cfg.sample_s
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(load_task), max(0.0, next_at - time.monotonic()))
    return series


async def _count_stored(url: str, expected: int, deadline_s: float) -> int:
    """Rows of this run's mentions, polled until `expected` or the deadline."""
    from earful.core.db import connect

    deadline = time.monotonic() + deadline_s
    conn = await connect(url, timeout=10.0)
    try:
        while True:
            stored = int(await conn.fetchval("SELECT count(*) FROM mentions WHERE source_id LIKE $1", f"{SOURCE_PREFIX}-%"))
            if stored >= expected or time.monotonic() > deadline:
                return stored
            await asyncio.sleep(5.0)
    finally:
        await conn.close()


async def _soak(cfg: SoakConfig, log_dir: Path, database: str) -> dict[str, Any]:
    """The services on a fresh broker and database under the steady load; RSS series and counts."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful_dev.bench import (
        MentionLoad,
        ServiceGroup,
        brand_watchlists,
        local_broker,
        postgres_database,
        process_memory_mib,
        webhook_receiver,
    )

    brands = brand_watchlists(log_dir / "watchlists.yaml", cfg.watchlists)
    with local_broker(log_dir / "broker.log") as broker:
        async with postgres_database(database, POSTGRES_DATA_DIR, log=lambda m: say(f"  {m}")) as url, \
                webhook_receiver() as (_, webhook_url):
            await create_topics(Settings(kafka_bootstrap=broker.bootstrap))
            env = service_base_env(broker.bootstrap)
            env.update({"EARFUL_WATCHLISTS_DIR": str(log_dir / "watchlists.yaml"), "EARFUL_DATABASE_URL": url,
                        "EARFUL_WEBHOOK_URLS": webhook_url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                        "EARFUL_INGEST_STATE_DIR": str(log_dir / "ingest-state")})
            group = ServiceGroup(list(SERVICES), env, log_dir)
            try:
                group.spawn()  # on this thread, which outlives the services
                await group.wait_ready(180.0)
                rates = {wid: cfg.rate / len(brands) for wid, _ in brands}
                texts = [m["text"] for m in sample_mentions(800)]
                load = MentionLoad(group["ingest"].url, brands, rates, texts, max_mentions=int(cfg.rate * cfg.s * 1.2),
                                   max_seconds=cfg.s, prefix=SOURCE_PREFIX)
                load.tag = "run"
                say(f"  services ready; {cfg.rate:g} mentions/s over {len(brands)} watchlists for {cfg.s:g}s, "
                    f"RSS every {cfg.sample_s:g}s")
                started = time.monotonic()
                load_task = asyncio.create_task(load.run())
                try:
                    series = await _sample(group, broker.process.pid, cfg, load_task, started)
                finally:
                    load.stop()
                    stats = await load_task
                elapsed = time.monotonic() - started
                peaks = {label: process_memory_mib(pid)[1] for label, pid in {**group.pids(), "broker": broker.process.pid}.items()}
                stored = await _count_stored(url, len(stats.accepted), cfg.drain_s)
                return {"series": series, "peaks": peaks, "stats": stats, "stored": stored, "elapsed": elapsed}
            finally:
                await group.stop()


def run(ctx: Context) -> Result:
    cfg = SoakConfig.from_env()
    log_dir = ctx.work_dir / "soak"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = asyncio.run(_soak(cfg, log_dir, f"earful_bench_{uuid.uuid4().hex[:10]}"))
    growth: dict[str, float] = {}
    tenths: dict[str, dict[str, float]] = {}
    loads = [v for _, v in out["series"].pop("load")]
    for label, points in out["series"].items():
        after = [mib for t, mib in points if t >= cfg.warmup_s]
        if len(after) < 10:
            raise RuntimeError(f"only {len(after)} RSS samples of {label} after the warm-up")
        g, first, last = rss_growth(after)
        growth[label] = round(g, 4)
        tenths[label] = {"first_tenth_mib": round(first, 1), "last_tenth_mib": round(last, 1), "samples": len(after)}
    early = {label: round(rss_growth([mib for t, mib in points if t >= EARLY_WARMUP_S])[0], 4)
             for label, points in out["series"].items()}  # the same, caches filling included
    stats = out["stats"]
    accepted = len(stats.accepted)
    details = {
        "duration_s": round(out["elapsed"], 1), "warmup_s": cfg.warmup_s, "sample_s": cfg.sample_s,
        "rate_per_s": round(accepted / out["elapsed"], 1), "accepted": accepted, "stored": out["stored"],
        "not_accepted": stats.generated - accepted, "late_ticks": stats.late_ticks,
        "load_average_1m": {"min": round(min(loads), 2), "median": round(median(loads), 2), "max": round(max(loads), 2)},
        "rss": tenths, f"rss_growth_after_{EARLY_WARMUP_S:g}s": early, "broker_rss_growth": growth.pop("broker"), "broker_rss_peak_mib": round(out["peaks"].pop("broker"), 1),
    }
    for label in SERVICES:
        say(f"  {label}: RSS {tenths[label]['first_tenth_mib']} → {tenths[label]['last_tenth_mib']} MiB "
            f"(growth {growth[label]:+.1%}), peak {out['peaks'][label]:.0f} MiB")
    say(f"  {accepted} mentions accepted ({details['rate_per_s']}/s), {out['stored']} stored; broker RSS growth "
        f"{details['broker_rss_growth']:+.1%} (Tansu keeps every record in memory)")
    error = None if out["stored"] >= accepted else f"{accepted - out['stored']} accepted mentions not stored after {cfg.drain_s:g}s"
    return Result({"soak_rss_growth": growth, "soak_rss_peak_mib": {k: round(v, 1) for k, v in out["peaks"].items()},
                   "soak_details": details}, dict.fromkeys(KEYS, 1), error)
