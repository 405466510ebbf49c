"""`enrichment`: the processor alone (the ceiling of one worker), and one worker's peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

from benchmarks.common import (
    BENCH_DIR,
    ENRICH_BATCH,
    ENRICH_RECORDS,
    Context,
    Result,
    median,
    python_env,
    raw_records,
    sample_mentions,
    say,
)

NAME = "enrichment"
KEYS = ("enrichment_ceiling_per_s", "enrichment_worker_rss_mib")
DESCRIPTION = "enrichment processor in-process (ceiling of one worker) and a worker's peak RSS"

ENRICH_RUNS = 3
RSS_RECORDS = 1_000


def measure_ceiling(ctx: Context) -> list[float]:
    """`EnrichmentProcessor.enrich` over 10,000 sample texts in batches, mentions/s, per run."""
    if ctx.ceiling_rates:
        return ctx.ceiling_rates
    now = datetime.now(timezone.utc)
    records = raw_records(sample_mentions(ENRICH_RECORDS), now)
    processor = ctx.processor()
    processor.enrich(records[:ENRICH_BATCH], now)  # warm-up, not timed: first-call allocations
    for attempt in range(ENRICH_RUNS):
        enriched = 0
        started = time.perf_counter()
        for i in range(0, len(records), ENRICH_BATCH):
            enriched += len(processor.enrich(records[i:i + ENRICH_BATCH], now))
        elapsed = time.perf_counter() - started
        if enriched != len(records):
            raise RuntimeError(f"enrich returned {enriched} records for {len(records)}")
        ctx.ceiling_rates.append(enriched / elapsed)
        say(f"  ceiling run {attempt + 1}/{ENRICH_RUNS}: {enriched} mentions in {elapsed:.2f}s = {ctx.ceiling_rates[-1]:,.1f}/s")
    return ctx.ceiling_rates


def run(ctx: Context) -> Result:
    rates = measure_ceiling(ctx)
    say(f"  peak RSS of a fresh worker enriching {RSS_RECORDS} mentions...")
    env = python_env()
    proc = subprocess.run([sys.executable, str(BENCH_DIR / "enrichment_rss_worker.py"), str(RSS_RECORDS), str(ENRICH_BATCH)],
                          env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS worker exited with {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    worker = json.loads(proc.stdout.strip().splitlines()[-1])
    if worker["enriched"] != RSS_RECORDS:
        raise RuntimeError(f"RSS worker enriched {worker['enriched']} of {RSS_RECORDS}")
    say(f"  worker peak RSS {worker['peak_rss_mib']} MiB")
    return Result({"enrichment_ceiling_per_s": round(median(rates), 1),
                   "enrichment_worker_rss_mib": worker["peak_rss_mib"]},
                  {"enrichment_ceiling_per_s": len(rates), "enrichment_worker_rss_mib": 1})
