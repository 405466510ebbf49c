"""Corrections: people correct (or confirm) a stored mention's sentiment, entities or risk/intent tags.

One transaction per request (`apply_correction`, used by the API and by `earful corrections add`):

* the mention's row is locked, so corrections of one mention are serialised, and the erasure
  lock is shared as the writer shares it, so an erasure never interleaves;
* each corrected field gets an append-only row in `corrections` (migration 008) with who, when,
  the stored value it replaced, the model's original value and the model version that produced it;
  a later row for the same (mention, field) supersedes the earlier one, which stays;
* the corrected value is applied to the mention (columns and filter facets), and every rollup that
  counts the field is adjusted by the difference between the old and the new value: the mention's
  old contribution is subtracted and the new one added (volume and watchlist rollups by sentiment,
  authors' positive/negative counts, entity rollups and totals, customer questions), exactly what
  the writer would have counted had the mention arrived with the corrected values, so a recount
  from `mentions` still agrees (earful.storage.contributions, which re-scoring and back-fill share).

Retries do not double-count: an adjustment is computed from the value stored now, so applying the
same value again changes nothing; a request that repeats the correction in force (same value, same
person, same note) stores no new row; and a request repeating an `Idempotency-Key` gets what the
first one stored. Publishing to `earful.corrections.v1` happens after the commit (outbox.py).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import asyncpg
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from earful.core.errors import EarfulError, ValidationError
from earful.core.vocabulary import ENTITY_TYPES, MAX_ENTITY_CHARS, TAGS
from earful.storage.contributions import Contribution, move_contributions
from earful.storage.writer import ERASURE_LOCK, BrandHandles, facets

log = logging.getLogger(__name__)

FIELDS: tuple[str, ...] = ("sentiment", "entities", "risks")
SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
#: The key of the mention's `models` provenance that names the model behind each field.
MODEL_KEYS = {"sentiment": "sentiment", "entities": "ner", "risks": "risk"}
#: A corrected label's polarity (sentiment_score); its probabilities are one-hot.
SCORES = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
#: `origin` of an entity a person added (spans the model had keep their own origin).
CORRECTION_ORIGIN = "correction"
QUESTION_TAG = "customer_question"
MAX_ENTITIES = 200
MAX_NOTE_CHARS = 2000
MAX_BY_CHARS = 100
_ATTEMPTS = 3  # a deadlock with a concurrent batch or correction is retried this often

Field_ = Literal["sentiment", "entities", "risks"]
Sentiment = Literal["negative", "neutral", "positive"]

CORRECTIONS = Counter("earful_corrections_total",
                      "Corrections stored, by field and outcome: corrected (changed the model's value), confirmed "
                      "(agreed with it) or repeated (a retry; nothing stored).", ["field", "outcome"])
FAILURES = Counter("earful_correction_failures_total",
                   "Corrections refused or not yet published, by failure kind (validation_error, not_found, conflict, "
                   "broker_error, encode_error, storage_error).", ["kind"])


# --- errors -----------------------------------------------------------------------------------------


class MentionNotFound(EarfulError):
    """No stored mention has this id (never stored, expired, or erased)."""

    kind = "not_found"


class CorrectionConflict(EarfulError):
    """An Idempotency-Key already used for a different correction."""

    kind = "conflict"


class CorrectionInvalid(ValidationError):
    """A correction that does not fit its mention (an entity span that is not the mention's text)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


# --- the request ------------------------------------------------------------------------------------


class EntitySpan(BaseModel):
    """One entity of the corrected list: a span of the mention's text and its type."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_ENTITY_CHARS, description="Exactly the mention's text from start to end.")
    type: Literal[ENTITY_TYPES] = Field(description="Entity type.")  # type: ignore[valid-type]  # Literal of a tuple built at run time: pydantic reads the values, mypy cannot
    start: int = Field(ge=0, description="Start offset in the mention's text, in Unicode code points.")
    end: int = Field(gt=0, description="End offset (exclusive), in Unicode code points.")

    @model_validator(mode="after")
    def _span(self) -> EntitySpan:
        if self.end - self.start != len(self.text):
            raise ValueError(f"end - start must be the length of text ({len(self.text)} code points)")
        return self


class CorrectionRequest(BaseModel):
    """What a person says is right for a mention; at least one of sentiment, entities, risks."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"sentiment": "negative", "risks": ["complaint", "operational"], "by": "jane", "note": "outage complaint"}]})

    sentiment: Sentiment | None = Field(None, description="The right sentiment class.")
    entities: list[EntitySpan] | None = Field(
        None, max_length=MAX_ENTITIES,
        description="The mention's complete list of entities (send the ones the model had right too; [] = none).")
    risks: list[Literal[TAGS]] | None = Field(  # type: ignore[valid-type]  # as above
        None, max_length=len(TAGS), description="The mention's complete set of risk and intent tags ([] = none).")
    by: str | None = Field(None, min_length=1, max_length=MAX_BY_CHARS,
                           description="Who is correcting (default: the API key's identity).")
    note: str | None = Field(None, min_length=1, max_length=MAX_NOTE_CHARS, description="Why, for the audit trail.")

    @field_validator("risks")
    @classmethod
    def _distinct_tags(cls, risks: list[str] | None) -> list[str] | None:
        if risks is not None and len(set(risks)) != len(risks):
            raise ValueError("a tag is listed twice")
        return risks

    @field_validator("by")
    @classmethod
    def _printable(cls, by: str | None) -> str | None:
        if by is not None and (not by.isprintable() or not by.strip()):
            raise ValueError("must be a name without control characters")
        return by

    @model_validator(mode="after")
    def _something(self) -> CorrectionRequest:
        if self.sentiment is None and self.entities is None and self.risks is None:
            raise ValueError("give at least one of sentiment, entities, risks")
        return self

    def values(self) -> dict[str, Any]:
        """field → normalised value, for the fields given, in FIELDS order."""
        out: dict[str, Any] = {}
        if self.sentiment is not None:
            out["sentiment"] = self.sentiment
        if self.entities is not None:
            out["entities"] = normalise_entities(e.model_dump() for e in self.entities)
        if self.risks is not None:
            out["risks"] = normalise_risks(self.risks)
        return out


def duplicate_spans(entities: Sequence[EntitySpan]) -> list[int]:
    """Indexes of entities that repeat an earlier one's (type, start, end)."""
    seen: set[tuple[str, int, int]] = set()
    out = []
    for i, e in enumerate(entities):
        key = (e.type, e.start, e.end)
        if key in seen:
            out.append(i)
        seen.add(key)
    return out


def check_spans(request: CorrectionRequest) -> None:
    """No entity twice (same type and span): CorrectionInvalid naming the repeat. Needs no mention."""
    for i in duplicate_spans(request.entities or ()):
        raise CorrectionInvalid(("body", "entities", i), "repeats an earlier entity's type, start and end")


def check_against_text(request: CorrectionRequest, text: str) -> None:
    """Every entity span must be the mention's text at its offsets (CorrectionInvalid naming the entity)."""
    for i, e in enumerate(request.entities or ()):
        if e.end > len(text):
            raise CorrectionInvalid(("body", "entities", i, "end"),
                                    f"beyond the end of the mention's text ({len(text)} code points)")
        if text[e.start:e.end] != e.text:
            raise CorrectionInvalid(("body", "entities", i, "text"),
                                    f"the mention's text at {e.start}-{e.end} is {text[e.start:e.end]!r}, not {e.text!r}")


# --- normalised values (equal means equal) ------------------------------------------------------------


def normalise_entities(entities: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """{text, type, start, end} of each distinct span, sorted by (start, end, type); `origin` dropped."""
    spans = {(int(e["start"]), int(e["end"]), str(e["type"]), str(e["text"])) for e in entities}
    return [{"text": t, "type": k, "start": s, "end": n} for s, n, k, t in sorted(spans)]


def normalise_risks(risks: Iterable[Any]) -> list[str]:
    """The distinct tags, sorted (from tag strings or the stored {tag, evidence, ...} entries)."""
    return sorted({r["tag"] if isinstance(r, Mapping) else str(r) for r in risks})


def stored_value(field: str, mention: Mapping[str, Any]) -> Any:
    """The normalised value of `field` as the mention holds it now."""
    if field == "sentiment":
        return mention["sentiment"]
    if field == "entities":
        return normalise_entities(_json(mention["entities"]))
    return normalise_risks(_json(mention["risks"]))


def applied_entities(spans: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The mention's new `entities`: each corrected span, with the origin the model gave it if it had
    the same span, else 'correction'."""
    origins = {(e["text"], e["type"], e["start"], e["end"]): e.get("origin", CORRECTION_ORIGIN) for e in stored}
    return [{**s, "origin": origins.get((s["text"], s["type"], s["start"], s["end"]), CORRECTION_ORIGIN)} for s in spans]


def applied_risks(tags: Sequence[str], stored: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The mention's new `risks`: the model's entries for the tags kept (with their evidence), then one
    entry without evidence per tag a person added."""
    kept = [dict(r) for r in stored if r["tag"] in tags]
    have = {r["tag"] for r in kept}
    return kept + [{"tag": t, "evidence": "", "start": 0, "end": 0} for t in tags if t not in have]


def sentiment_columns(label: str) -> tuple[str, float, str, None]:
    """(sentiment, sentiment_score, sentiment_probabilities, sentiment_reason) of a corrected label:
    a person's label is certain, so its probabilities are one-hot."""
    return label, SCORES[label], json.dumps({c: 1.0 if c == label else 0.0 for c in SENTIMENT_LABELS}), None


def author_key(handle: str | None, author_id: str | None) -> str | None:
    """The key of author_rollups_day (lower-case handle, else 'id:' + id; None without either)."""
    if handle:
        return handle.lower()
    return f"id:{author_id}" if author_id else None


def canonical(field: str, value: Any) -> Any:
    """A stored value (jsonb text) decoded, entities with their keys in the documented order (jsonb
    keeps its own)."""
    value = _json(value)
    return normalise_entities(value) if field == "entities" and value is not None else value


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- stored corrections -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """One row of `corrections`, values decoded."""

    id: int
    mention_id: str
    source: str
    source_id: str
    mention_created_at: datetime
    watchlist_ids: list[str]
    lang: str
    field: str
    model_value: Any
    previous_value: Any
    value: Any
    agrees: bool
    model_version: str
    supersedes: int | None
    corrected_by: str
    principal: str
    note: str | None
    created_at: datetime
    published_at: datetime | None
    superseded_by: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Correction:
        return cls(
            id=int(row["id"]), mention_id=str(row["mention_id"]), source=row["source"], source_id=row["source_id"],
            mention_created_at=row["mention_created_at"], watchlist_ids=list(row["watchlist_ids"]), lang=row["lang"],
            field=row["field"], model_value=canonical(row["field"], row["model_value"]),
            previous_value=canonical(row["field"], row["previous_value"]), value=canonical(row["field"], row["value"]),
            agrees=bool(row["agrees"]), model_version=row["model_version"],
            supersedes=row["supersedes"], corrected_by=row["corrected_by"], principal=row["principal"], note=row["note"],
            created_at=row["created_at"], published_at=row["published_at"], superseded_by=row.get("superseded_by"))

    def to_json(self) -> dict[str, Any]:
        """The API's view of the correction."""
        return {
            "id": self.id, "mention_id": self.mention_id, "field": self.field, "value": self.value,
            "model_value": self.model_value, "previous_value": self.previous_value, "agrees": self.agrees,
            "model_version": self.model_version, "by": self.corrected_by, "principal": self.principal,
            "note": self.note, "corrected_at": iso(self.created_at), "supersedes": self.supersedes,
            "superseded_by": self.superseded_by, "watchlist_ids": self.watchlist_ids,
            "published_at": iso(self.published_at) if self.published_at else None,
        }

    def to_record(self) -> dict[str, Any]:
        """The Avro record of earful.corrections.v1 (schemas/correction.avsc)."""
        return {
            "schema_version": 1, "correction_id": self.id, "mention_id": self.mention_id, "source": self.source,
            "source_id": self.source_id, "mention_created_at": self.mention_created_at, "lang": self.lang,
            "watchlist_ids": self.watchlist_ids, "field": self.field, "value": _avro_value(self.field, self.value),
            "model_value": _avro_value(self.field, self.model_value), "agrees": self.agrees,
            "model_version": self.model_version, "corrected_by": self.corrected_by, "principal": self.principal,
            "note": self.note, "corrected_at": self.created_at, "supersedes": self.supersedes,
        }


def _avro_value(field: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(FIELDS)
    out[field] = value
    return out


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Applied:
    """What one correction request did."""

    mention_id: str
    corrections: list[Correction]  # one per field of the request, in FIELDS order
    mention: dict[str, Any]  # the mention's corrected fields as stored now
    new: frozenset[int] = frozenset()  # ids of the corrections this request stored (the others were in force)

    @property
    def created(self) -> bool:
        """Whether anything was stored (False: a retry, or a repeat of the corrections in force)."""
        return bool(self.new)


# --- applying a correction ------------------------------------------------------------------------------

_MENTION = """
SELECT mention_id, source, source_id, created_at, text, lang, sentiment, sentiment_score, sentiment_probabilities,
       sentiment_reason, entities, risks, models, watchlist_ids, author_id, author_handle, author_name, author_followers,
       owned_watchlist_ids, connector, likes, reposts, replies, engagement_observed_at, received_at
FROM mentions WHERE mention_id = $1 LIMIT 1 FOR UPDATE
"""
_LATEST = "SELECT DISTINCT ON (field) * FROM corrections WHERE mention_id = $1 ORDER BY field, id DESC"
_BY_KEY = "SELECT * FROM corrections WHERE principal = $1 AND idempotency_key = $2 ORDER BY id"
_INSERT = """
INSERT INTO corrections (mention_id, source, source_id, mention_created_at, watchlist_ids, lang, field, model_value,
                         previous_value, value, agrees, model_version, supersedes, corrected_by, principal, note,
                         idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11, $12, $13, $14, $15, $16, $17)
RETURNING *
"""
_UPDATE_MENTION = """
UPDATE mentions SET sentiment = $4, sentiment_score = $5, sentiment_probabilities = $6::jsonb, sentiment_reason = $7,
                    entities = $8::jsonb, risks = $9::jsonb, facets = $10
WHERE source = $1 AND source_id = $2 AND created_at = $3
"""


async def apply_correction(conn: asyncpg.Connection, mention_id: uuid.UUID, request: CorrectionRequest, *,
                           principal: str, idempotency_key: str | None = None,
                           brands: BrandHandles = BrandHandles()) -> Applied:
    """Store and apply one correction request in one transaction (see the module docstring).

    MentionNotFound, CorrectionInvalid (an entity span that is not the mention's text) and
    CorrectionConflict (an Idempotency-Key used for something else) change nothing. A deadlock
    with a concurrent write is retried.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with conn.transaction():
                applied = await _apply(conn, mention_id, request, principal, idempotency_key, brands)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            if attempt == _ATTEMPTS:
                raise
            log.info("correction retried after a deadlock", extra={"mention_id": str(mention_id), "attempt": attempt})
            continue
        except asyncpg.UniqueViolationError as exc:
            # The same Idempotency-Key committed by a concurrent request: the next attempt finds it.
            if idempotency_key is None or attempt == _ATTEMPTS:
                raise
            log.info("concurrent request with the same Idempotency-Key", extra={"error": str(exc)})
            continue
        for c in applied.corrections:
            CORRECTIONS.labels(c.field, "repeated" if c.id not in applied.new else
                               "confirmed" if c.agrees else "corrected").inc()
        return applied
    raise AssertionError("unreachable")


async def _apply(conn: asyncpg.Connection, mention_id: uuid.UUID, request: CorrectionRequest, principal: str,
                 idempotency_key: str | None, brands: BrandHandles) -> Applied:
    check_spans(request)
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ERASURE_LOCK)
    mention = await conn.fetchrow(_MENTION, mention_id)
    if mention is None:
        raise MentionNotFound(f"no stored mention {mention_id}")
    wanted = request.values()
    by = request.by or principal
    if idempotency_key is not None:
        replay = await _replay(conn, mention, wanted, by, request.note, principal, idempotency_key)
        if replay is not None:
            return replay
    check_against_text(request, mention["text"])
    latest = {r["field"]: Correction.of(r) for r in await conn.fetch(_LATEST, mention_id)}
    models = _json(mention["models"]) or {}
    out, new = [], set()
    for field, value in wanted.items():
        before, current = latest.get(field), stored_value(field, mention)
        if before is not None and current == value and (before.value, before.corrected_by, before.principal,
                                                         before.note) == (value, by, principal, request.note):
            out.append(before)  # the correction in force, repeated: nothing to store
            continue
        model_value = before.model_value if before else current
        model_version = before.model_version if before else str(models.get(MODEL_KEYS[field], "unknown"))
        row = await conn.fetchrow(
            _INSERT, mention_id, mention["source"], mention["source_id"], mention["created_at"],
            list(mention["watchlist_ids"]), mention["lang"], field, _dumps(model_value), _dumps(current), _dumps(value),
            value == model_value, model_version, before.id if before else None, by, principal, request.note,
            idempotency_key)
        out.append(Correction.of(row))
        new.add(out[-1].id)
    after = await _apply_to_mention(conn, mention, wanted, brands)
    return Applied(str(mention_id), out, after, frozenset(new))


async def _replay(conn: asyncpg.Connection, mention: asyncpg.Record, wanted: dict[str, Any], by: str,
                  note: str | None, principal: str, key: str) -> Applied | None:
    """What a request with an Idempotency-Key seen before gets: the corrections stored then (the
    fields it did not store were already in force); CorrectionConflict if the key was used for
    another mention or another correction."""
    rows = [Correction.of(r) for r in await conn.fetch(_BY_KEY, principal, key)]
    if not rows:
        return None
    for c in rows:
        if c.mention_id != str(mention["mention_id"]) or c.field not in wanted or (c.value, c.corrected_by, c.note) != (
                wanted[c.field], by, note):
            raise CorrectionConflict(f"Idempotency-Key {key!r} was used for another correction ({c.id}); use a new key")
    stored = {c.field: c for c in rows}
    latest = {r["field"]: Correction.of(r) for r in await conn.fetch(_LATEST, mention["mention_id"])}
    corrections = [stored.get(f) or latest[f] for f in wanted if f in stored or f in latest]
    return Applied(str(mention["mention_id"]), corrections, _corrected_fields(mention))


def _corrected_fields(mention: Mapping[str, Any]) -> dict[str, Any]:
    return {"sentiment": mention["sentiment"], "sentiment_score": mention["sentiment_score"],
            "sentiment_probabilities": _json(mention["sentiment_probabilities"]),
            "entities": _json(mention["entities"]), "risks": _json(mention["risks"])}


async def _apply_to_mention(conn: asyncpg.Connection, mention: asyncpg.Record, wanted: dict[str, Any],
                            brands: BrandHandles) -> dict[str, Any]:
    """Write the corrected values to the mention and move its rollup contributions; returns its
    corrected fields as now stored."""
    now = _corrected_fields(mention)
    old_entities, old_risks = now["entities"], now["risks"]
    changed = {f for f, v in wanted.items() if v != stored_value(f, mention)}
    if not changed:
        return now
    label, score = mention["sentiment"], mention["sentiment_score"]
    probabilities, reason = mention["sentiment_probabilities"], mention["sentiment_reason"]
    if "sentiment" in changed:
        label, score, probabilities, reason = sentiment_columns(wanted["sentiment"])
    entities = applied_entities(wanted["entities"], old_entities) if "entities" in changed else old_entities
    risks = applied_risks(wanted["risks"], old_risks) if "risks" in changed else old_risks
    now.update(sentiment=label, sentiment_score=score, sentiment_probabilities=_json(probabilities),
               entities=entities, risks=risks)
    await conn.execute(_UPDATE_MENTION, mention["source"], mention["source_id"], mention["created_at"], label, score,
                       probabilities, reason, _dumps(entities), _dumps(risks),
                       facets(mention["watchlist_ids"], entities, risks))
    # Every rollup and the customer questions follow, as the writer would have counted the corrected mention.
    await move_contributions(conn, [(Contribution.of(mention), Contribution.of(mention, sentiment=label, entities=entities,
                                                                            risks=risks))], brands)
    return now


# --- reading corrections ----------------------------------------------------------------------------------

_SUPERSEDED_BY = ("(SELECT min(n.id) FROM corrections n WHERE n.mention_id = c.mention_id AND n.field = c.field"
                  " AND n.id > c.id) AS superseded_by")


async def mention_corrections(conn: asyncpg.Connection | asyncpg.Pool, mention_id: uuid.UUID) -> list[Correction] | None:
    """The audit trail of a mention, oldest first; None when neither the mention nor a correction exists."""
    rows = await conn.fetch(f"SELECT c.*, {_SUPERSEDED_BY} FROM corrections c WHERE c.mention_id = $1 ORDER BY c.id",
                            mention_id)
    if not rows and not await conn.fetchval("SELECT 1 FROM mentions WHERE mention_id = $1 LIMIT 1", mention_id):
        return None
    return [Correction.of(r) for r in rows]


@dataclass(frozen=True)
class CorrectionFilter:
    """Which corrections a listing or an export covers."""

    watchlist: str | None = None
    since: datetime | None = None
    field: str | None = None

    def where(self, first: int = 1) -> tuple[str, list[Any]]:
        """SQL conditions on `c` (always at least TRUE) and their values, numbered from `first`."""
        parts, args = ["TRUE"], []
        for sql, value in (("c.watchlist_ids @> ARRAY[${}]::text[]", self.watchlist),
                           ("c.created_at >= ${}", self.since), ("c.field = ${}", self.field)):
            if value is not None:
                args.append(value)
                parts.append(sql.format(first + len(args) - 1))
        return " AND ".join(parts), args


async def list_corrections(conn: asyncpg.Connection | asyncpg.Pool, kept: CorrectionFilter, before_id: int | None,
                           limit: int) -> list[Correction]:
    """Corrections newest first, `limit` of them after the keyset `before_id` (fetch limit + 1 to know
    whether there are more)."""
    where, args = kept.where()
    if before_id is not None:
        args.append(before_id)
        where += f" AND c.id < ${len(args)}"
    args.append(limit)
    rows = await conn.fetch(f"SELECT c.*, {_SUPERSEDED_BY} FROM corrections c WHERE {where}"
                            f" ORDER BY c.id DESC LIMIT ${len(args)}", *args)
    return [Correction.of(r) for r in rows]


async def latest_per_mention(conn: asyncpg.Connection | asyncpg.Pool, kept: CorrectionFilter) -> list[asyncpg.Record]:
    """(field, value, model_value, agrees) of the correction in force per (mention, field) among `kept`."""
    where, args = kept.where()
    return list(await conn.fetch(
        f"SELECT DISTINCT ON (c.mention_id, c.field) c.field, c.value, c.model_value, c.agrees FROM corrections c"
        f" WHERE {where} ORDER BY c.mention_id, c.field, c.id DESC", *args))


_EXPORT = """
SELECT DISTINCT ON (c.mention_id, c.field) c.mention_id, m.text, m.lang, c.field, c.value, c.model_value,
       c.model_version, c.corrected_by, c.created_at
FROM corrections c
JOIN mentions m ON m.source = c.source AND m.source_id = c.source_id AND m.created_at = c.mention_created_at
WHERE {where}
ORDER BY c.mention_id, c.field, c.id DESC
"""


def export_line(row: Mapping[str, Any]) -> dict[str, Any]:
    """One line of `earful corrections export` (the training-data format, docs/models.md)."""
    return {"mention_id": str(row["mention_id"]), "text": row["text"], "lang": row["lang"], "field": row["field"],
            "value": canonical(row["field"], row["value"]), "model_value": canonical(row["field"], row["model_value"]),
            "model_version": row["model_version"], "by": row["corrected_by"], "at": iso(row["created_at"])}


async def export_lines(conn: asyncpg.Connection, kept: CorrectionFilter) -> AsyncIterator[dict[str, Any]]:
    """The correction in force per (mention, field) with the mention's text, streamed (inside a
    transaction, as a server-side cursor needs); corrections whose mention is gone are left out."""
    where, args = kept.where()
    async with conn.transaction():
        async for row in conn.cursor(_EXPORT.format(where=where), *args, prefetch=500):
            yield export_line(row)


# --- agreement ----------------------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize_agreement(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How far the model agreed with the corrections in force: per field the mentions reviewed (corrected or
    confirmed) and how many the model had right; for sentiment per class and a confusion matrix (model label →
    corrected label), for risks per tag, for entities per span (exact type and offsets)."""
    sentiment: dict[str, Any] = {"reviewed": 0, "agreed": 0, "classes": {c: {"reviewed": 0, "agreed": 0, "model_labelled": 0}
                                                       for c in SENTIMENT_LABELS},
                 "confusion": {}}
    risks: dict[str, Any] = {"reviewed": 0, "agreed": 0, "tags": {t: {"corrected": 0, "model": 0, "agreed": 0} for t in TAGS}}
    entities: dict[str, Any] = {"reviewed": 0, "agreed": 0, "spans": {"corrected": 0, "model": 0, "agreed": 0}}
    for row in rows:
        field, value, model = row["field"], _json(row["value"]), _json(row["model_value"])
        agreed = value == model
        summary: dict[str, Any]
        if field == "sentiment":
            summary = sentiment
            said = model or "unknown"
            sentiment["confusion"].setdefault(said, {}).setdefault(value, 0)
            sentiment["confusion"][said][value] += 1
            sentiment["classes"][value]["reviewed"] += 1
            sentiment["classes"][value]["agreed"] += int(agreed)
            if model in sentiment["classes"]:
                sentiment["classes"][model]["model_labelled"] += 1
        elif field == "risks":
            summary = risks
            for tag in set(value) | set(model):
                counts = risks["tags"].setdefault(tag, {"corrected": 0, "model": 0, "agreed": 0})
                counts["corrected"] += int(tag in value)
                counts["model"] += int(tag in model)
                counts["agreed"] += int(tag in value and tag in model)
        else:
            summary = entities
            right = {(e["type"], e["start"], e["end"]) for e in value}
            said_spans = {(e["type"], e["start"], e["end"]) for e in model}
            entities["spans"]["corrected"] += len(right)
            entities["spans"]["model"] += len(said_spans)
            entities["spans"]["agreed"] += len(right & said_spans)
        summary["reviewed"] += 1
        summary["agreed"] += int(agreed)
    for summary in (sentiment, risks, entities):
        summary["agreement"] = _rate(summary["agreed"], summary["reviewed"])
    for counts in sentiment["classes"].values():
        counts["recall"] = _rate(counts["agreed"], counts["reviewed"])
        counts["precision"] = _rate(counts["agreed"], counts["model_labelled"])
    for counts in [*risks["tags"].values(), entities["spans"]]:
        counts["recall"] = _rate(counts["agreed"], counts["corrected"])
        counts["precision"] = _rate(counts["agreed"], counts["model"])
    return {"sentiment": sentiment, "risks": risks, "entities": entities}
