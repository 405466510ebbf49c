"""`earful enrich --in IN.jsonl --out OUT.jsonl`: the enrichment processor over a file.

Each input line is one mention, either the minimal shape
`{"id": ..., "text": ..., "lang"?: ..., "source"?: ..., "author"?: ..., "created_at"?: ...}`
or the ingest API's shape (recognised by its `source_id`). Each output line is
`{"id", "lang", "lang_confidence", "entities", "sentiment", "risks", "watchlists", "matches",
"models", "enriched_at"}` in input order. A line that is not valid is reported on stderr with its
line number and skipped; the exit status is 1 if any line was refused, else 0. Progress goes to
stderr every few seconds on long inputs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from earful.core.errors import ValidationError
from earful.core.kafka import utc_now
from earful.core.mention import AuthorIn, MentionIn, check_text, format_problems, to_record
from earful.core.settings import Settings
from earful.enrichment.processor import EnrichmentProcessor

PROGRESS_EVERY_S = 2.0


class MinimalMentionIn(BaseModel):
    """The batch command's own input shape: an id and a text, the rest optional."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=256)
    text: str = Field(..., min_length=1)
    lang: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})?$")
    source: str | None = Field(None, max_length=32)
    author: str | AuthorIn | None = None
    created_at: AwareDatetime | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        return check_text(v)


def _minimal_record(m: MinimalMentionIn, now: datetime) -> dict[str, Any]:
    author = m.author if isinstance(m.author, AuthorIn) else AuthorIn(handle=m.author)
    return {
        "schema_version": 2, "mention_id": m.id, "source": (m.source or "file").lower(), "source_id": m.id,
        "url": None, "author": author.model_dump(), "text": m.text, "lang": m.lang,
        "created_at": (m.created_at or now).astimezone(timezone.utc), "received_at": now,
        "in_reply_to": None, "reposted_from": None,
        "engagement": {"likes": 0, "reposts": 0, "replies": 0, "observed_at": None},
        "title": None, "country": None, "connector": "file", "content_type": "application/x-ndjson", "fetched_at": None,
    }


def parse_line(line: str, now: datetime) -> dict[str, Any]:
    """One input line → a raw mention record; raises ValidationError naming every problem."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}")
    try:
        if "source_id" in data:
            return to_record(MentionIn.model_validate(data), now)
        return _minimal_record(MinimalMentionIn.model_validate(data), now)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{p['path']}: {p['message']}" for p in format_problems(exc.errors()))
        raise ValidationError(problems) from exc


def to_output(enriched: dict[str, Any]) -> dict[str, Any]:
    """The enriched record in the batch command's flat output shape."""
    return {
        "id": enriched["mention"]["mention_id"],
        "lang": enriched["language"]["code"],
        "lang_confidence": enriched["language"]["confidence"],
        "entities": enriched["entities"],
        "sentiment": enriched["sentiment"],
        "risks": enriched["risks"],
        "watchlists": enriched["watchlist_ids"],
        "matches": enriched["matches"],
        "models": enriched["models"],
        "enriched_at": enriched["enriched_at"].isoformat().replace("+00:00", "Z"),
    }


def _read(path: Path, refused: list[str]) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="strict") as f:
        n = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as exc:
                refused.append(f"{path}:{n + 1}: not UTF-8 ({exc.reason}); the rest of the file was not read")
                return
            if not line:
                return
            n += 1
            if not line.strip():
                continue
            try:
                yield parse_line(line, utc_now())
            except ValidationError as exc:
                refused.append(f"{path}:{n}: {exc}")
                print(f"refused {path}:{n}: {exc}", file=sys.stderr, flush=True)


def enrich_file(inp: Path, out: Path, settings: Settings, batch_size: int = 256) -> int:
    """Enrich every valid line of `inp` into `out`; 1 if any line was refused, else 0."""
    if not inp.is_file():
        raise ValidationError(f"input file {inp} does not exist")
    started = time.monotonic()
    processor = EnrichmentProcessor.from_settings(settings)
    print(f"loaded the enrichment models in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    refused: list[str] = []
    done, started, last_report = 0, time.monotonic(), time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as sink:
        batch: list[dict[str, Any]] = []
        for record in _read(inp, refused):
            batch.append(record)
            if len(batch) >= batch_size:
                done += _flush(processor, batch, sink)
                if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    last_report = time.monotonic()
                    rate = done / max(1e-9, last_report - started)
                    print(f"enriched {done} mentions ({rate:.0f}/s)", file=sys.stderr, flush=True)
        done += _flush(processor, batch, sink)
    elapsed = time.monotonic() - started
    print(f"enriched {done} mentions in {elapsed:.1f}s ({done / max(elapsed, 1e-9):.0f}/s); refused {len(refused)}; "
          f"wrote {out}", file=sys.stderr)
    return 1 if refused else 0


def _flush(processor: EnrichmentProcessor, batch: list[dict[str, Any]], sink: TextIO) -> int:
    if not batch:
        return 0
    for enriched in processor.enrich(batch, utc_now()):
        sink.write(json.dumps(to_output(enriched), ensure_ascii=False) + "\n")
    n = len(batch)
    batch.clear()
    return n
