"""`alerting`: time from the first spike mention accepted by ingest to the webhook, under load."""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import POSTGRES_DATA_DIR, Context, Result, fmt_runs, median, sample_mentions, say, service_base_env

NAME = "alerting"
KEYS = ("alert_latency_p50_s", "alert_latency_max_s", "false_alerts_quiet", "small_brand_alert_latency_max_s")
DESCRIPTION = "first spike mention accepted by ingest → webhook, under 200 mentions/s over 50 watchlists"

ALERT_WATCHLISTS = 50
ALERT_BACKGROUND_PER_S = 200.0
ALERT_CANDIDATE_PER_S = 1.0  # the watchlists that will spike run at ~1/s before
ALERT_SPIKE_PER_S = 50.0
ALERT_SPIKES = 6  # p50 and max over these (at least 5 must be measured)
ALERT_WARMUP_S = 140.0  # the detector needs 12 buckets (120 s) of history before it may alert
ALERT_SPIKE_S = 10.0
ALERT_CALM_S = 12.0
ALERT_TICK_S = 0.1  # one POST per tick
ALERT_LATE_WAIT_S = 60.0  # after the last spike, how long late alerts are still waited for
ALERT_ENRICH_WORKERS = 2  # enrichment processes (the raw topic has 6 partitions)
# Small brands: under one mention a minute usually, then a few a minute; each must alert within 3 minutes.
SMALL_BRANDS = 3
SMALL_BASE_PER_S = 0.3 / 60
SMALL_SPIKE_PER_S = 8.0 / 60
SMALL_HISTORY_S = 1800.0  # history a small brand needs before its usual rate is known: sent first, back-dated
SMALL_DEADLINE_S = 180.0


def _alert_watchlists(path: Path) -> list[tuple[str, str]]:
    """ALERT_WATCHLISTS brands with one-word names no other brand contains; returns (id, term)."""
    brands = [(f"bench-{i:02d}", f"Benchbrand{i:02d}") for i in range(ALERT_WATCHLISTS)]
    brands += [(f"bench-small-{i}", f"Benchsmall{i}") for i in range(SMALL_BRANDS)]
    lines = ["watchlists:"]
    for wid, term in brands:
        lines += [f"  - id: {wid}", f"    name: {term}", "    kind: brand", f'    terms: ["{term}", "#{term}"]']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return brands


@dataclass
class _Spike:
    watchlist: str
    first_accepted: float | None = None
    alerted: float | None = None


