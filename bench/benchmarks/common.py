"""What the benchmarks share: paths, sizes several of them use, the progress printer, the result and
context types, the bundled sample as mentions and records, and one service process on a fresh
broker. The broker, PostgreSQL and webhook receiver context managers are in earful_dev.bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO / "services"
BENCH_DIR = REPO / "bench"
POSTGRES_DATA_DIR = REPO / ".earful" / "postgres"  # the embedded server `earful run` uses, when there is no other

ENRICH_RECORDS = 10_000  # tweet-length texts: the bundled sample (2,233 mentions), cycled
ENRICH_BATCH = 256  # = the EARFUL_ENRICH_BATCH_SIZE default

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def fmt_runs(values: list[float], unit: str) -> str:
    return ", ".join(f"{v:,.1f}" for v in values) + f" {unit}"


@dataclass
class Result:
    """What one benchmark's `run` returns: its metrics and the number of runs behind each."""

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


def python_env() -> dict[str, str]:
    """This environment with services/ on PYTHONPATH, for child interpreters (works without an install)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVICES_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def sample_mentions(limit: int | None = None) -> list[dict[str, Any]]:
    """The bundled sample's mentions, cycled up to `limit` (each copy with its own source_id)."""
    from earful_dev.sample.generator import read_stream

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

@contextlib.contextmanager
def service_on_fresh_broker(ctx: Context, name: str, extra_env: dict[str, str] | None = None,
                            service: str | None = None) -> Iterator[tuple[Any, Any]]:
    """A new in-memory broker with every topic created and one service process ready on it;
    both are stopped on the way out. Yields (service, broker)."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful_dev.bench import local_broker
    from earful_dev.stack.broker import free_port
    from earful_dev.stack.processes import ServiceProcess, service_env

    service = service or name
    log_dir = ctx.work_dir / name
    log_dir.mkdir(parents=True, exist_ok=True)
    with local_broker(log_dir / "broker.log") as broker:
        asyncio.run(create_topics(Settings(kafka_bootstrap=broker.bootstrap)))
        port = free_port()
        svc = ServiceProcess(service, port, service_env({**service_base_env(broker.bootstrap), **(extra_env or {})}, service, port),
                             log_dir / f"{service}.log")
        try:
            started = time.monotonic()
            svc.start()
            svc.wait_ready(120)
            say(f"  {name} service ready in {time.monotonic() - started:.1f}s (broker {broker.bootstrap})")
            yield svc, broker
        finally:
            code = svc.stop()
            if code not in (0, None):
                say(f"  warning: {name} exited with {code}; log: {svc.log_path}")

