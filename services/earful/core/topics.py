"""Topic declarations (``schemas/topics.yaml``) and their explicit creation.

The YAML is the single place that says which topics exist, who produces and consumes them, how
they are keyed and kept. ``earful topics create`` creates every declared topic and is safe to
run again; services also call it at start-up so a fresh broker never auto-creates a topic with
the wrong partition count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from earful.core.errors import BrokerError, SchemaError
from earful.core.kafka_security import client_kwargs, start_client
from earful.core.settings import Settings

log = logging.getLogger(__name__)

RAW = "earful.mentions.raw.v1"
ENRICHED = "earful.mentions.enriched.v1"
ALERTS = "earful.alerts.v1"
DLQ = "earful.dlq.v1"
WATCHLISTS = "earful.watchlists.v1"
CORRECTIONS = "earful.corrections.v1"
ERASURES = "earful.erasures.v1"
LEADS = "earful.leads.v1"
POLICY_FLAGS = "earful.policy_flags.v1"
CASES = "earful.cases.v1"
ALERTING_BY_WATCHLIST = "earful.alerting.by-watchlist.v1"
ALERTING_DETECTOR_CHANGELOG = "earful-alerting-detector-changelog"

_TOPIC_ALREADY_EXISTS = 36
_REQUIRED = ("name", "doc", "key", "value_schema", "partitions", "cleanup_policy", "producers", "consumers")


@dataclass(frozen=True)
class TopicSpec:
    """One declared topic."""

    name: str
    doc: str
    key: str
    value_schema: str | None
    partitions: int
    retention_ms: int | None
    cleanup_policy: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    dlq: str | None
    public: bool
    copartitioned_with: str | None = None

    def config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


def load_topics(schema_dir: Path) -> dict[str, TopicSpec]:
    """Read and check ``topics.yaml``: every field present, schemas exist, DLQs declared."""
    path = schema_dir / "topics.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SchemaError(f"cannot read topic declarations {path}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), list) or not doc["topics"]:
        raise SchemaError(f"{path}: expected a non-empty top-level 'topics:' list")
    specs: dict[str, TopicSpec] = {}
    for i, entry in enumerate(doc["topics"]):
        if not isinstance(entry, dict):
            raise SchemaError(f"{path}: topic #{i} is not a mapping")
        missing = [k for k in _REQUIRED if k not in entry]
        if missing:
            raise SchemaError(f"{path}: topic #{i} lacks {', '.join(missing)}")
        for numeric in ("partitions", "retention_ms"):
            value = entry.get(numeric)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise SchemaError(f"{path}: {entry['name']}: {numeric} must be a positive integer, not {value!r}")
        spec = TopicSpec(
            name=entry["name"],
            doc=entry["doc"],
            key=entry["key"],
            value_schema=entry["value_schema"],
            partitions=int(entry["partitions"]),
            retention_ms=entry.get("retention_ms"),
            cleanup_policy=entry["cleanup_policy"],
            producers=tuple(entry["producers"]),
            consumers=tuple(entry["consumers"]),
            dlq=entry.get("dlq"),
            public=bool(entry.get("public", False)),
            copartitioned_with=entry.get("copartitioned_with"),
        )
        if spec.name in specs:
            raise SchemaError(f"{path}: topic {spec.name} declared twice")
        if spec.value_schema and not (schema_dir / spec.value_schema).is_file():
            raise SchemaError(f"{path}: {spec.name} names missing schema {spec.value_schema}")
        specs[spec.name] = spec
    for spec in specs.values():
        for ref in (spec.dlq, spec.copartitioned_with):
            if ref and ref not in specs:
                raise SchemaError(f"{path}: {spec.name} refers to undeclared topic {ref}")
        if spec.copartitioned_with and specs[spec.copartitioned_with].partitions != spec.partitions:
            raise SchemaError(f"{path}: {spec.name} must have the partitions of {spec.copartitioned_with}")
    return specs


def partitions_for(spec: TopicSpec, settings: Settings) -> int:
    """Declared partitions, unless EARFUL_TOPIC_PARTITIONS overrides them all."""
    return settings.topic_partitions or spec.partitions


async def create_topics(settings: Settings, names: list[str] | None = None) -> dict[str, str]:
    """Create the declared topics that do not exist yet. Returns name → 'created' | 'exists'."""
    specs = load_topics(settings.schema_dir)
    wanted = [specs[n] for n in names] if names else list(specs.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="earful-topics",
                                **client_kwargs(settings))
    await start_client(admin, settings, "the topic admin client")  # a BrokerError naming broker, protocol and reason
    result: dict[str, str] = {}
    try:
        new = [
            NewTopic(
                s.name,
                num_partitions=partitions_for(s, settings),
                replication_factor=settings.topic_replication_factor,
                topic_configs=s.config(),
            )
            for s in wanted
        ]
        response = await admin.create_topics(new)
        for name, code, message in _topic_errors(response):
            if code == 0:
                result[name] = "created"
            elif code == _TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise BrokerError(f"cannot create topic {name}: error {code} {message or ''}".strip())
    except KafkaError as exc:
        raise BrokerError(f"creating topics failed: {exc}") from exc
    finally:
        await admin.close()
    for name, state in result.items():
        log.debug("topic %s", state, extra={"topic": name})
    return result


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for item in response.topic_errors:
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((name, code, message))
    return out
