"""`earful enrich --in IN.jsonl --out OUT.jsonl`: the enrichment processor over a file.

Input lines are mentions in the ingest API's shape; each output line is the enriched mention
(the EnrichedMention schema as JSON, timestamps RFC 3339). Invalid lines are reported with
their line number on stderr and skipped; the exit code is 1 if any line was refused.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError as PydanticValidationError

from earful.core.errors import ValidationError
from earful.core.kafka import utc_now
from earful.core.settings import Settings
from earful.enrichment.processor import EnrichmentProcessor
from earful.ingest.model import MentionIn, format_problems, to_record
from earful.watchlists import WatchlistSet


def to_json(value: Any) -> Any:
    """Avro-shaped record → JSON-ready (datetimes as RFC 3339 UTC)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def _read(path: Path, refused: list[str]) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield to_record(MentionIn.model_validate_json(line), utc_now())
            except PydanticValidationError as exc:
                problems = "; ".join(f"{p['path']}: {p['message']}" for p in format_problems(exc.errors()))
                refused.append(f"{path}:{n}: {problems}")


def enrich_file(inp: Path, out: Path, settings: Settings, batch_size: int = 256) -> int:
    if not inp.is_file():
        raise ValidationError(f"input file {inp} does not exist")
    processor = EnrichmentProcessor(WatchlistSet.from_file(settings.watchlists_file), settings.spacy_model)
    refused: list[str] = []
    done, started = 0, time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as sink:
        batch: list[dict[str, Any]] = []
        for record in _read(inp, refused):
            batch.append(record)
            if len(batch) >= batch_size:
                done += _flush(processor, batch, sink)
                rate = done / max(1e-9, time.monotonic() - started)
                print(f"enriched {done} mentions ({rate:.0f}/s)", file=sys.stderr)
        done += _flush(processor, batch, sink)
    for line in refused:
        print(f"refused {line}", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"enriched {done} mentions in {elapsed:.1f}s ({done / max(elapsed, 1e-9):.0f}/s); refused {len(refused)}; wrote {out}",
          file=sys.stderr)
    return 1 if refused else 0


def _flush(processor: EnrichmentProcessor, batch: list[dict[str, Any]], sink: Any) -> int:
    if not batch:
        return 0
    for enriched in processor.enrich(batch, utc_now()):
        sink.write(json.dumps(to_json(enriched), ensure_ascii=False) + "\n")
    n = len(batch)
    batch.clear()
    return n