async def _alerting_run(urls: dict[str, str], receiver: Any, brands: list[tuple[str, str]]) -> dict[str, Any]:
    import httpx

    rng = random.Random(20261102)
    texts = [m["text"] for m in sample_mentions(800)]
    candidates = [wid for wid, _ in brands[:ALERT_SPIKES]]
    terms = dict(brands)
    smalls = [wid for wid, _ in brands if wid.startswith("bench-small-")]
    others = [wid for wid, _ in brands[ALERT_SPIKES:] if wid not in smalls]
    small_spikes = [_Spike(wid) for wid in smalls]
    small_spiking = False
    other_rate = (ALERT_BACKGROUND_PER_S - ALERT_CANDIDATE_PER_S * len(candidates)) / len(others)
    spikes = [_Spike(wid) for wid in candidates]
    sent = accepted = 0
    counter = itertools.count()
    lateness: list[float] = []

    def mention(wid: str, ago_s: float = 0.0) -> dict[str, Any]:
        n = next(counter)
        text = f"{terms[wid]} {rng.choice(texts)}"[:1000]
        now = datetime.fromtimestamp(time.time() - ago_s, timezone.utc)
        return {"source": "twitter", "source_id": f"bench-{n}", "text": text, "lang": "en",
                "created_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "author": {"id": f"u{n % 5000}", "handle": f"user{n % 5000}", "followers": rng.randint(10, 50000)}}

    def draws(rate: float) -> int:  # Poisson count of one tick at `rate` per second
        lam, k, p = rate * ALERT_TICK_S, 0, rng.random()
        threshold = math.exp(-lam)
        while p > threshold:
            k += 1
            p *= rng.random()
        return k

    async with httpx.AsyncClient(base_url=urls["ingest"], timeout=30.0) as client:
        async def post(batch: list[dict[str, Any]], spike: _Spike | None) -> None:
            nonlocal sent, accepted
            sent += len(batch)
            resp = await client.post("/v1/mentions", json={"mentions": batch})
            if resp.status_code != 202:
                raise RuntimeError(f"ingest answered {resp.status_code}: {resp.text[:300]}")
            accepted += len(batch)
            if spike is not None and spike.first_accepted is None:
                spike.first_accepted = time.time()

        async def load(seconds: float, spike: _Spike | None) -> None:
            started = time.monotonic()
            tick = 0
            pending: set[asyncio.Task[None]] = set()
            while time.monotonic() - started < seconds:
                batch = [mention(w) for w in others for _ in range(draws(other_rate))]
                batch += [mention(w) for w in candidates for _ in range(draws(ALERT_CANDIDATE_PER_S))
                          if spike is None or w != spike.watchlist]
                for small in small_spikes:
                    spiked = [mention(small.watchlist) for _ in range(draws(SMALL_SPIKE_PER_S if small_spiking else SMALL_BASE_PER_S))]
                    if spiked and small_spiking:
                        task = asyncio.create_task(post(spiked, small))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    elif spiked:
                        batch += spiked
                spiking = []
                if spike is not None:
                    spiking = [mention(spike.watchlist) for _ in range(draws(ALERT_SPIKE_PER_S))]
                rng.shuffle(batch)
                if batch:
                    task = asyncio.create_task(post(batch, None))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                if spiking:
                    task = asyncio.create_task(post(spiking, spike))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                tick += 1
                wait = started + tick * ALERT_TICK_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    lateness.append(-wait)
            await asyncio.gather(*pending)

        def note_alerts() -> None:
            for a, at in receiver.alerts_with("firing"):
                for spike in [*spikes, *small_spikes]:
                    if a["labels"].get("watchlist") == spike.watchlist and spike.alerted is None:
                        spike.alerted = at

        say(f"  small brands: {SMALL_HISTORY_S / 60:.0f} minutes of back-dated history at {SMALL_BASE_PER_S * 60:.1f}/min")
        for ago in sorted(((rng.uniform(0, SMALL_HISTORY_S), w) for w in smalls
                           for _ in range(max(1, round(SMALL_BASE_PER_S * SMALL_HISTORY_S)))), reverse=True):
            await post([mention(ago[1], ago_s=ago[0])], None)  # one at a time, oldest first: they arrive in order
            await asyncio.sleep(0.2)
        say(f"  warm-up: {ALERT_BACKGROUND_PER_S:.0f} mentions/s over {len(brands)} watchlists for {ALERT_WARMUP_S:.0f}s")
        await load(ALERT_WARMUP_S, None)
        for i, spike in enumerate(spikes):
            await load(ALERT_SPIKE_S, spike)
            await load(ALERT_CALM_S, None)
            note_alerts()
            latency = None if spike.alerted is None or spike.first_accepted is None else spike.alerted - spike.first_accepted
            say(f"  spike {i + 1}/{len(spikes)} on {spike.watchlist}: "
                + (f"alert {latency:.2f}s after its first mention was accepted" if latency is not None
                   else f"no alert within {ALERT_SPIKE_S + ALERT_CALM_S:.0f}s"))
        small_spiking = True
        say(f"  small-brand spikes: {len(small_spikes)} watchlists at {SMALL_SPIKE_PER_S * 60:.0f}/min at once")
        small_started = time.monotonic()
        while time.monotonic() - small_started < SMALL_DEADLINE_S and any(s.alerted is None for s in small_spikes):
            await load(10.0, None)
            note_alerts()
        small_spiking = False
        for s in small_spikes:
            latency = None if s.alerted is None or s.first_accepted is None else s.alerted - s.first_accepted
            say(f"  small brand {s.watchlist}: " + (f"alert {latency:.1f}s after its first spike mention" if latency is not None
                                                    else f"no alert within {SMALL_DEADLINE_S:.0f}s"))
        deadline = time.monotonic() + ALERT_LATE_WAIT_S  # a pipeline that lags still gets its (late) alerts measured
        while any(s.alerted is None for s in spikes) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            note_alerts()
        await asyncio.sleep(3)
    firing = receiver.alerts_with("firing")
    spiked = {s.watchlist for s in [*spikes, *small_spikes]}
    false_quiet = [a for a, _ in firing if a["labels"].get("watchlist") not in spiked]
    per_spiked = collections.Counter(a["labels"].get("watchlist") for a, _ in firing if a["labels"].get("watchlist") in spiked)
    return {"latencies": [s.alerted - s.first_accepted for s in spikes if s.alerted and s.first_accepted],
            "missed": [s.watchlist for s in spikes if s.alerted is None], "false_quiet": len(false_quiet),
            "refired": sum(n - 1 for n in per_spiked.values()), "sent": sent, "accepted": accepted,
            "small_latencies": [s.alerted - s.first_accepted if s.alerted and s.first_accepted else None for s in small_spikes],
            "late_ticks": len(lateness)}


async def _enriched_so_far(urls: list[str]) -> int:
    """Mentions the enrichment processes finished (their /metrics), to tell a lagging pipeline apart."""
    import httpx

    total = 0
    async with httpx.AsyncClient(timeout=5.0) as client:
        for url in urls:
            text = (await client.get(url + "/metrics")).text
            total += sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                         if line.startswith("earful_messages_total") and 'outcome="enriched"' in line)
    return total


