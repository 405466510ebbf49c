"""`pipeline`: the four services at rising steady rates; the highest rate the whole stack holds.

Ingest, one enrichment worker, alerting and storage run as processes on a fresh broker and
database, with 20 brand watchlists. After a warm-up (the detector needs two minutes of history
before it may alert), each step pushes a steady rate for EARFUL_BENCH_PIPELINE_HOLD_S seconds
(default 120) with two spikes on watchlists not spiked before, then stops the load and waits for
storage to hold every accepted mention. A step is held when

* ingest accepted what was offered (nothing shed, nothing refused),
* storage caught up within EARFUL_BENCH_PIPELINE_MAX_DRAIN_S (default 15 s) of the load's end
  (the consumer lag stayed bounded), and
* the median time from a spike's start to its alert at the webhook is at most 2 s.

Each step also lists the watchlists never spiked that got a volume_spike alert in it
(`false_spike_alerts`: the steady load is Poisson, so any is a false alert).

The rates climb until a step fails (EARFUL_BENCH_PIPELINE_RATES, default 300,500,700,1000,1300).
`pipeline_sustained_per_s` is the highest rate held; `pipeline_cpu_ms_per_mention` the four
services' CPU time (user + system, from /proc) per stored mention at that rate; each step also
gives it per process, the local broker's included (`cpu_ms_per_mention_by_process`: the broker
shares the cores, and its cost grows with the records it holds, see bench/local_broker_cost.py).
Run by name only (about 15 minutes): `make bench-pipeline`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import POSTGRES_DATA_DIR, Context, Result, median, sample_mentions, say, service_base_env
from benchmarks.resources import _proc_cpu_s

NAME = "pipeline"
KEYS = ("pipeline_sustained_per_s", "pipeline_cpu_ms_per_mention", "pipeline_steps")
DESCRIPTION = "the four services at rising steady rates: the highest held with bounded lag and alert p50 <= 2 s (run by name only)"

SERVICES = ("ingest", "enrichment", "alerting", "storage")
PREFIX = "pipe"
MAX_ALERT_P50_S = 2.0


@dataclass(frozen=True)
class PipelineConfig:
    """The benchmark's settings, each EARFUL_BENCH_PIPELINE_<NAME> in the environment."""

    rates: str = "300,500,700,1000,1300"  # mentions/s, climbed in order until a step fails
    hold_s: float = 120.0  # how long each rate is held
    warmup_s: float = 150.0  # at the first rate, before the first step (history for the detector)
    watchlists: int = 20
    spikes_per_step: int = 2
    spike_s: float = 10.0
    max_drain_s: float = 15.0  # storage must hold every accepted mention this soon after the load stops

    @classmethod
    def from_env(cls) -> PipelineConfig:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"EARFUL_BENCH_PIPELINE_{f.name.upper()}")
            if raw is not None and raw.strip():
                values[f.name] = type(getattr(cls, f.name))(raw.strip())
        cfg = cls(**values)
        rates = cfg.rate_list()
        if not rates or any(r <= 0 for r in rates) or rates != sorted(rates):
            raise ValueError(f"EARFUL_BENCH_PIPELINE_RATES={cfg.rates!r}: give rising positive rates, e.g. 300,500,700")
        if cfg.watchlists < 1 + cfg.spikes_per_step * len(rates):
            raise ValueError("EARFUL_BENCH_PIPELINE_WATCHLISTS: each spike needs a watchlist not spiked before "
                             f"({cfg.spikes_per_step * len(rates)} spikes)")
        return cfg

    def rate_list(self) -> list[float]:
        return [float(r) for r in self.rates.split(",") if r.strip()]


async def _stored(url: str, tag: str) -> int:
    from earful.core.db import connect

    conn = await connect(url, timeout=10.0)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM mention_keys WHERE source = 'twitter' AND source_id LIKE $1",
                                       f"{PREFIX}-{tag}-%"))
    finally:
        await conn.close()


