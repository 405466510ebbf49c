"""Policy flags: a staff post that breaks a rule of the social-media policy, stored and published.

For each stored mention whose author a `staff` watchlist lists (earful.watchlists.policy.Staff),
the policy (EARFUL_POLICY_FILE, earful.watchlists.policy) is evaluated; each rule it breaks is one
flag, with the rule, its kind, the evidence spans, the mention and the author (`staff_flags`,
pure). `record_flags` stores them in the writer's transaction (storage/signals.py calls it from
writer.py): one row per (mention, rule), so a re-delivered post flags nothing new. The table is
the outbox of earful.policy_flags.v1 (`published_at` null until the broker acknowledged the
record); a flag's id is derived from the rule and the mention, so a re-published record has the
same id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from earful.core.codec import AvroCodec
from earful.core.topics import POLICY_FLAGS
from earful.storage.table_outbox import INTERVAL_S, KafkaSink, OutboxTable, TableOutbox
from earful.storage.writer import MENTION_COLUMNS
from earful.watchlists.policy import Policy, Staff

NAMESPACE = uuid.UUID("0b7e5a52-3d1c-4f6e-8a9b-2c4d6e8f0a13")  # of flag ids (uuid5)
CHANNEL = "earful_policy_flags"  # NOTIFY: a flag committed, publish it
_LOCK = 0x6561726E  # "earn": the one publisher of policy flags

_I = {name: i for i, name in enumerate(MENTION_COLUMNS)}

PUBLISHED = Counter("earful_policy_flags_published_total", "Policy flags published to earful.policy_flags.v1.")
UNPUBLISHED = Gauge("earful_policy_flags_unpublished",
                    "Policy flags committed but not yet acknowledged on earful.policy_flags.v1, as of the last pass.")
FAILURES = Counter("earful_policy_flag_publish_failures_total", "Failed attempts to publish a policy flag, by error kind.",
                   ["kind"])
OUTBOX = OutboxTable("policy_flags", "published_at", _LOCK, CHANNEL, "policy flags", PUBLISHED, UNPUBLISHED, FAILURES)

COLUMNS = ("flag_id", "rule_id", "kind", "severity", "description", "mention_id", "source", "source_id", "url",
           "mention_created_at", "author_id", "author_handle", "author_name", "staff_watchlist_ids", "watchlist_ids",
           "text", "evidence")


def flag_id(rule_id: str, mention_id: uuid.UUID | str) -> uuid.UUID:
    """The flag of this rule on this post: the same however often the post is delivered."""
    return uuid.uuid5(NAMESPACE, f"flag\x1f{rule_id}\x1f{mention_id}")


def staff_flags(rows: Iterable[Sequence[Any]], policy: Policy, staff: Staff) -> list[dict[str, Any]]:
    """The flags of the staff posts among stored mention rows (MENTION_COLUMNS first), as `policy_flags`
    rows (COLUMNS; evidence as a list of {text, start, end, term}) (pure)."""
    if not staff or not policy.rules:
        return []
    out = []
    for row in rows:
        source, handle, aid = row[_I["source"]], row[_I["author_handle"]], row[_I["author_id"]]
        staff_of = staff.watchlists_of(source, handle, aid)
        if not staff_of:
            continue
        text = row[_I["text"]]
        mid = row[_I["mention_id"]]
        for flag in policy.evaluate(text, staff_watchlists=staff_of, url=row[_I["url"]], lang=row[_I["lang"]],
                                    source=source, author=handle):
            out.append({
                "flag_id": flag_id(flag.rule_id, mid), "rule_id": flag.rule_id, "kind": flag.kind,
                "severity": flag.severity, "description": flag.description,
                "mention_id": mid if isinstance(mid, uuid.UUID) else uuid.UUID(mid), "source": source,
                "source_id": row[_I["source_id"]], "url": row[_I["url"]], "mention_created_at": row[_I["created_at"]],
                "author_id": aid, "author_handle": handle or "", "author_name": row[_I["author_name"]],
                "staff_watchlist_ids": list(staff_of), "watchlist_ids": list(row[_I["watchlist_ids"]]), "text": text,
                "evidence": [{"text": e.text, "start": e.start, "end": e.end, "term": e.term} for e in flag.evidence],
            })
    return out


_INSERT = f"""
INSERT INTO policy_flags ({", ".join(COLUMNS)}, detected_at)
VALUES ({", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))}, clock_timestamp())
ON CONFLICT (mention_id, rule_id) DO NOTHING
RETURNING id
"""


async def record_flags(conn: asyncpg.Connection, flags: Sequence[Mapping[str, Any]]) -> int:
    """Store flags in the caller's transaction; how many are new (a flag stored before is left as it is)."""
    new = 0
    for flag in sorted(flags, key=lambda f: (f["mention_id"], f["rule_id"])):
        values = [json.dumps(flag[c], ensure_ascii=False) if c == "evidence" else flag[c] for c in COLUMNS]
        if await conn.fetchval(_INSERT, *values) is not None:
            new += 1
    if new:
        await conn.execute(f"NOTIFY {CHANNEL}")
    return new


def flag_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `policy_flags` row → its earful.policy_flags.v1 record (pure)."""
    evidence = row["evidence"]
    return {
        "schema_version": 1, "flag_id": str(row["flag_id"]), "rule_id": row["rule_id"], "kind": row["kind"],
        "severity": row["severity"], "description": row["description"], "mention_id": str(row["mention_id"]),
        "source": row["source"], "source_id": row["source_id"], "url": row["url"],
        "created_at": row["mention_created_at"],
        "author": {"handle": row["author_handle"], "id": row["author_id"], "name": row["author_name"]},
        "staff_watchlist_ids": list(row["staff_watchlist_ids"]), "watchlist_ids": list(row["watchlist_ids"]),
        "text": row["text"], "evidence": json.loads(evidence) if isinstance(evidence, str) else list(evidence),
        "detected_at": row["detected_at"],
    }


class PolicyFlagOutbox(TableOutbox):
    """Publishes committed policy flags to earful.policy_flags.v1 (key: the mention id), in id order."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, codec: AvroCodec, *,
                 interval_s: float = INTERVAL_S) -> None:
        sink = KafkaSink(producer, codec, POLICY_FLAGS, flag_record, lambda row: str(row["mention_id"]))
        super().__init__(pool, OUTBOX, sink, interval_s=interval_s)
