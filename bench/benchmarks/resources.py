"""`resources`: each service's memory and CPU under the sample load (the Kubernetes requests/limits)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import POSTGRES_DATA_DIR, REPO, Context, Result, median, say, service_base_env

NAME = "resources"
KEYS = ("service_rss_idle_mib", "service_rss_peak_mib", "service_cpu_ms_per_mention")
DESCRIPTION = "each service's RSS and CPU per mention under the sample load (Kubernetes requests/limits)"

RESOURCES_RUNS = 2
RESOURCES_TIMEOUT_S = 180.0


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(pipeline: Any, url: str, work: Path) -> dict[str, dict[str, float]]:
    """Idle RSS of the ready services, then the bundled sample replayed as fast as ingest takes it."""
    from earful.replay import replay
    from earful_dev.bench import process_memory_mib
    from earful_dev.sample.generator import read_stream
    from earful_dev.stack.demo import count_stored

    await asyncio.sleep(5)  # settle: group joins, first fetches
    pids = {name: svc.process.pid for name, svc in pipeline.services.items() if svc.process}
    idle = {name: process_memory_mib(pid)[0] for name, pid in pids.items()}
    cpu_before = {name: _proc_cpu_s(pid) for name, pid in pids.items()}
    stats = await replay(read_stream(), pipeline["ingest"].url, speed=0.0)
    ids = sorted(set(stats.mention_ids))
    deadline = time.monotonic() + RESOURCES_TIMEOUT_S
    while await count_stored(url, ids) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every mention stored after {RESOURCES_TIMEOUT_S:.0f}s (logs in {work})")
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # alerting and delivery finish the tail
    peak = {name: process_memory_mib(pid)[1] for name, pid in pids.items()}
    cpu_ms = {name: (_proc_cpu_s(pid) - cpu_before[name]) * 1000 / len(ids) for name, pid in pids.items()}
    return {"idle": idle, "peak": peak, "cpu_ms": cpu_ms, "mentions": {"all": float(len(ids))}}


async def _resources_run(work: Path, database: str) -> dict[str, dict[str, float]]:
    """The four services on a fresh broker and database, measured under the sample load."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful_dev.bench import local_broker, postgres_database, webhook_receiver
    from earful_dev.stack.processes import Pipeline

    with local_broker(work / "broker.log") as broker:
        async with postgres_database(database, POSTGRES_DATA_DIR, log=lambda m: say(f"  {m}")) as url, \
                webhook_receiver() as (_, webhook_url):
            env = service_base_env(broker.bootstrap)
            env.update({"EARFUL_DATABASE_URL": url, "EARFUL_WEBHOOK_URLS": webhook_url,
                        "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
            await create_topics(Settings(kafka_bootstrap=broker.bootstrap, schema_dir=REPO / "schemas"))
            pipeline = Pipeline(env, work, prefer_default_ports=False)
            try:
                await asyncio.to_thread(pipeline.start, 120.0)
                return await _measure(pipeline, url, work)
            finally:
                await asyncio.to_thread(pipeline.stop)


def run(ctx: Context) -> Result:
    runs = []
    for attempt in range(RESOURCES_RUNS):
        work = ctx.work_dir / f"resources-{attempt + 1}"
        work.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(_resources_run(work, f"earful_bench_{uuid.uuid4().hex[:10]}"))
        runs.append(result)
        say(f"  run {attempt + 1}/{RESOURCES_RUNS}: {int(result['mentions']['all'])} mentions; " + "; ".join(
            f"{n} RSS {result['idle'][n]:.0f}→{result['peak'][n]:.0f} MiB, {result['cpu_ms'][n]:.2f} ms CPU/mention"
            for n in ("ingest", "enrichment", "alerting", "storage")))

    def per_service(key: str, digits: int) -> dict[str, float]:
        return {n: round(median([r[key][n] for r in runs]), digits) for n in ("ingest", "enrichment", "alerting", "storage")}

    return Result({"service_rss_idle_mib": per_service("idle", 1), "service_rss_peak_mib": per_service("peak", 1),
                   "service_cpu_ms_per_mention": per_service("cpu_ms", 3)},
                  {"service_rss_idle_mib": len(runs), "service_rss_peak_mib": len(runs),
                   "service_cpu_ms_per_mention": len(runs)})
