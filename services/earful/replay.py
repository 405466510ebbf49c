"""`earful replay`: recorded mentions into the pipeline, as fast as possible or paced by their event time.

Two ways in: through an ingest API (`replay`, what `make run` / `make demo` use; each batch is
retried until ingest accepts it: 503, 429 and connection errors back off and retry, nothing is
dropped; a 4xx is reported with ingest's message and counted as rejected), or straight to the
broker (`replay_to_kafka`, for backfills: the ingest service's own publisher with dedup and
acks=all, records marked ``connector=replay`` and the file's content type).

It sits beside the CLI rather than inside a service because it drives ingest from outside: the
images run it (`docker compose --profile demo up replay`), and the local stack replays with it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from earful.core.errors import ValidationError
from earful.core.kafka import Codecs, start_producer
from earful.core.mention import MentionIn, to_record
from earful.core.settings import Settings
from earful.ingest.__main__ import build_publisher
from earful.ingest.connectors.replay import MentionFile, parse_mapping
from earful.ingest.publisher import FETCHED

AcceptHook = Callable[[list[dict[str, Any]], float], None]


@dataclass
class ReplayStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    retries: int = 0
    mention_ids: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _event_time(line: dict[str, Any]) -> float:
    created = line["mention"]["created_at"]
    if isinstance(created, datetime):
        return created.timestamp()
    return datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()


async def paced_batches(lines: Iterable[dict[str, Any]], speed: float, batch_size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of up to `batch_size` lines; with speed > 0, each line is released at speed × its event time."""
    started = time.monotonic()
    first_event: float | None = None
    batch: list[dict[str, Any]] = []
    for line in lines:
        if speed > 0:
            t = _event_time(line)
            first_event = t if first_event is None else first_event
            wait = started + (t - first_event) / speed - time.monotonic()
            if wait > 0:
                if batch:
                    yield batch
                    batch = []
                await asyncio.sleep(wait)
        batch.append(line)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


async def replay(
    lines: Iterable[dict[str, Any]],
    ingest_url: str,
    speed: float = 0.0,
    batch_size: int = 100,
    on_accepted: AcceptHook | None = None,
    progress: Callable[[str], None] | None = None,
    max_retries: int = 60,
    api_key: str | None = None,
) -> ReplayStats:
    """POST `lines` ({"mention": ..., ...}) to an ingest API in order; pace them at `speed` × event time if > 0."""
    stats = ReplayStats()
    started = time.monotonic()
    headers = {"X-Earful-Connector": "replay", **({"X-API-Key": api_key} if api_key else {})}
    async with httpx.AsyncClient(base_url=ingest_url, timeout=30.0, headers=headers) as client:
        async for batch in paced_batches(lines, speed, batch_size):
            await _post(client, batch, stats, on_accepted, max_retries)
            if progress and stats.sent // 500 != (stats.sent - len(batch)) // 500:
                progress(f"replayed {stats.sent} mentions ({stats.accepted} accepted)")
    stats.elapsed_s = time.monotonic() - started
    return stats


async def _post(client: httpx.AsyncClient, batch: list[dict[str, Any]], stats: ReplayStats,
                on_accepted: AcceptHook | None, max_retries: int) -> None:
    body = {"mentions": [line["mention"] for line in batch]}
    stats.sent += len(batch)
    reason = "no attempt"
    for attempt in range(max_retries + 1):
        wait = min(5.0, 0.2 * 2 ** attempt)
        try:
            resp = await client.post("/v1/mentions", json=body)
        except httpx.HTTPError as exc:
            reason = repr(exc)
        else:
            if resp.status_code == 202:
                now = time.time()
                answer = resp.json()
                stats.accepted += len(batch)
                stats.duplicates += int(answer.get("duplicates", 0))
                stats.mention_ids += answer["mention_ids"]
                if on_accepted:
                    on_accepted(batch, now)
                return
            if resp.status_code < 500 and resp.status_code != 429:
                stats.rejected += len(batch)
                print(f"ingest refused a batch ({resp.status_code}): {resp.text[:500]}", file=sys.stderr)
                return
            reason = f"HTTP {resp.status_code}"
            try:  # ingest says when to come back (429 rate limit, 503 busy or broker down)
                wait = max(wait, min(30.0, float(resp.headers.get("retry-after", 0))))
            except ValueError:
                pass
        stats.retries += 1
        await asyncio.sleep(wait)
    raise ValidationError(f"ingest did not accept a batch after {max_retries} retries ({reason})")