async def _step(cfg: PipelineConfig, group: Any, load: Any, receiver: Any, url: str, rate: float, step: int,
                spiked: list[str], brands: list[tuple[str, str]], broker_pid: int) -> dict[str, Any]:
    """One rate held, its spikes, then the drain; what it measured."""
    tag = f"s{step}"
    load.tag = tag
    per_watchlist = rate / len(brands)
    load.rates = {wid: per_watchlist for wid, _ in brands}
    pids = {**group.pids(), "broker": broker_pid}
    cpu_before = {label: _proc_cpu_s(pid) for label, pid in pids.items()}
    started, step_wall = time.monotonic(), time.time()
    spikes: list[tuple[str, float]] = []
    for k in range(cfg.spikes_per_step):
        at = started + cfg.hold_s * (k + 1) / (cfg.spikes_per_step + 1)
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        wid = next(w for w, _ in brands if w not in spiked)
        spiked.append(wid)
        load.spike(wid, max(30.0, 4 * per_watchlist), cfg.spike_s)
        spikes.append((wid, time.time()))
    await asyncio.sleep(max(0.0, started + cfg.hold_s - time.monotonic()))
    load.rates = {wid: 0.0 for wid, _ in brands}
    stopped = time.monotonic()
    while load.in_flight(tag):  # requests still being answered
        await asyncio.sleep(0.2)
    accepted = len(load.accepted_with(tag))
    drain_s: float | None = None
    while time.monotonic() - stopped < cfg.max_drain_s + 60.0:
        if await _stored(url, tag) >= accepted:
            drain_s = time.monotonic() - stopped
            break
        await asyncio.sleep(1.0)
    cpu_by_process = {label: _proc_cpu_s(pid) - cpu_before[label] for label, pid in pids.items() if label in cpu_before}
    cpu_s = sum(v for label, v in cpu_by_process.items() if label != "broker")
    stored = await _stored(url, tag)
    latencies: list[float | None] = []
    for wid, at in spikes:
        fired = [t for a, t in receiver.alerts_with("firing") if a["labels"].get("watchlist") == wid and t >= at]
        latencies.append(min(fired) - at if fired else None)
    false_spikes = sorted({a["labels"].get("watchlist", "") for a, t in receiver.alerts_with("firing")
                           if a["labels"].get("rule") == "volume_spike" and t >= step_wall
                           and a["labels"].get("watchlist") not in spiked})
    per_tag = load.stats.by_tag.get(tag, {})
    refused = per_tag.get("shed", 0) + per_tag.get("rejected", 0) + per_tag.get("gave_up", 0)
    measured = [x for x in latencies if x is not None]
    p50 = median(measured) if len(measured) == len(latencies) and measured else None
    held = refused == 0 and drain_s is not None and drain_s <= cfg.max_drain_s and p50 is not None and p50 <= MAX_ALERT_P50_S
    result = {"rate_per_s": rate, "held": held, "accepted": accepted, "stored": stored, "refused": refused,
              "drain_s": None if drain_s is None else round(drain_s, 1),
              "alert_latencies_s": [None if x is None else round(x, 2) for x in latencies],
              "cpu_ms_per_mention": round(cpu_s * 1000 / stored, 3) if stored else None,
              "cpu_ms_per_mention_by_process": {label: round(v * 1000 / stored, 3) for label, v in cpu_by_process.items()}
              if stored else None,
              "false_spike_alerts": false_spikes,
              "late_ticks": load.stats.late_ticks}
    say(f"  {rate:g}/s: {'held' if held else 'NOT held'}: {accepted} accepted, {refused} refused, drained in "
        f"{result['drain_s']} s, alerts after {result['alert_latencies_s']} s, "
        f"{result['cpu_ms_per_mention']} ms CPU per mention (four services; by process: "
        f"{result['cpu_ms_per_mention_by_process']}), volume spikes on watchlists not spiked: {len(false_spikes)}")
    return result


async def _pipeline(cfg: PipelineConfig, log_dir: Path, database: str) -> list[dict[str, Any]]:
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful_dev.bench import MentionLoad, ServiceGroup, brand_watchlists, local_broker, postgres_database, webhook_receiver

    brands = brand_watchlists(log_dir / "watchlists.yaml", cfg.watchlists)
    rates = cfg.rate_list()
    with local_broker(log_dir / "broker.log") as broker:
        async with postgres_database(database, POSTGRES_DATA_DIR, log=lambda m: say(f"  {m}")) as url, \
                webhook_receiver() as (receiver, webhook_url):
            await create_topics(Settings(kafka_bootstrap=broker.bootstrap))
            env = service_base_env(broker.bootstrap)
            env.update({"EARFUL_WATCHLISTS_DIR": str(log_dir / "watchlists.yaml"), "EARFUL_DATABASE_URL": url,
                        "EARFUL_WEBHOOK_URLS": webhook_url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                        "EARFUL_INGEST_STATE_DIR": str(log_dir / "ingest-state")})
            group = ServiceGroup(list(SERVICES), env, log_dir)
            try:
                group.spawn()
                await group.wait_ready(180.0)
                texts = [m["text"] for m in sample_mentions(800)]
                total_s = cfg.warmup_s + len(rates) * (cfg.hold_s + cfg.max_drain_s + 60.0)
                load = MentionLoad(group["ingest"].url, brands, {wid: rates[0] / len(brands) for wid, _ in brands}, texts,
                                   max_mentions=int(sum(rates) * cfg.hold_s * 2 + rates[0] * cfg.warmup_s * 2),
                                   max_seconds=total_s, prefix=PREFIX)
                load.tag = "warmup"
                say(f"  services ready; warm-up at {rates[0]:g} mentions/s over {len(brands)} watchlists for {cfg.warmup_s:g}s")
                load_task = asyncio.create_task(load.run())
                steps: list[dict[str, Any]] = []
                spiked: list[str] = []
                try:
                    await asyncio.sleep(cfg.warmup_s)
                    for i, rate in enumerate(rates):
                        dead = group.dead()
                        if dead:
                            raise RuntimeError(f"{dead[0]} exited:\n{group[dead[0]].log_tail()}")
                        steps.append(await _step(cfg, group, load, receiver, url, rate, i + 1, spiked, brands,
                                                 broker.process.pid))
                        if not steps[-1]["held"]:
                            break
                finally:
                    load.stop()
                    await load_task
                return steps
            finally:
                await group.stop()


def run(ctx: Context) -> Result:
    cfg = PipelineConfig.from_env()
    log_dir = ctx.work_dir / "pipeline"
    log_dir.mkdir(parents=True, exist_ok=True)
    steps = asyncio.run(_pipeline(cfg, log_dir, f"earful_bench_{uuid.uuid4().hex[:10]}"))
    held = [s for s in steps if s["held"]]
    best = held[-1] if held else None
    metrics = {"pipeline_sustained_per_s": best["rate_per_s"] if best else 0.0,
               "pipeline_cpu_ms_per_mention": best["cpu_ms_per_mention"] if best else None,
               "pipeline_steps": steps}
    error = None if best else f"not even the first rate ({cfg.rate_list()[0]:g}/s) was held; logs in {log_dir}"
    return Result(metrics, dict.fromkeys(KEYS, 1), error)
