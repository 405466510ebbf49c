"""Sales leads: a purchase-intent mention from a prospect becomes one lead per author, watchlist and period.

The rule (pure, `lead_evidence`), for each stored mention:

* enrichment tagged it `purchase_intent` (the tag's evidence span is the lead's evidence);
* its author is a prospect: a *person* by the author types of earful.watchlists.authors (not an
  account a watchlist or EARFUL_OWNED_HANDLES lists as the brand's, a competitor's or staff, not
  a media outlet or a news feed), with a handle or an account id to reach them by;
* it is the author's own post (a repost of someone else's intent is not the reposter's);
* for every watchlist it matched, except watchlists of kind `staff` and those the writer found
  the mention owned for.

Periods are fixed windows of EARFUL_LEAD_PERIOD_DAYS days counted from Monday 1970-01-05 00:00
UTC (with the default 7 days: ISO weeks). The lead's id is derived from (watchlist, source,
author, period start), so every writer, replica and replay names the same lead: a repeat in the
period adds evidence to the lead (`evidence_added`) instead of making a new one (`created`).

`record_leads` stores the evidence in the writer's transaction (storage/signals.py calls it from
writer.py) and adds one event per new evidence to `lead_events`, the outbox of
earful.leads.v1 (and of the optional CRM webhook, storage/lead_webhook.py). A re-delivered
mention is already evidence of its lead and changes nothing, so it makes no event; an event's id
is derived from the lead and the mention, so a re-published record has the same id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.topics import LEADS
from earful.storage.table_outbox import INTERVAL_S, KafkaSink, OutboxTable, TableOutbox
from earful.storage.writer import MENTION_COLUMNS, WRITTEN_COLUMNS
from earful.watchlists.authors import author_type
from earful.watchlists.owned import OwnedHandles

UTC = timezone.utc
INTENT_TAG = "purchase_intent"
PERIOD_EPOCH = datetime(1970, 1, 5, tzinfo=UTC)  # a Monday: 7-day periods are ISO weeks
MAX_EVIDENCE = 20  # evidence items a record carries (the latest); `mentions` counts them all
NAMESPACE = uuid.UUID("6c8f0f5e-4f0b-4c55-9a44-1b3e0f2d7a11")  # of lead and event ids (uuid5)
CHANNEL = "earful_leads"  # NOTIFY: a lead event committed, publish it
_LOCK = 0x6561726C  # "earl": the one publisher of lead events
_WEBHOOK_LOCK = 0x6561726D  # "earm": the one deliverer of lead events to the CRM webhook

_I = {name: i for i, name in enumerate(MENTION_COLUMNS)}
_OWNED = WRITTEN_COLUMNS.index("owned_watchlist_ids")  # present in the rows the writer stores

PUBLISHED = Counter("earful_lead_events_published_total", "Lead events published to earful.leads.v1.")
UNPUBLISHED = Gauge("earful_lead_events_unpublished",
                    "Lead events committed but not yet acknowledged on earful.leads.v1, as of the last pass.")
FAILURES = Counter("earful_lead_event_publish_failures_total", "Failed attempts to publish a lead event, by error kind.",
                   ["kind"])
DELIVERED = Counter("earful_lead_webhook_delivered_total", "Lead events the CRM webhook acknowledged.")
UNDELIVERED = Gauge("earful_lead_webhook_undelivered", "Lead events not yet acknowledged by the CRM webhook, as of the last pass.")
WEBHOOK_FAILURES = Counter("earful_lead_webhook_failures_total", "Failed deliveries of a lead event to the CRM webhook, by error kind.",
                           ["kind"])

OUTBOX = OutboxTable("lead_events", "published_at", _LOCK, CHANNEL, "lead events", PUBLISHED, UNPUBLISHED, FAILURES)
WEBHOOK_OUTBOX = OutboxTable("lead_events", "delivered_at", _WEBHOOK_LOCK, CHANNEL, "lead webhooks", DELIVERED,
                             UNDELIVERED, WEBHOOK_FAILURES)


# --- the rule (pure) -------------------------------------------------------------------------


def period_of(at: datetime, days: int) -> tuple[datetime, datetime]:
    """The [start, end) of the fixed period of `days` days that holds `at`."""
    length = timedelta(days=days)
    start = PERIOD_EPOCH + length * ((at.astimezone(UTC) - PERIOD_EPOCH) // length)
    return start, start + length


def author_key(handle: str | None, author_id: str | None) -> str | None:
    """The author's identity within a source, as the author rollups key it: the lower-cased handle,
    else id:<account id>; None when the source gave neither."""
    if handle:
        return handle.lstrip("@").lower()
    return f"id:{author_id}" if author_id else None


def lead_id(watchlist_id: str, source: str, key: str, period_start: datetime) -> uuid.UUID:
    """The lead of this watchlist, author and period: the same wherever and however often it is computed."""
    stamp = period_start.astimezone(UTC).isoformat()
    return uuid.uuid5(NAMESPACE, f"lead\x1f{watchlist_id}\x1f{source}\x1f{key}\x1f{stamp}")


def event_id(lead: uuid.UUID, mention_id: uuid.UUID | str) -> uuid.UUID:
    """The event that `mention_id` made on `lead` (created or evidence_added)."""
    return uuid.uuid5(NAMESPACE, f"event\x1f{lead}\x1f{mention_id}")


def profile_url(source: str, handle: str | None) -> str | None:
    """A link to the author's profile, for sources whose profile links follow from the handle."""
    if not handle:
        return None
    plain = handle.lstrip("@")
    if source in ("twitter", "x"):
        return f"https://x.com/{plain}"
    if source == "bluesky":
        return f"https://bsky.app/profile/{plain}"
    if source == "reddit":
        return f"https://www.reddit.com/user/{plain.removeprefix('u/')}"
    if source == "mastodon" and plain.count("@") == 1:
        user, instance = plain.split("@")
        if user and instance:
            return f"https://{instance}/@{user}"
    return None