async def _with_services(log_dir: Path, brands: list[tuple[str, str]], database: str) -> dict[str, Any]:
    """Ingest, the enrichment workers and alerting as processes on a fresh broker and database; one run."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful_dev.bench import local_broker, postgres_database, webhook_receiver
    from earful_dev.stack.broker import free_port
    from earful_dev.stack.processes import ServiceProcess, service_env

    with local_broker(log_dir / "broker.log") as broker:
        async with postgres_database(database, POSTGRES_DATA_DIR, log=lambda m: say(f"  {m}")) as url, \
                webhook_receiver() as (receiver, webhook_url):
            await create_topics(Settings(kafka_bootstrap=broker.bootstrap))
            env = service_base_env(broker.bootstrap)
            env.update({"EARFUL_WATCHLISTS_DIR": str(log_dir / "watchlists.yaml"), "EARFUL_DATABASE_URL": url,
                        "EARFUL_WEBHOOK_URLS": webhook_url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
            services: list[ServiceProcess] = []
            for name in ("ingest", *(["enrichment"] * ALERT_ENRICH_WORKERS), "alerting"):
                port = free_port()
                log_name = f"{name}-{len(services)}" if name == "enrichment" else name
                services.append(ServiceProcess(name, port, service_env(env, name, port), log_dir / f"{log_name}.log"))
            try:
                started = time.monotonic()
                for svc in services:
                    svc.start()
                for svc in services:
                    await asyncio.to_thread(svc.wait_ready, 120)
                say(f"  ingest, enrichment and alerting ready in {time.monotonic() - started:.1f}s (broker {broker.bootstrap})")
                outcome = await _alerting_run({s.name: s.url for s in services}, receiver, brands)
                outcome["enriched"] = await _enriched_so_far([s.url for s in services if s.name == "enrichment"])
                for svc in services:
                    if not svc.alive():
                        raise RuntimeError(f"{svc.name} died:\n{svc.log_tail()}")
                return outcome
            finally:
                for svc in services:
                    await asyncio.to_thread(svc.stop)


def run(ctx: Context) -> Result:
    log_dir = ctx.work_dir / "alerting"
    log_dir.mkdir(parents=True, exist_ok=True)
    brands = _alert_watchlists(log_dir / "watchlists.yaml")
    out = asyncio.run(_with_services(log_dir, brands, f"earful_bench_{uuid.uuid4().hex[:10]}"))
    latencies = out["latencies"]
    say(f"  {out['accepted']} mentions accepted, {out['enriched']} enriched by the end; "
        f"latencies {fmt_runs(latencies, 's')}; missed {out['missed'] or 'none'}; "
        f"alerts for quiet watchlists {out['false_quiet']}; re-fired spiked watchlists {out['refired']}"
        + (f"; the load generator fell behind on {out['late_ticks']} ticks" if out["late_ticks"] else ""))
    if len(latencies) < 5:
        raise RuntimeError(f"only {len(latencies)} of {ALERT_SPIKES} spikes alerted (missed: {out['missed']}); logs in {log_dir}")
    small = out["small_latencies"]
    say(f"  small brands: latencies {small} (each must be within {SMALL_DEADLINE_S:.0f}s)")
    metrics = {"alert_latency_p50_s": round(median(latencies), 3), "alert_latency_max_s": round(max(latencies), 3),
               "false_alerts_quiet": out["false_quiet"] + out["refired"],
               "small_brand_alert_latency_max_s": None if None in small else round(max(small), 1)}
    return Result(metrics, {"alert_latency_p50_s": len(latencies), "alert_latency_max_s": len(latencies),
                            "false_alerts_quiet": 1, "small_brand_alert_latency_max_s": len(small)},
                  f"missed spikes: {out['missed']}" if out["missed"] else None)