async def replay_to_kafka(lines: Iterable[dict[str, Any]], settings: Settings, content_type: str, speed: float = 0.0,
                          batch_size: int = 500, on_accepted: AcceptHook | None = None) -> ReplayStats:
    """Produce `lines` straight to the raw topic with the ingest publisher (dedup, acks=all, retries)."""
    stats = ReplayStats()
    producer = await start_producer(settings, "earful-replay")
    publisher = build_publisher(settings, producer, Codecs(settings))
    never = asyncio.Event()
    started = time.monotonic()
    try:
        async for batch in paced_batches(lines, speed, batch_size):
            now = datetime.now(timezone.utc)
            records = [to_record(line.get("validated") or MentionIn.model_validate(line["mention"]), now, connector="replay",
                                 content_type=content_type, fetched_at=now) for line in batch]
            FETCHED.labels("replay").inc(len(records))
            stats.sent += len(records)
            result = await publisher.publish_until_done(records, "replay", never, max_backoff_s=10.0)
            stats.accepted += len(records)
            stats.duplicates += result.duplicates
            stats.mention_ids += result.mention_ids
            if on_accepted:
                on_accepted(batch, time.time())
    finally:
        await producer.stop()
    stats.elapsed_s = time.monotonic() - started
    return stats


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


class _Progress:
    """A progress bar on a terminal (bytes of the file read, mentions accepted); periodic lines otherwise."""

    def __init__(self, total_bytes: int, label: str, enabled: bool) -> None:
        self.total = total_bytes
        self.enabled = enabled
        self.bar = None
        self._last_line = 0.0
        if enabled and sys.stderr.isatty() and _columns() > 0:  # a zero-width pseudo-terminal shows no bar: lines then
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=label, file=sys.stderr, ncols=min(_columns(), 120))

    def update(self, position: int, accepted: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(position - self.bar.n)
            self.bar.set_postfix(accepted=accepted, refresh=False)
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            pct = 100.0 * position / self.total if self.total else 100.0
            print(f"replayed {accepted} mentions ({pct:.0f}% of the file)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def replay_cli(path: Path, ingest_url: str, speed: float, batch_size: int, *, settings: Settings | None = None,
               to_kafka: bool = False, fmt: str = "auto", source: str = "import", mapping: list[str] | None = None,
               progress: bool = True) -> int:
    """`earful replay`: a JSONL/CSV file into an ingest API or straight to Kafka."""
    if speed < 0:
        raise ValidationError(f"--speed {speed:g}: must be 0 (as fast as possible) or more (1 = original speed)")
    if batch_size < 1:
        raise ValidationError(f"--batch {batch_size}: must be at least 1")
    settings = settings or Settings()
    reader = MentionFile(path, fmt, source, parse_mapping(mapping or []),
                         settings.ingest_max_text_chars, settings.storage_retention_days)
    bar = _Progress(reader.size, reader.path.name, progress)

    accepted = [0]

    def on_accepted(batch: list[dict[str, Any]], at: float) -> None:
        accepted[0] += len(batch)
        bar.update(reader.position, accepted[0])

    try:
        if to_kafka:
            coro = replay_to_kafka(reader, settings, reader.content_type, speed, batch_size, on_accepted)
        else:
            coro = replay(reader, ingest_url, speed, batch_size, on_accepted=on_accepted,
                          api_key=next(iter(settings.ingest_api_key_map().values()), None))
        stats = asyncio.run(coro)
    finally:
        bar.close()
    for problem in reader.problems[:20]:
        print(f"{reader.path}:{problem.line}: {problem.message}", file=sys.stderr)
    if reader.bad > 20:
        print(f"... and {reader.bad - 20} more bad lines", file=sys.stderr)
    rate = stats.accepted / stats.elapsed_s if stats.elapsed_s else 0.0
    print(f"read {reader.lines} lines: sent {stats.sent}, accepted {stats.accepted} ({stats.duplicates} duplicates), "
          f"rejected {stats.rejected}, bad lines {reader.bad}, retries {stats.retries}, in {stats.elapsed_s:.1f}s "
          f"({rate:,.0f}/s)", file=sys.stderr)
    return 0 if stats.rejected == 0 and reader.bad == 0 else 1
