"""Replay a recorded stream into an ingest API, optionally at a speed-up of its event time.

Each batch is retried until ingest accepts it (503 and connection errors back off and retry;
nothing is dropped); a 4xx is reported with ingest's message and counted as rejected.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from earful.core.errors import ValidationError

AcceptHook = Callable[[list[dict[str, Any]], float], None]


@dataclass
class ReplayStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    mention_ids: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _event_time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["mention"]["created_at"].replace("Z", "+00:00")).timestamp()


async def replay(
    lines: Iterable[dict[str, Any]],
    ingest_url: str,
    speed: float = 0.0,
    batch_size: int = 100,
    on_accepted: AcceptHook | None = None,
    progress: Callable[[str], None] | None = None,
    max_retries: int = 60,
) -> ReplayStats:
    """POST `lines` ({"mention": ..., ...}) in order; pace them at `speed` × event time if > 0."""
    stats = ReplayStats()
    started = time.monotonic()
    first_event: float | None = None
    batch: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=ingest_url, timeout=30.0) as client:

        async def flush() -> None:
            if not batch:
                return
            await _post(client, batch, stats, on_accepted, max_retries)
            if progress and stats.sent // 500 != (stats.sent - len(batch)) // 500:
                progress(f"replayed {stats.sent} mentions ({stats.accepted} accepted)")
            batch.clear()

        for line in lines:
            if speed > 0:
                t = _event_time(line)
                first_event = t if first_event is None else first_event
                wait = started + (t - first_event) / speed - time.monotonic()
                if wait > 0:
                    await flush()
                    await asyncio.sleep(wait)
            batch.append(line)
            if len(batch) >= batch_size:
                await flush()
        await flush()
    stats.elapsed_s = time.monotonic() - started
    return stats


async def _post(client: httpx.AsyncClient, batch: list[dict[str, Any]], stats: ReplayStats,
                on_accepted: AcceptHook | None, max_retries: int) -> None:
    body = {"mentions": [line["mention"] for line in batch]}
    stats.sent += len(batch)
    for attempt in range(max_retries + 1):
        try:
            resp = await client.post("/v1/mentions", json=body)
        except httpx.HTTPError as exc:
            reason = repr(exc)
        else:
            if resp.status_code == 202:
                now = time.time()
                stats.accepted += len(batch)
                stats.mention_ids += resp.json()["mention_ids"]
                if on_accepted:
                    on_accepted(batch, now)
                return
            if resp.status_code < 500 and resp.status_code != 429:
                stats.rejected += len(batch)
                print(f"ingest refused a batch ({resp.status_code}): {resp.text[:500]}", file=sys.stderr)
                return
            reason = f"HTTP {resp.status_code}"
        stats.retries += 1
        await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))
    raise ValidationError(f"ingest did not accept a batch after {max_retries} retries ({reason})")


def replay_cli(path: Path | None, ingest_url: str, speed: float, batch_size: int) -> int:
    """`earful replay`: replay a stream file (default: the bundled sample)."""
    from earful.sample.generator import read_stream

    if path is not None and not path.is_file():
        raise ValidationError(f"stream file {path} does not exist")
    stats = asyncio.run(replay(read_stream(path), ingest_url, speed, batch_size,
                               progress=lambda m: print(m, file=sys.stderr, flush=True)))
    print(f"sent {stats.sent}, accepted {stats.accepted}, rejected {stats.rejected}, retries {stats.retries}, "
          f"in {stats.elapsed_s:.1f}s", file=sys.stderr)
    return 0 if stats.rejected == 0 else 1