def intent_of(risks: Any) -> dict[str, Any] | None:
    """The purchase_intent tag of a row's risks (JSON text or a list), or None."""
    tags = json.loads(risks) if isinstance(risks, str) else risks
    return next((t for t in tags or () if t.get("tag") == INTENT_TAG), None)


@dataclass(frozen=True)
class LeadEvidence:
    """One purchase-intent mention of a prospect, as evidence of the lead it belongs to."""

    lead_id: uuid.UUID
    watchlist_id: str
    source: str
    author_key: str
    period_start: datetime
    period_end: datetime
    author_id: str | None
    author_handle: str | None
    author_name: str | None
    author_followers: int | None
    profile_url: str | None
    mention_id: uuid.UUID
    source_id: str
    url: str | None
    created_at: datetime
    text: str
    evidence: str
    start: int
    end: int


def lead_evidence(rows: Iterable[Sequence[Any]], *, period_days: int, accounts: OwnedHandles = OwnedHandles(),
                  kinds: Mapping[str, str] | None = None) -> list[LeadEvidence]:
    """The lead evidence among stored mention rows (MENTION_COLUMNS first), by the rule in the module
    docstring; `accounts`: the brand and staff accounts in force; `kinds`: watchlist id → kind."""
    kinds = kinds or {}
    out = []
    for row in rows:
        if f"r:{INTENT_TAG}" not in row[_I["facets"]]:  # the tags as a list: no JSON to read for most rows
            continue
        intent = intent_of(row[_I["risks"]])
        if intent is None or row[_I["reposted_from"]] is not None:
            continue
        source, handle, aid = row[_I["source"]], row[_I["author_handle"]], row[_I["author_id"]]
        key = author_key(handle, aid)
        if key is None:
            continue
        if author_type(source, handle, aid, row[_I["author_name"]], row[_I["connector"]], accounts) != "person":
            continue
        created = row[_I["created_at"]]
        start, end = period_of(created, period_days)
        mid = row[_I["mention_id"]]
        owned = row[_OWNED] if len(row) > _OWNED else ()
        for wid in row[_I["watchlist_ids"]]:
            if kinds.get(wid) == "staff" or wid in owned:
                continue
            out.append(LeadEvidence(
                lead_id(wid, source, key, start), wid, source, key, start, end, aid, handle, row[_I["author_name"]],
                row[_I["author_followers"]], profile_url(source, handle), mid if isinstance(mid, uuid.UUID) else uuid.UUID(mid),
                row[_I["source_id"]], row[_I["url"]], created, row[_I["text"]], str(intent["evidence"]),
                int(intent["start"]), int(intent["end"])))
    return out


# --- events (pure) ---------------------------------------------------------------------------


