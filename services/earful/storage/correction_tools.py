"""`earful corrections add|list|export`: corrections from the command line.

The CLI talks to PostgreSQL directly (EARFUL_DATABASE_URL), through the same function as the API
(`earful.storage.corrections.apply_correction`), so a correction made here is stored, audited and
applied to the mention and its rollups exactly as one made over HTTP. It then tries to publish it
to `earful.corrections.v1` (EARFUL_KAFKA_BOOTSTRAP); without a broker the correction stays
unpublished and the storage service's outbox loop publishes it.

`export` writes the training-data file `earful models train-sentiment|train-ner --corrections`
reads: JSON lines, one per (mention, field), the correction in force (format in docs/models.md).
The options are declared in earful.cli (which imports this module only when the command runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import tempfile
import uuid
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pydantic
from aiokafka.errors import KafkaError

from earful.core.codec import AvroCodec
from earful.core.errors import StorageError, ValidationError
from earful.core.kafka import Codecs, make_producer
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.core.topics import CORRECTIONS
from earful.storage.corrections import (
    CorrectionFilter,
    CorrectionRequest,
    apply_correction,
    export_lines,
    list_corrections,
    mention_corrections,
)
from earful.storage.outbox import CorrectionOutbox
from earful.storage.writer import BrandHandles
from earful.watchlists.files import load_partial

CONNECT_TIMEOUT_S = 10.0


def parse_time(name: str, value: str | None) -> datetime | None:
    """An RFC 3339 time; one without a zone is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{name}: {value!r} is not a time (e.g. 2026-11-02T09:00:00Z)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def request_of(args: argparse.Namespace) -> CorrectionRequest:
    """The correction the options describe (ValidationError naming each problem)."""
    body: dict[str, Any] = {"by": args.by, "note": args.note}
    if args.sentiment is not None:
        body["sentiment"] = args.sentiment
    if args.risks is not None:
        body["risks"] = [t.strip() for t in args.risks.split(",") if t.strip()]
    if args.entities is not None:
        try:
            body["entities"] = json.loads(args.entities)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"--entities is not JSON: {exc}") from exc
    try:
        return CorrectionRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'correction'}: {e['msg']}" for e in exc.errors())
        raise ValidationError(problems) from exc


def cli_principal() -> str:
    """cli:<the operating-system user>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in the environment or the password database (some containers)
        return "cli:unknown"


async def _connect(settings: Settings) -> asyncpg.Connection:
    try:
        conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL (EARFUL_DATABASE_URL): {exc}") from exc
    await migrate(conn)
    return conn


def _brands(settings: Settings) -> BrandHandles:
    """The brand handles of the watchlist folder, for a correction that makes a mention a customer question."""
    found, _ = load_partial(settings.watchlists_dir) if settings.watchlists_dir.exists() else ([], [])
    return BrandHandles.of(w for w, _ in found)


async def _publish(settings: Settings, mention_id: str) -> list[int]:
    """Publish the mention's unpublished corrections now; [] when the broker (or, after the commit,
    PostgreSQL) cannot be reached: the storage service's loop publishes them then."""
    producer = make_producer(settings, "earful-corrections-cli")
    try:
        try:
            await asyncio.wait_for(producer.start(), CONNECT_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError):
            return []  # the caller says the storage service will publish it
        codec: AvroCodec = Codecs(settings).for_topic(CORRECTIONS)
        try:
            pool = await asyncpg.create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=1)
        except (OSError, asyncpg.PostgresError):
            return []
        try:
            return await CorrectionOutbox(pool, producer, codec).publish_mention(mention_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return []
        finally:
            await pool.close()
    finally:
        await producer.stop()


async def _add(args: argparse.Namespace, settings: Settings) -> int:
    request = request_of(args)
    try:
        mention_id = uuid.UUID(args.mention_id)
    except ValueError as exc:
        raise ValidationError(f"MENTION_ID: {args.mention_id!r} is not a mention id (a UUID)") from exc
    conn = await _connect(settings)
    try:
        applied = await apply_correction(conn, mention_id, request, principal=cli_principal(), brands=_brands(settings))
    finally:
        await conn.close()
    published = set(await _publish(settings, applied.mention_id))
    unpublished = [c.id for c in applied.corrections if c.published_at is None and c.id not in published]
    print(json.dumps({"mention_id": applied.mention_id, "stored": applied.created,
                      "corrections": [c.to_json() for c in applied.corrections], "mention": applied.mention},
                     ensure_ascii=False, indent=2))
    if unpublished:
        print(f"corrections {unpublished} are stored and applied but not yet on {CORRECTIONS} (could not publish "
              f"through {settings.kafka_bootstrap}); the storage service publishes them", file=sys.stderr)
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise ValidationError("--limit must be at least 1")
    conn = await _connect(settings)
    try:
        if args.mention:
            try:
                found = await mention_corrections(conn, uuid.UUID(args.mention))
            except ValueError as exc:
                raise ValidationError(f"--mention: {args.mention!r} is not a mention id (a UUID)") from exc
            if found is None:
                raise ValidationError(f"--mention: no stored mention {args.mention}")
            rows = found[:args.limit]
        else:
            kept = CorrectionFilter(watchlist=args.watchlist, since=parse_time("--since", args.since), field=args.field)
            rows = await list_corrections(conn, kept, None, args.limit)
    finally:
        await conn.close()
    for c in rows:
        print(json.dumps(c.to_json(), ensure_ascii=False))
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    kept = CorrectionFilter(watchlist=args.watchlist, since=parse_time("--since", args.since))
    if str(args.out) != "-" and not args.out.parent.is_dir():
        raise ValidationError(f"--out {args.out}: no such folder {args.out.parent}")
    conn = await _connect(settings)
    try:
        if str(args.out) == "-":
            n = await _write(conn, kept, sys.stdout)
        else:
            # Written beside the target and renamed: a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fo:
                    n = await _write(conn, kept, fo)
                os.replace(tmp, args.out)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
    finally:
        await conn.close()
    print(f"exported {n} corrections to {args.out}", file=sys.stderr)
    return 0


async def _write(conn: asyncpg.Connection, kept: CorrectionFilter, fo: Any) -> int:
    n = 0
    async for line in export_lines(conn, kept):
        fo.write(json.dumps(line, ensure_ascii=False) + "\n")
        n += 1
    return n


def run(args: argparse.Namespace, settings: Settings) -> int:
    action = {"add": _add, "list": _list, "export": _export}[args.corrections_command]
    return asyncio.run(action(args, settings))
