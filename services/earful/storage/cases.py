"""Cases: every customer question or complaint that needs an answer, with an owner, a state, a
priority and an SLA deadline (docs/care.md).

A case opens, per watchlist, for a newly stored mention that is

* a customer question: it got a `questions` row (tagged customer_question, not written by one of
  the watchlist's handles), or
* a complaint that needs an answer: tagged complaint, not written by one of the watchlist's
  handles, and either addressed to one of them (an @mention entity naming a handle) or a reply to
  a stored post written by one of them.

Posts the watchlist owns (its own accounts and staff, earful.watchlists.owned) never open one. The
writer calls `sync_cases` inside its transaction, under the questions lock, right after it linked
questions and brand replies: the case opens with the mention, and a reply from one of the
watchlist's handles (in the same batch or an earlier one) answers it. People move cases through
`act` (the API). Every change bumps the case's version and adds the event `<case_id>:<version>`
to `case_events`, the outbox that earful.storage.case_outbox publishes to earful.cases.v1 after
the commit; a NOTIFY on CASE_EVENTS_CHANNEL wakes it.

Idempotent: a case opens only from a mention the writer has just inserted (a re-delivered one
inserts nothing), `case_id` is the primary key, and `event_id` is unique.

The policy parts are pure and tested without a database: `case_kind` (which mentions open a
case), `priority` (reach, negativity, risk tags and waiting time), `transition` (valid changes),
`event_record` (the Avro record of an event row).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from earful.core.errors import EarfulError
from earful.watchlists.care import sla_deadline, warn_time
from earful.watchlists.model import BusinessHours, Watchlist

log = logging.getLogger(__name__)

STATES = ("open", "assigned", "answered", "dismissed", "escalated")
ACTIVE_STATES = ("open", "assigned", "escalated")  # waiting for an answer
EVENTS = ("opened", "assigned", "answered", "dismissed", "escalated", "reopened")
ACTIONS = ("assign", "answer", "dismiss", "escalate", "reopen")
KINDS = ("question", "complaint")
STREAM = "stream"  # the actor of storage's own changes
CASE_EVENTS_CHANNEL = "earful_case_events"

QUESTION_FACET = "r:customer_question"
COMPLAINT_FACET = "r:complaint"


def case_id(watchlist_id: str, source: str, source_id: str) -> str:
    """The id of the case a mention opens for a watchlist: <watchlist_id>:<source>:<source_id>."""
    return f"{watchlist_id}:{source}:{source_id}"


# --- the watchlists' care settings -------------------------------------------------------------------


@dataclass(frozen=True)
class CarePolicy:
    """What one watchlist's cases follow: its handles, SLA, business hours, warning share and agents."""

    watchlist_id: str
    handles: frozenset[str] = frozenset()  # lower case, without @
    sla_s: int | None = None
    hours: BusinessHours | None = None  # None: the SLA runs around the clock
    warn_at: float = 0.75
    agents: tuple[str, ...] = ()  # new cases go to them in turn (EARFUL_CARE_AGENTS)

    def deadlines(self, opened_at: datetime) -> tuple[datetime | None, datetime | None]:
        """(warn_at, deadline_at) of a case opened at `opened_at`; (None, None) without an SLA."""
        if not self.sla_s:
            return None, None
        try:
            return (warn_time(opened_at, self.sla_s, self.hours, self.warn_at),
                    sla_deadline(opened_at, self.sla_s, self.hours))
        except ValueError as exc:  # business hours that never open: no deadline rather than no case
            log.warning("no SLA deadline for a case", extra={"watchlist_id": self.watchlist_id, "error": str(exc)})
            return None, None


@dataclass(frozen=True)
class CareBook:
    """The care policies of the watchlists in force, by watchlist id (built once per watchlist set)."""

    policies: Mapping[str, CarePolicy] = field(default_factory=dict)

    @classmethod
    def of(cls, watchlists: Iterable[Watchlist], agents: Mapping[str, Sequence[str]] | None = None) -> CareBook:
        agents = agents or {}
        policies = {}
        for w in watchlists:
            care = w.care
            policies[w.id] = CarePolicy(
                w.id, frozenset(h.lstrip("@").lower() for h in w.handles), w.response_sla_s,
                care.business_hours if care else None, care.warn_at if care else 0.75, tuple(agents.get(w.id, ())))
        return cls(policies)

    def policy(self, watchlist_id: str) -> CarePolicy:
        """The watchlist's policy; a watchlist not in force has no SLA, handles or agents."""
        return self.policies.get(watchlist_id) or CarePolicy(watchlist_id)