@dataclass
class LeadState:
    """A lead as stored: what an event record shows besides its evidence."""

    lead_id: uuid.UUID
    watchlist_id: str
    source: str
    author_key: str
    period_start: datetime
    period_end: datetime
    author_id: str | None
    author_handle: str | None
    author_name: str | None
    author_followers: int | None
    profile_url: str | None
    mentions: int = 0
    first_mention_at: datetime | None = None
    last_mention_at: datetime | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)  # the latest MAX_EVIDENCE, oldest first

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> LeadState:
        return cls(row["lead_id"], row["watchlist_id"], row["source"], row["author_key"], row["period_start"],
                   row["period_end"], row["author_id"], row["author_handle"], row["author_name"], row["author_followers"],
                   row["profile_url"], row["mentions"], row["first_mention_at"] if row["mentions"] else None,
                   row["last_mention_at"] if row["mentions"] else None)

    def add(self, e: LeadEvidence) -> None:
        """Take one new evidence in: count, times, the author's latest profile, the evidence list."""
        self.mentions += 1
        latest = self.last_mention_at is None or e.created_at >= self.last_mention_at
        self.first_mention_at = e.created_at if self.first_mention_at is None else min(self.first_mention_at, e.created_at)
        self.last_mention_at = e.created_at if self.last_mention_at is None else max(self.last_mention_at, e.created_at)
        if latest:
            self.author_id = e.author_id or self.author_id
            self.author_handle = e.author_handle or self.author_handle
            self.author_name = e.author_name or self.author_name
            self.author_followers = e.author_followers if e.author_followers is not None else self.author_followers
            self.profile_url = e.profile_url or self.profile_url
        self.evidence.append(evidence_item(e))
        self.evidence.sort(key=lambda x: (x["created_at"], x["mention_id"]))
        del self.evidence[:-MAX_EVIDENCE]


def evidence_item(e: LeadEvidence) -> dict[str, Any]:
    """One evidence entry of a record (schemas/lead.avsc LeadEvidence)."""
    return {"mention_id": str(e.mention_id), "source_id": e.source_id, "url": e.url, "created_at": e.created_at,
            "text": e.text, "evidence": e.evidence, "start": e.start, "end": e.end}


def lead_record(state: LeadState, event: str, trigger: uuid.UUID, detected_at: datetime) -> dict[str, Any]:
    """The earful.leads.v1 record of `state` just after `trigger` changed it (pure)."""
    assert state.first_mention_at is not None and state.last_mention_at is not None
    return {
        "schema_version": 1, "event_id": str(event_id(state.lead_id, trigger)), "event": event,
        "lead_id": str(state.lead_id), "watchlist_id": state.watchlist_id,
        "period_start": state.period_start, "period_end": state.period_end,
        "author": {"source": state.source, "key": state.author_key, "id": state.author_id, "handle": state.author_handle,
                   "name": state.author_name, "followers": state.author_followers, "profile_url": state.profile_url},
        "mentions": state.mentions, "first_mention_at": state.first_mention_at, "last_mention_at": state.last_mention_at,
        "trigger_mention_id": str(trigger), "evidence": [dict(x) for x in state.evidence], "detected_at": detected_at,
    }


_TIMES = ("period_start", "period_end", "first_mention_at", "last_mention_at", "detected_at")


def to_json(record: Mapping[str, Any]) -> str:
    """A record as stored in the outbox and sent to the webhook: times as RFC 3339 UTC."""
    return json.dumps(record, ensure_ascii=False, default=_iso)


