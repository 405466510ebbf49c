"""`replay`: a 100,000-line JSONL file straight to the broker (validate, encode, dedup, acks=all)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from benchmarks.common import Context, Result, median, sample_mentions, say

NAME = "replay"
KEYS = ("replay_per_s",)
DESCRIPTION = "a 100,000-line JSONL file replayed straight to the broker"

REPLAY_LINES = 100_000
REPLAY_BATCH = 500
REPLAY_RUNS = 3


def _write_file(path: Path, mentions: list[dict[str, Any]], attempt: int) -> None:
    """REPLAY_LINES sample mentions with new source ids each run, so nothing is a duplicate."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(REPLAY_LINES):
            m = mentions[i % len(mentions)]
            f.write(json.dumps({"mention": dict(m, source_id=f"{m['source_id']}-r{attempt}-{i}")}, ensure_ascii=False) + "\n")


def run(ctx: Context) -> Result:
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful.ingest.connectors.replay import MentionFile
    from earful.replay import replay_to_kafka
    from earful_dev.bench import local_broker

    mentions = sample_mentions()
    log_dir = ctx.work_dir / "replay"
    log_dir.mkdir(parents=True, exist_ok=True)
    rates = []
    with local_broker(log_dir / "broker.log") as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(create_topics(settings))
        for attempt in range(REPLAY_RUNS):
            path = log_dir / f"replay-{attempt}.jsonl"
            _write_file(path, mentions, attempt)
            if attempt == 0:
                say(f"  {REPLAY_LINES:,} lines ({path.stat().st_size / 2**20:.1f} MiB) per run, batches of {REPLAY_BATCH}, "
                    f"broker {broker.bootstrap}")
            reader = MentionFile(path)
            stats = asyncio.run(replay_to_kafka(reader, settings, reader.content_type, batch_size=REPLAY_BATCH))
            if stats.accepted != REPLAY_LINES or reader.bad:
                raise RuntimeError(f"run {attempt + 1}: {stats.accepted} accepted, {reader.bad} bad lines of {REPLAY_LINES}")
            rates.append(stats.accepted / stats.elapsed_s)
            say(f"  run {attempt + 1}/{REPLAY_RUNS}: {stats.accepted:,} acknowledged in {stats.elapsed_s:.2f}s = {rates[-1]:,.0f}/s")
            path.unlink()
    return Result({"replay_per_s": round(median(rates), 1)}, {"replay_per_s": len(rates)})