# --- which mentions open a case -------------------------------------------------------------------------


def addressed_handles(entities: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The handles a post @mentions (its `mention` entities), lower case without @."""
    return frozenset(str(e.get("text", "")).lstrip("@").lower() for e in entities if e.get("type") == "mention")


def case_kind(*, question: bool, tags: Iterable[str], author_handle: str | None, handles: frozenset[str],
              addressed: frozenset[str], parent_author: str | None) -> str | None:
    """'question', 'complaint' or None (no case). `question`: the mention got a questions row for
    the watchlist; `parent_author`: the author of the stored post it replies to, if any."""
    if question:
        return "question"
    if "complaint" not in set(tags):
        return None
    if author_handle and author_handle.lstrip("@").lower() in handles:
        return None  # the brand complaining about itself is not a customer
    to_brand = bool(addressed & handles) or bool(parent_author and parent_author.lstrip("@").lower() in handles)
    return "complaint" if to_brand else None


# --- priority ---------------------------------------------------------------------------------------------

REACH_MAX = 30  # 1,000,000 followers or more
NEGATIVITY_MAX = 25
RISK_POINTS = {"legal_privacy": 25, "regulatory": 25, "reputational": 15, "complaint": 10, "operational": 10}
WAITING_WARNED = 10  # past the warning time (or 4 h without an SLA)
WAITING_DUE = 20  # past the deadline (or 24 h without an SLA)
NO_SLA_WARN = timedelta(hours=4)
NO_SLA_DUE = timedelta(hours=24)


@dataclass(frozen=True)
class Priority:
    """A case's priority (0-100) and the terms it is made of."""

    value: int
    base: int  # reach + negativity + risk: what does not change while the case waits
    reasons: tuple[str, ...]


def reach_points(followers: int | None) -> float:
    """0-30, logarithmic: 100 followers 10, 10,000 followers 20, a million 30."""
    return REACH_MAX * min(1.0, math.log10(1 + max(0, followers or 0)) / 6)


def negativity_points(sentiment: str | None, score: float | None) -> float:
    """0-25: a negative label 15, plus up to 10 by how negative its polarity (-1..1) is; else 0."""
    if sentiment != "negative":
        return 0.0
    return 15 + 10 * min(1.0, max(0.0, -(score or 0.0)))


def risk_points(tags: Iterable[str]) -> tuple[int, str | None]:
    """The largest of the tags' points (legal/privacy and regulatory 25, reputational 15,
    complaint and operational 10), and the tag that gave them."""
    best, which = 0, None
    for tag in sorted(set(tags)):
        if RISK_POINTS.get(tag, 0) > best:
            best, which = RISK_POINTS[tag], tag
    return best, which


def base_priority(followers: int | None, sentiment: str | None, score: float | None,
                  tags: Iterable[str]) -> tuple[int, list[str]]:
    """Reach + negativity + risk (0-80, rounded once), with a reason per non-zero term."""
    reach, negativity = reach_points(followers), negativity_points(sentiment, score)
    risk, tag = risk_points(tags)
    reasons = []
    if round(reach):
        reasons.append(f"reach: {max(0, followers or 0)} followers +{round(reach)}")
    if round(negativity):
        reasons.append(f"negativity: negative sentiment +{round(negativity)}")
    if risk:
        reasons.append(f"risk: {tag} +{risk}")
    return round(reach + negativity + risk), reasons


def waiting_points(state: str, opened_at: datetime, warn_at: datetime | None, deadline_at: datetime | None,
                   now: datetime) -> tuple[int, str | None]:
    """0, 10 or 20 while the case waits: past its warning time, past its deadline (without an SLA:
    4 h and 24 h after it opened); 0 once answered or dismissed. WAITING_SQL says the same in SQL."""
    if state not in ACTIVE_STATES:
        return 0, None
    if deadline_at is not None:
        if now >= deadline_at:
            return WAITING_DUE, f"waiting: past the SLA deadline +{WAITING_DUE}"
        if warn_at is not None and now >= warn_at:
            return WAITING_WARNED, f"waiting: past the SLA warning time +{WAITING_WARNED}"
        return 0, None
    if now - opened_at >= NO_SLA_DUE:
        return WAITING_DUE, f"waiting: over 24 h without an SLA +{WAITING_DUE}"
    if now - opened_at >= NO_SLA_WARN:
        return WAITING_WARNED, f"waiting: over 4 h without an SLA +{WAITING_WARNED}"
    return 0, None


#: waiting_points in SQL, over a `cases` row aliased c, at the instant $NOW (a timestamptz parameter).
WAITING_SQL = f"""(CASE WHEN c.state NOT IN ('open', 'assigned', 'escalated') THEN 0
      WHEN c.deadline_at IS NOT NULL THEN
           CASE WHEN $NOW >= c.deadline_at THEN {WAITING_DUE} WHEN $NOW >= c.warn_at THEN {WAITING_WARNED} ELSE 0 END
      WHEN $NOW - c.opened_at >= interval '{int(NO_SLA_DUE.total_seconds())} seconds' THEN {WAITING_DUE}
      WHEN $NOW - c.opened_at >= interval '{int(NO_SLA_WARN.total_seconds())} seconds' THEN {WAITING_WARNED}
      ELSE 0 END)"""


def priority_sql(now_param: str) -> str:
    """The live priority of a `cases` row c in SQL (priority_base + waiting points at `now_param`)."""
    return f"least(100, c.priority_base + {WAITING_SQL.replace('$NOW', now_param)})"


def priority(followers: int | None, sentiment: str | None, score: float | None, tags: Iterable[str], *,
             state: str, opened_at: datetime, warn_at: datetime | None, deadline_at: datetime | None,
             now: datetime) -> Priority:
    """The case's priority at `now`: base (reach, negativity, risk) + waiting points, at most 100."""
    base, reasons = base_priority(followers, sentiment, score, tags)
    waiting, why = waiting_points(state, opened_at, warn_at, deadline_at, now)
    return Priority(min(100, base + waiting), base, tuple(reasons + ([why] if why else [])))


def case_priority(case: Mapping[str, Any], now: datetime) -> Priority:
    """The priority of a `cases` row at `now`."""
    return priority(case["author_followers"], case["sentiment"], case["sentiment_score"], case["risk_tags"],
                    state=case["state"], opened_at=case["opened_at"], warn_at=case["warn_at"],
                    deadline_at=case["deadline_at"], now=now)


# --- changes -------------------------------------------------------------------------------------------------


class CaseNotFound(EarfulError):
    """No case has this id (never opened, or gone with its mention)."""

    kind = "not_found"


class TransitionRefused(EarfulError):
    """The change is not valid from the case's state (the API answers 409)."""

    kind = "conflict"


@dataclass(frozen=True)
class Change:
    """What an action does to a case: the event it records, the state and owner after it."""

    event: str
    state: str
    owner: str | None


def transition(state: str, owner: str | None, action: str, new_owner: str | None = None) -> Change:
    """The change `action` makes to a case in `state` with `owner`; TransitionRefused when it is not
    a valid one:

    * assign (to another owner): from open, assigned or escalated (an escalated case stays escalated);
    * answer, dismiss: from open, assigned or escalated;
    * escalate: from open or assigned;
    * reopen: from answered or dismissed, back to assigned when it has an owner, else open.
    """
    if state not in STATES:
        raise ValueError(f"unknown case state {state!r}")
    if action == "assign":
        if not new_owner:
            raise ValueError("assign needs an owner")
        if state not in ACTIVE_STATES:
            raise TransitionRefused(f"the case is {state}: reopen it before assigning it")
        if new_owner == owner:
            raise TransitionRefused(f"the case is already assigned to {owner}")
        return Change("assigned", "escalated" if state == "escalated" else "assigned", new_owner)
    if action in ("answer", "dismiss"):
        if state not in ACTIVE_STATES:
            raise TransitionRefused(f"the case is already {state}")
        return Change("answered" if action == "answer" else "dismissed",
                      "answered" if action == "answer" else "dismissed", owner)
    if action == "escalate":
        if state not in ("open", "assigned"):
            raise TransitionRefused(f"the case is {state}; only an open or assigned case can be escalated")
        return Change("escalated", "escalated", owner)
    if action == "reopen":
        if state not in ("answered", "dismissed"):
            raise TransitionRefused(f"the case is {state}; only an answered or dismissed case can be reopened")
        return Change("reopened", "assigned" if owner else "open", owner)
    raise ValueError(f"unknown action {action!r}")


# --- events ----------------------------------------------------------------------------------------------------

EVENT_COLUMNS = ("event_id", "case_id", "version", "event", "state", "owner", "priority", "priority_reasons",
                 "watchlist_id", "source", "source_id", "mention_id", "thread_id", "author_handle", "opened_at",
                 "deadline_at", "warn_at", "answered_at", "occurred_at", "actor", "reason")
CASE_COLUMNS = ("case_id", "watchlist_id", "source", "source_id", "mention_id", "kind", "thread_id", "author_handle",
                "author_followers", "sentiment", "sentiment_score", "risk_tags", "state", "owner", "priority",
                "priority_base", "priority_reasons", "sla_s", "opened_at", "deadline_at", "warn_at", "answered_at",
                "answered_by_source_id", "first_reply_at", "reason", "stored_at", "updated_at", "version")


def event_row(case: Mapping[str, Any], event: str, *, occurred_at: datetime, actor: str | None,
              reason: str | None = None) -> dict[str, Any]:
    """The `case_events` row recording that `case` (as it is after the change) went through `event`."""
    reasons = case["priority_reasons"]
    if isinstance(reasons, str):
        reasons = json.loads(reasons)
    return {"event_id": f"{case['case_id']}:{case['version']}", "case_id": case["case_id"], "version": case["version"],
            "event": event, "state": case["state"], "owner": case["owner"], "priority": case["priority"],
            "priority_reasons": list(reasons), "watchlist_id": case["watchlist_id"], "source": case["source"],
            "source_id": case["source_id"], "mention_id": str(case["mention_id"]), "thread_id": case["thread_id"],
            "author_handle": case["author_handle"], "opened_at": case["opened_at"], "deadline_at": case["deadline_at"],
            "warn_at": case["warn_at"], "answered_at": case["answered_at"], "occurred_at": occurred_at, "actor": actor,
            "reason": reason}


def event_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `case_events` row → its earful.cases.v1 record (schemas/case_event.avsc)."""
    return {"schema_version": 1, "event_id": row["event_id"], "case_id": row["case_id"],
            "watchlist_id": row["watchlist_id"], "event": row["event"], "state": row["state"], "owner": row["owner"],
            "priority": int(row["priority"]), "priority_reasons": list(row["priority_reasons"]),
            "source": row["source"], "source_id": row["source_id"], "mention_id": str(row["mention_id"]),
            "thread_id": row["thread_id"], "author_handle": row["author_handle"], "opened_at": row["opened_at"],
            "deadline_at": row["deadline_at"], "warn_at": row["warn_at"], "occurred_at": row["occurred_at"],
            "actor": row["actor"], "answered_at": row["answered_at"]}


def _jsonb(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([dict(r) for r in rows], ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return str(value)


_INSERT_CASES = f"""
INSERT INTO cases ({", ".join(CASE_COLUMNS)})
SELECT {", ".join(CASE_COLUMNS)} FROM jsonb_populate_recordset(NULL::cases, $1::jsonb)
ON CONFLICT (case_id) DO NOTHING
RETURNING case_id
"""
_INSERT_EVENTS = f"""
INSERT INTO case_events ({", ".join(EVENT_COLUMNS)})
SELECT {", ".join(EVENT_COLUMNS)} FROM jsonb_populate_recordset(NULL::case_events, $1::jsonb)
ORDER BY occurred_at, case_id, version
ON CONFLICT (event_id) DO NOTHING
"""


async def record_events(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add event rows to the outbox and wake its publisher (at the commit)."""
    if rows:
        await conn.execute(_INSERT_EVENTS, _jsonb(rows))
        await conn.execute("SELECT pg_notify($1, '')", CASE_EVENTS_CHANNEL)


# --- the writer: opening and answering from the stream ------------------------------------------------------------

# The mentions of the batch that may open a case, per watchlist they matched (and do not own), with
# what deciding needs: whether the writer made it a question, the author of the stored post it
# replies to, the oldest stored post of its conversation, and its sentiment polarity.
_CANDIDATES = """
SELECT w.watchlist_id, c.mention_id, c.source, c.source_id, c.created_at, c.author_handle, c.author_followers,
       c.sentiment, c.facets, c.entities::text AS entities, c.in_reply_to,
       EXISTS (SELECT 1 FROM questions q WHERE q.watchlist_id = w.watchlist_id AND q.source = c.source
                                          AND q.source_id = c.source_id) AS question,
       (SELECT m.sentiment_score FROM mentions m WHERE m.source = c.source AND m.source_id = c.source_id
                                                  AND m.created_at = c.created_at) AS sentiment_score,
       parent.author_handle AS parent_author, root.source_id AS root_id
FROM {conversation} c
CROSS JOIN LATERAL unnest(c.watchlist_ids) AS w(watchlist_id)
LEFT JOIN LATERAL (
    SELECT pm.author_handle FROM mention_keys k
    JOIN mentions pm ON pm.source = k.source AND pm.source_id = k.source_id AND pm.created_at = k.created_at
    WHERE k.source = c.source AND k.source_id = c.in_reply_to
) parent ON c.in_reply_to IS NOT NULL
LEFT JOIN LATERAL (
    WITH RECURSIVE up (source_id, parent, depth) AS (
        SELECT k.source_id, pm.in_reply_to, 1 FROM mention_keys k
        JOIN mentions pm ON pm.source = k.source AND pm.source_id = k.source_id AND pm.created_at = k.created_at
        WHERE k.source = c.source AND k.source_id = c.in_reply_to
        UNION ALL
        SELECT k.source_id, pm.in_reply_to, u.depth + 1 FROM up u
        JOIN mention_keys k ON k.source = c.source AND k.source_id = u.parent
        JOIN mentions pm ON pm.source = k.source AND pm.source_id = k.source_id AND pm.created_at = k.created_at
        WHERE u.depth < 50
    )
    SELECT source_id FROM up ORDER BY depth DESC LIMIT 1
) root ON c.in_reply_to IS NOT NULL
WHERE c.facets && ARRAY['r:customer_question', 'r:complaint']
  AND w.watchlist_id <> ALL (c.owned_watchlist_ids)
ORDER BY c.created_at, c.source, c.source_id, w.watchlist_id
"""

_ROTATE = """
INSERT INTO care_rotation AS r (watchlist_id, assigned) VALUES ($1, $2)
ON CONFLICT (watchlist_id) DO UPDATE SET assigned = r.assigned + EXCLUDED.assigned
RETURNING r.assigned - $2 AS start
"""

# Open cases a brand reply answers: the replies of this batch from one of the watchlist's handles
# ($1 handles, $2 their watchlists, as the writer's questions statement), and, for the cases just
# opened ($3), replies stored before them. The earliest reply answers.
_ANSWER = """
WITH brand AS (
    SELECT h AS handle, w AS watchlist_id FROM unnest($1::text[], $2::text[]) AS b(h, w)
), replies AS (
    SELECT b.watchlist_id, i.source, i.in_reply_to, i.source_id, i.created_at
    FROM {conversation} i JOIN brand b ON b.handle = lower(i.author_handle)
    WHERE i.in_reply_to IS NOT NULL
    UNION ALL
    SELECT r.watchlist_id, r.source, r.in_reply_to, r.source_id, r.created_at
    FROM cases n JOIN brand_replies r ON r.watchlist_id = n.watchlist_id AND r.source = n.source
                                     AND r.in_reply_to = n.source_id
    WHERE n.case_id = ANY($3::text[])
), first AS (
    SELECT DISTINCT ON (watchlist_id, source, in_reply_to) *
    FROM replies ORDER BY watchlist_id, source, in_reply_to, created_at, source_id
)
UPDATE cases c SET state = 'answered', answered_at = f.created_at, answered_by_source_id = f.source_id,
                   first_reply_at = coalesce(c.first_reply_at, f.created_at), version = c.version + 1,
                   updated_at = $4, priority = c.priority_base
FROM first f
WHERE c.case_id = f.watchlist_id || ':' || f.source || ':' || f.in_reply_to
  AND c.state IN ('open', 'assigned', 'escalated')
RETURNING c.*
"""


@dataclass(frozen=True)
class CaseSync:
    opened: int = 0
    answered: int = 0


def _tags(facets: Iterable[str]) -> list[str]:
    return sorted(f[2:] for f in facets if f.startswith("r:"))


async def sync_cases(conn: asyncpg.Connection, conversation: str, handles: Sequence[str], watchlist_ids: Sequence[str],
                     care: CareBook | None, now: datetime | None = None) -> CaseSync:
    """Open the cases of the mentions just written and answer those a brand reply answers, in the
    writer's transaction (under its questions lock). `conversation`: the writer's table of the
    batch's new questions, complaints and replies; `handles`/`watchlist_ids`: the brand handles
    the writer links replies with."""
    care = care or CareBook()
    now = now or datetime.now(timezone.utc)
    opened = await _open(conn, conversation, care, now)
    answered = [dict(r) for r in await conn.fetch(_ANSWER.format(conversation=conversation), list(handles),
                                                   list(watchlist_ids), [c["case_id"] for c in opened], now)]
    for case in answered:  # an answered case no longer waits: its priority is the base terms alone
        case["priority_reasons"] = list(case_priority(case, now).reasons)
    if answered:
        await conn.executemany("UPDATE cases SET priority_reasons = $2::jsonb WHERE case_id = $1",
                               [(c["case_id"], json.dumps(c["priority_reasons"])) for c in answered])
    events = [event_row(c, "opened", occurred_at=now, actor=STREAM) for c in opened]
    events += [event_row(c, "answered", occurred_at=now, actor=STREAM) for c in answered]
    await record_events(conn, events)
    return CaseSync(len(opened), len(answered))


async def _open(conn: asyncpg.Connection, conversation: str, care: CareBook, now: datetime) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for r in await conn.fetch(_CANDIDATES.format(conversation=conversation)):
        policy = care.policy(r["watchlist_id"])
        tags = _tags(r["facets"])
        entities = json.loads(r["entities"]) if r["entities"] else []
        kind = case_kind(question=r["question"], tags=tags, author_handle=r["author_handle"], handles=policy.handles,
                         addressed=addressed_handles(entities), parent_author=r["parent_author"])
        if kind is None:
            continue
        opened_at = r["created_at"]
        warn_at, deadline_at = policy.deadlines(opened_at)
        cases.append({
            "case_id": case_id(r["watchlist_id"], r["source"], r["source_id"]), "watchlist_id": r["watchlist_id"],
            "source": r["source"], "source_id": r["source_id"], "mention_id": r["mention_id"], "kind": kind,
            "thread_id": r["root_id"] or r["in_reply_to"], "author_handle": r["author_handle"],
            "author_followers": r["author_followers"],
            "sentiment": None if r["sentiment"] == "unknown" else r["sentiment"],
            "sentiment_score": float(r["sentiment_score"] or 0.0), "risk_tags": tags, "state": "open", "owner": None,
            "sla_s": policy.sla_s, "opened_at": opened_at, "deadline_at": deadline_at, "warn_at": warn_at,
            "answered_at": None, "answered_by_source_id": None, "first_reply_at": None, "reason": None,
            "stored_at": now, "updated_at": now, "version": 1,
        })
    if not cases:
        return []
    await _assign_in_turn(conn, cases, care)
    for c in cases:
        p = case_priority(c, now)
        c.update(priority=p.value, priority_base=p.base, priority_reasons=list(p.reasons))
    inserted = {r["case_id"] for r in await conn.fetch(_INSERT_CASES, _jsonb(cases))}
    return [c for c in cases if c["case_id"] in inserted]


async def _assign_in_turn(conn: asyncpg.Connection, cases: list[dict[str, Any]], care: CareBook) -> None:
    """Give each new case of a watchlist with agents the next agent in turn (state assigned)."""
    per_watchlist: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in cases:
        if care.policy(c["watchlist_id"]).agents:
            per_watchlist[c["watchlist_id"]].append(c)
    for wid in sorted(per_watchlist):
        agents = care.policy(wid).agents
        batch = per_watchlist[wid]
        start = int(await conn.fetchval(_ROTATE, wid, len(batch)))
        for i, c in enumerate(batch):
            c["owner"], c["state"] = agents[(start + i) % len(agents)], "assigned"


# --- people: the API ------------------------------------------------------------------------------------------------

_LOCK_CASE = "SELECT * FROM cases WHERE case_id = $1 FOR UPDATE"
_UPDATE_CASE = """
UPDATE cases SET state = $2, owner = $3, answered_at = $4, answered_by_source_id = $5, first_reply_at = $6,
                 reason = $7, priority = $8, priority_reasons = $9::jsonb, version = version + 1, updated_at = $10
WHERE case_id = $1
RETURNING *
"""


async def act(conn: asyncpg.Connection, the_case: str, action: str, *, actor: str | None, owner: str | None = None,
              reason: str | None = None, answered_by: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Apply a person's `action` to a case in one transaction and record its event; the case after
    it. CaseNotFound, TransitionRefused (see `transition`)."""
    now = now or datetime.now(timezone.utc)
    async with conn.transaction():
        row = await conn.fetchrow(_LOCK_CASE, the_case)
        if row is None:
            raise CaseNotFound(f"no case {the_case!r}")
        case = dict(row)
        change = transition(case["state"], case["owner"], action, owner)
        answered_at, answered_by_id, first_reply = case["answered_at"], case["answered_by_source_id"], case["first_reply_at"]
        if change.state == "answered":
            answered_at, answered_by_id, first_reply = now, answered_by, first_reply or now
        elif action == "reopen":
            answered_at = answered_by_id = None
        kept_reason = reason if action in ("dismiss", "escalate") else case["reason"]
        after = {**case, "state": change.state, "owner": change.owner, "answered_at": answered_at}
        p = case_priority(after, now)
        updated = dict(await conn.fetchrow(_UPDATE_CASE, the_case, change.state, change.owner, answered_at, answered_by_id,
                                           first_reply, kept_reason, p.value, json.dumps(list(p.reasons)), now))
        await record_events(conn, [event_row(updated, change.event, occurred_at=now, actor=actor,
                                             reason=reason if action in ("dismiss", "escalate") else None)])
    return updated


# --- reading -----------------------------------------------------------------------------------------------------

_CASE_WITH_MENTION = """
SELECT c.*, m.text, m.title, m.url, m.lang, m.author_name
FROM ({cases}) c
LEFT JOIN mentions m ON m.source = c.source AND m.source_id = c.source_id AND m.created_at = c.opened_at
ORDER BY {order}
"""


async def get_case(conn: asyncpg.Connection | asyncpg.Pool, the_case: str, now: datetime) -> dict[str, Any] | None:
    """One case with its mention's text, author name and URL, and the live priority; None if unknown."""
    sql = _CASE_WITH_MENTION.format(cases=f"SELECT c.*, {priority_sql('$2')} AS priority_now FROM cases c"
                                          " WHERE c.case_id = $1", order="c.case_id")
    row = await conn.fetchrow(sql, the_case, now)
    return dict(row) if row is not None else None


async def case_history(conn: asyncpg.Connection | asyncpg.Pool, the_case: str) -> list[dict[str, Any]]:
    """The case's events, oldest first."""
    return [dict(r) for r in await conn.fetch(
        "SELECT * FROM case_events WHERE case_id = $1 ORDER BY version, id", the_case)]


@dataclass(frozen=True)
class CaseFilter:
    """What GET /v1/cases keeps."""

    states: tuple[str, ...] = ACTIVE_STATES
    watchlist: str | None = None
    owner: str | None = None


def case_listing(kept: CaseFilter, as_of: datetime, after: tuple[int, datetime, str] | None,
                 limit: int) -> tuple[str, list[Any]]:
    """SQL and arguments of one page of cases: highest live priority first, then longest waiting
    (opened earliest), then case id; keyset `after` = the last row's (priority, opened_at, case_id)."""
    args: list[Any] = [as_of, list(kept.states)]
    where = ["c.state = ANY($2::text[])"]
    if kept.watchlist is not None:
        args.append(kept.watchlist)
        where.append(f"c.watchlist_id = ${len(args)}")
    if kept.owner is not None:
        args.append(kept.owner)
        where.append(f"c.owner = ${len(args)}")
    inner = f"SELECT c.*, {priority_sql('$1')} AS priority_now FROM cases c WHERE {' AND '.join(where)}"
    outer_where = ""
    if after is not None:
        args += list(after)
        p, o, i = f"${len(args) - 2}", f"${len(args) - 1}", f"${len(args)}"
        outer_where = f" WHERE (priority_now < {p} OR (priority_now = {p} AND (opened_at, case_id) > ({o}, {i})))"
    args.append(limit + 1)
    page = (f"SELECT * FROM ({inner}) c{outer_where} ORDER BY priority_now DESC, opened_at, case_id"
            f" LIMIT ${len(args)}")
    return _CASE_WITH_MENTION.format(cases=page, order="c.priority_now DESC, c.opened_at, c.case_id"), args


# --- response-time KPIs -------------------------------------------------------------------------------------------

_KPIS = """
SELECT GROUPING(source) AS by_source, GROUPING(owner) AS by_owner, GROUPING(day) AS by_day, source, owner, day,
       count(*) AS opened,
       count(*) FILTER (WHERE state IN ('open', 'assigned', 'escalated')) AS waiting,
       count(*) FILTER (WHERE first_reply_at IS NOT NULL) AS answered,
       count(*) FILTER (WHERE state = 'dismissed') AS dismissed,
       count(*) FILTER (WHERE state = 'escalated') AS escalated,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY reply_s) FILTER (WHERE reply_s IS NOT NULL) AS median_first_reply_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY reply_s) FILTER (WHERE reply_s IS NOT NULL) AS p90_first_reply_s,
       count(*) FILTER (WHERE deadline_at IS NOT NULL AND first_reply_at <= deadline_at) AS answered_within_sla,
       count(*) FILTER (WHERE deadline_at IS NOT NULL AND (first_reply_at IS NOT NULL
                              OR (state IN ('open', 'assigned', 'escalated') AND deadline_at <= $4))) AS due
FROM (
    SELECT source, owner, state, deadline_at, first_reply_at, date_trunc('day', opened_at, 'UTC') AS day,
           extract(epoch FROM first_reply_at - opened_at)::float8 AS reply_s
    FROM cases WHERE watchlist_id = $1 AND opened_at >= $2 AND opened_at < $3
) c
GROUP BY GROUPING SETS ((), (source), (owner), (day))
ORDER BY by_source DESC, by_owner DESC, by_day DESC, source, owner NULLS FIRST, day
"""


def _kpi(row: Mapping[str, Any]) -> dict[str, Any]:
    due, within = int(row["due"]), int(row["answered_within_sla"])
    out: dict[str, Any] = {k: int(row[k]) for k in ("opened", "waiting", "answered", "dismissed", "escalated")}
    for name in ("median_first_reply_s", "p90_first_reply_s"):
        out[name] = None if row[name] is None else round(float(row[name]), 1)
    out.update(due=due, answered_within_sla=within, breached=due - within,
               within_sla_share=round(within / due, 4) if due else None)
    return out


async def care_kpis(conn: asyncpg.Connection | asyncpg.Pool, watchlist_id: str, lo: datetime, hi: datetime,
                    now: datetime) -> dict[str, Any]:
    """Response times of the cases opened in [lo, hi): overall, per source, per owner, per UTC day."""
    total: dict[str, Any] = {}
    by_source, by_owner, by_day = [], [], []
    for row in await conn.fetch(_KPIS, watchlist_id, lo, hi, now):
        figures = _kpi(row)
        if row["by_source"] and row["by_owner"] and row["by_day"]:
            total = figures
        elif not row["by_source"]:
            by_source.append({"source": row["source"], **figures})
        elif not row["by_owner"]:
            by_owner.append({"owner": row["owner"], **figures})
        else:
            by_day.append({"day": row["day"], **figures})
    return {"total": total or _kpi({"opened": 0, "waiting": 0, "answered": 0, "dismissed": 0, "escalated": 0,
                                     "median_first_reply_s": None, "p90_first_reply_s": None, "due": 0,
                                     "answered_within_sla": 0}),
            "by_source": by_source, "by_owner": by_owner, "by_day": by_day}