def from_json(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """A stored record back as the Avro record (times as datetimes)."""
    record = dict(json.loads(text) if isinstance(text, str) else text)
    for name in _TIMES:
        record[name] = _parse(record[name])
    record["evidence"] = [{**x, "created_at": _parse(x["created_at"])} for x in record["evidence"]]
    return record


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def events(states: Mapping[uuid.UUID, LeadState], new: Sequence[LeadEvidence], created: set[uuid.UUID],
           detected_at: datetime) -> list[dict[str, Any]]:
    """One record per new evidence, in (lead, time) order, each showing the lead just after it;
    the states end as the leads stand after all of them (pure)."""
    out = []
    for e in sorted(new, key=lambda x: (x.lead_id, x.created_at, x.mention_id)):
        state = states[e.lead_id]
        kind = "created" if e.lead_id in created and state.mentions == 0 else "evidence_added"
        state.add(e)
        out.append(lead_record(state, kind, e.mention_id, detected_at))
    return out


# --- storing (in the writer's transaction) ----------------------------------------------------

_INSERT_LEADS = """
INSERT INTO leads (lead_id, watchlist_id, source, author_key, period_start, period_end, author_id, author_handle,
                   author_name, author_followers, profile_url, first_mention_at, last_mention_at)
SELECT l.*, l.first_at FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                                    $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::timestamptz[])
    AS l(lead_id, watchlist_id, source, author_key, period_start, period_end, author_id, author_handle, author_name,
         author_followers, profile_url, first_at)
ORDER BY l.lead_id
ON CONFLICT (lead_id) DO NOTHING
RETURNING lead_id
"""
_INSERT_EVIDENCE = """
INSERT INTO lead_mentions (lead_id, mention_id, source_id, url, created_at, text, evidence, evidence_start, evidence_end)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                     $8::int[], $9::int[])
ORDER BY 1, 2
ON CONFLICT (lead_id, mention_id) DO NOTHING
RETURNING lead_id, mention_id
"""
_LOCK_LEADS = "SELECT * FROM leads WHERE lead_id = ANY($1::uuid[]) ORDER BY lead_id FOR UPDATE"
# The latest evidence each lead had before this batch (the newest MAX_EVIDENCE, enough for a record).
_OLD_EVIDENCE = f"""
SELECT * FROM (
    SELECT m.*, row_number() OVER (PARTITION BY m.lead_id ORDER BY m.created_at DESC, m.mention_id DESC) AS n
    FROM lead_mentions m
    WHERE m.lead_id = ANY($1::uuid[]) AND NOT (m.mention_id = ANY($2::uuid[]))
) x WHERE n <= {MAX_EVIDENCE}
ORDER BY lead_id, created_at, mention_id
"""
_UPDATE_LEADS = """
UPDATE leads l SET mentions = u.mentions, first_mention_at = u.first_at, last_mention_at = u.last_at,
    author_id = u.author_id, author_handle = u.author_handle, author_name = u.author_name,
    author_followers = u.author_followers, profile_url = u.profile_url, updated_at = $10
FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
            $8::bigint[], $9::text[])
    AS u(lead_id, mentions, first_at, last_at, author_id, author_handle, author_name, author_followers, profile_url)
WHERE l.lead_id = u.lead_id
"""
_INSERT_EVENTS = """
INSERT INTO lead_events (event_id, lead_id, event, record, created_at)
SELECT e.event_id, e.lead_id, e.event, e.record::jsonb, $5 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])
    AS e(event_id, lead_id, event, record)
ON CONFLICT (event_id) DO NOTHING
"""


async def record_leads(conn: asyncpg.Connection, evidence: Sequence[LeadEvidence]) -> int:
    """Store lead evidence in the caller's transaction; the events it made (0 for evidence stored before)."""
    if not evidence:
        return 0
    first: dict[uuid.UUID, LeadEvidence] = {}
    for e in sorted(evidence, key=lambda x: x.created_at):
        first.setdefault(e.lead_id, e)
    leads = list(first.values())
    created = {r["lead_id"] for r in await conn.fetch(
        _INSERT_LEADS, [e.lead_id for e in leads], [e.watchlist_id for e in leads], [e.source for e in leads],
        [e.author_key for e in leads], [e.period_start for e in leads], [e.period_end for e in leads],
        [e.author_id for e in leads], [e.author_handle for e in leads], [e.author_name for e in leads],
        [e.author_followers for e in leads], [e.profile_url for e in leads], [e.created_at for e in leads])}
    unique = list({(e.lead_id, e.mention_id): e for e in evidence}.values())
    stored = await conn.fetch(
        _INSERT_EVIDENCE, [e.lead_id for e in unique], [e.mention_id for e in unique], [e.source_id for e in unique],
        [e.url for e in unique], [e.created_at for e in unique], [e.text for e in unique], [e.evidence for e in unique],
        [e.start for e in unique], [e.end for e in unique])
    if not stored:
        return 0
    fresh = {(r["lead_id"], r["mention_id"]) for r in stored}
    new = [e for e in unique if (e.lead_id, e.mention_id) in fresh]
    ids = sorted({e.lead_id for e in new})
    states = {r["lead_id"]: LeadState.of(r) for r in await conn.fetch(_LOCK_LEADS, ids)}
    for r in await conn.fetch(_OLD_EVIDENCE, ids, [e.mention_id for e in new]):
        states[r["lead_id"]].evidence.append(
            {"mention_id": str(r["mention_id"]), "source_id": r["source_id"], "url": r["url"], "created_at": r["created_at"],
             "text": r["text"], "evidence": r["evidence"], "start": r["evidence_start"], "end": r["evidence_end"]})
    now = await conn.fetchval("SELECT clock_timestamp()")
    records = events(states, new, created, now)
    final = [states[i] for i in ids]
    await conn.execute(
        _UPDATE_LEADS, ids, [s.mentions for s in final], [s.first_mention_at for s in final],
        [s.last_mention_at for s in final], [s.author_id for s in final], [s.author_handle for s in final],
        [s.author_name for s in final], [s.author_followers for s in final], [s.profile_url for s in final], now)
    await conn.execute(_INSERT_EVENTS, [uuid.UUID(r["event_id"]) for r in records], [uuid.UUID(r["lead_id"]) for r in records],
                       [r["event"] for r in records], [to_json(r) for r in records], now)
    await conn.execute(f"NOTIFY {CHANNEL}")
    return len(records)


def lead_topic_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `lead_events` row → its earful.leads.v1 record."""
    return from_json(row["record"])


class LeadOutbox(TableOutbox):
    """Publishes committed lead events to earful.leads.v1 (key: the lead id), in id order."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, codec: AvroCodec, *,
                 interval_s: float = INTERVAL_S) -> None:
        sink = KafkaSink(producer, codec, LEADS, lead_topic_record, lambda row: str(row["lead_id"]))
        super().__init__(pool, OUTBOX, sink, interval_s=interval_s)
