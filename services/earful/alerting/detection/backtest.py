"""`earful backtest`: the service's own detector over history, to see when a rule would have fired.

* ``--csv SERIES.csv --out ALERTS.jsonl [--rule volume] [--bucket 5m]``: a pre-counted series
  in NAB's format (``timestamp,value``) through the volume rule; one JSON line per fired alert,
  ``{"timestamp": <the row's timestamp, as written>, "rule": ..., "score": ..., ...}``.
* ``--watchlist ID --from T --to T [--rule R] [--threshold name=value ...]``: the mentions stored
  in PostgreSQL for that watchlist replayed, in event-time order, through its rules (or one
  candidate rule), writing every decision (firing and resolved). History before ``--from``
  (``--warmup``) only trains the baseline.

Settings (`EARFUL_ALERT_*`) apply exactly as in the service; only the bucket length may differ.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import re
import statistics
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import asyncpg

from earful.alerting.detection.detector import observe, observe_counts, tick
from earful.alerting.detection.model import Decision, DetectorConfig, Mention
from earful.alerting.detection.rules import (
    DEFAULT_SEVERITY,
    RULES,
    THRESHOLDS,
    VOLUME_DROP,
    VOLUME_SPIKE,
    RuleDefaults,
    WatchlistRules,
    rules_for,
)
from earful.alerting.detection.state import new_state
from earful.core.errors import StorageError, ValidationError
from earful.core.settings import Settings
from earful.watchlists import AlertRule, Watchlist, WatchlistSet

RULE_ALIASES = {"volume": VOLUME_SPIKE, "negative": "negative_surge", "risk": "risk_mention", "viral": "viral_post",
                "question": "unanswered_question", "unanswered": "unanswered_question", "drop": "volume_drop"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> int:
    """'5m' → 300, '10s' → 10, '1h' → 3600, '300' → 300; ValidationError otherwise."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValidationError(f"bad duration {text!r}: use e.g. 10s, 5m, 1h or a number of seconds")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds < 1 or seconds != int(seconds):
        raise ValidationError(f"bad duration {text!r}: a whole number of seconds, at least 1")
    return int(seconds)


def parse_time(text: str, where: str) -> datetime:
    """RFC 3339 or NAB's 'YYYY-MM-DD HH:MM:SS'; no zone means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{where}: bad timestamp {text!r} (expected e.g. 2015-02-26 21:42:53 or 2026-11-02T07:30:00Z)") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def rule_name(text: str) -> str:
    name = RULE_ALIASES.get(text, text)
    if name not in RULES:
        raise ValidationError(f"unknown rule {text!r}; choose from {', '.join(RULES)} (or volume, negative, risk, viral, question, drop)")
    return name


# --- the CSV form ------------------------------------------------------------------------------


def read_series(path: Path) -> tuple[list[str], list[datetime], list[float]]:
    """(timestamps as written, parsed times, values) of a `timestamp,value` CSV, checked line by line."""
    if not path.is_file():
        raise ValidationError(f"{path}: no such file")
    raw: list[str] = []
    times: list[datetime] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ValidationError(f"{path}: expected a header with timestamp,value (got {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            t = parse_time(row["timestamp"] or "", where)
            try:
                v = float(row["value"])
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"{where}: value {row['value']!r} is not a number") from exc
            if v < 0 or v != v:
                raise ValidationError(f"{where}: value {row['value']!r} must be a count ≥ 0")
            if times and t < times[-1]:
                raise ValidationError(f"{where}: timestamps must not go backwards ({row['timestamp']} after {raw[-1]})")
            raw.append(row["timestamp"])
            times.append(t)
            values.append(v)
    if not times:
        raise ValidationError(f"{path}: no rows")
    return raw, times, values


def infer_bucket_s(times: list[datetime]) -> int:
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times) if b > a]
    return max(1, round(statistics.median(gaps))) if gaps else 60


def backtest_series(raw: list[str], times: list[datetime], values: list[float], rules: WatchlistRules,
                    cfg: DetectorConfig) -> Iterator[dict[str, Any]]:
    """Every firing decision over the series, as the output line."""
    state = new_state()
    for stamp, t, v in zip(raw, times, values):
        idx = int(t.timestamp()) // cfg.bucket_s
        for d in observe_counts(state, rules, idx, round(v), cfg):
            if d.status == "firing":
                yield {"timestamp": stamp, "rule": d.rule, "score": round(d.score, 4), "observed": d.observed,
                       "baseline": round(d.baseline, 4), "alert_id": d.alert_id, "summary": d.summary}


def csv_backtest(path: Path, out: IO[str], rule: str, bucket: str | None, settings: Settings) -> tuple[int, int]:
    """Run the CSV form; returns (rows, alerts)."""
    name = rule_name(rule)
    if name not in (VOLUME_SPIKE, VOLUME_DROP):
        raise ValidationError(f"a timestamp,value series holds counts only: it supports volume_spike and volume_drop, not {name}")
    raw, times, values = read_series(path)
    bucket_s = parse_duration_s(bucket) if bucket else infer_bucket_s(times)
    cfg = replace(DetectorConfig.from_settings(settings), bucket_s=bucket_s)
    defaults = RuleDefaults.from_settings(settings)
    rules = rules_for(Watchlist(path.stem.lower()[:64] or "series", path.stem, "topic", (),
                                alert_rules=(AlertRule(name, severity=DEFAULT_SEVERITY[name]),)), replace(
        defaults, cooldown_s=settings.alert_cooldown_buckets * bucket_s))
    fired = 0
    for line in backtest_series(raw, times, values, rules, cfg):
        out.write(json.dumps(line) + "\n")
        fired += 1
    return len(raw), fired


# --- the stored-history form -------------------------------------------------------------------

_HISTORY_SQL = """
SELECT mention_id::text, source, source_id, author_handle, author_followers, created_at, received_at, sentiment, risks,
       in_reply_to, reposted_from, reposts, replies, watchlist_ids
FROM mentions
WHERE created_at >= $1 AND created_at < $2 AND (watchlist_ids @> ARRAY[$3::text] OR lower(author_handle) = ANY($4::text[]))
ORDER BY created_at, mention_id
"""


def candidate_rules(watchlist: Watchlist, rule: str | None, thresholds: list[str], severity: str | None,
                    pending_s: int | None, cooldown_s: int | None, defaults: RuleDefaults) -> WatchlistRules:
    """The watchlist's rules, or only the candidate rule given on the command line."""
    if rule is None:
        if thresholds or severity or pending_s is not None or cooldown_s is not None:
            raise ValidationError("--threshold, --severity, --pending-s and --cooldown-s describe a candidate: give --rule too")
        return rules_for(watchlist, defaults)
    name = rule_name(rule)
    values: dict[str, float] = {}
    for item in thresholds:
        key, sep, value = item.partition("=")
        if not sep or key not in THRESHOLDS[name]:
            raise ValidationError(f"--threshold {item!r}: use name=value with a name of {name}: {', '.join(THRESHOLDS[name])}")
        try:
            values[key] = float(value)
        except ValueError as exc:
            raise ValidationError(f"--threshold {item!r}: {value!r} is not a number") from exc
    candidate = AlertRule(name, severity=severity or "warning", thresholds=values, pending_s=pending_s or 0,
                          cooldown_s=cooldown_s)
    return rules_for(replace(watchlist, alert_rules=(candidate,)), replace(defaults, packs=False))  # that rule alone


def mention_from_row(row: Any, watchlist_id: str) -> Mention:
    risks = json.loads(row["risks"]) if isinstance(row["risks"], str) else (row["risks"] or [])
    return Mention(
        mention_id=row["mention_id"], created_ms=int(row["created_at"].timestamp() * 1000),
        received_ms=int(row["received_at"].timestamp() * 1000), source=row["source"], source_id=row["source_id"],
        author_handle=row["author_handle"], followers=row["author_followers"], negative=row["sentiment"] == "negative",
        risks=tuple(r["tag"] for r in risks), in_reply_to=row["in_reply_to"], reposted_from=row["reposted_from"],
        engagement=int(row["reposts"] or 0) + int(row["replies"] or 0), observed_ms=None,
        matched=watchlist_id in (row["watchlist_ids"] or ()),
    )


def replay_mentions(mentions: list[Mention], rules: WatchlistRules, cfg: DetectorConfig, report_from_ms: int,
                    until_ms: int) -> Iterator[Decision]:
    """Mentions in event-time order through the detector; decisions before `report_from_ms` are
    training only. Time passes between mentions as it would have (tick), up to `until_ms`."""
    state = new_state()
    for m in mentions:
        for d in tick(state, rules, cfg, m.created_ms) + observe(state, rules, m, cfg, wall_ms=m.created_ms):
            if _decided_at(d) >= report_from_ms:
                yield d
    for d in tick(state, rules, cfg, until_ms):
        if _decided_at(d) >= report_from_ms:
            yield d


def _decided_at(d: Decision) -> int:
    return d.ends_at_ms if d.status == "resolved" and d.ends_at_ms else d.starts_at_ms


def decision_line(d: Decision) -> dict[str, Any]:
    def iso(ms: int | None) -> str | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return {"timestamp": iso(_decided_at(d)), "rule": d.rule, "status": d.status, "score": round(d.score, 4),
            "observed": d.observed, "baseline": round(d.baseline, 4), "alert_id": d.alert_id, "labels": d.labels,
            "starts_at": iso(d.starts_at_ms), "ends_at": iso(d.ends_at_ms), "summary": d.summary,
            "sample_mention_ids": d.sample_mention_ids}


async def load_history(settings: Settings, watchlist: Watchlist, start: datetime, end: datetime) -> list[Mention]:
    """The stored mentions of `watchlist` (matched, or written by its own handles) in [start, end)."""
    try:
        conn = await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL (EARFUL_DATABASE_URL): {exc}") from exc
    try:
        rows = await conn.fetch(_HISTORY_SQL, start, end, watchlist.id, [h.casefold().lstrip("@") for h in watchlist.handles])
    except asyncpg.UndefinedTableError as exc:
        raise StorageError("no mentions table in that database: has the storage service run there (earful migrate)?") from exc
    finally:
        await conn.close()
    return [mention_from_row(r, watchlist.id) for r in rows]


def history_backtest(args: Any, out: IO[str], settings: Settings) -> tuple[int, int]:
    """Run the stored-history form; returns (mentions replayed, decisions written)."""
    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if end <= start:
        raise ValidationError("--to must be after --from")
    watchlists = WatchlistSet.from_file(settings.watchlists_dir)
    watchlist = watchlists.watchlists.get(args.watchlist)
    if watchlist is None:
        raise ValidationError(f"unknown watchlist {args.watchlist!r}; known: {', '.join(sorted(watchlists.watchlists))}")
    cfg = DetectorConfig.from_settings(settings)
    if args.bucket:
        cfg = replace(cfg, bucket_s=parse_duration_s(args.bucket))
    rules = candidate_rules(watchlist, args.rule, args.threshold or [], args.severity, args.pending_s, args.cooldown_s,
                            RuleDefaults.from_settings(settings))
    warmup_s = parse_duration_s(args.warmup) if args.warmup else max(3600, 2 * (cfg.baseline_buckets + cfg.warmup_buckets) * cfg.bucket_s)
    mentions = asyncio.run(load_history(settings, watchlist, start - timedelta(seconds=warmup_s), end))
    print(f"replaying {len(mentions)} stored mentions of {watchlist.id} ({warmup_s}s of warm-up before --from) "
          f"through {', '.join(rules.rules) or 'no rules'}", file=sys.stderr, flush=True)
    written = 0
    for d in replay_mentions(mentions, rules, cfg, int(start.timestamp() * 1000), int(end.timestamp() * 1000)):
        out.write(json.dumps(decision_line(d)) + "\n")
        written += 1
        if d.status == "firing":
            print(f"  would have fired at {decision_line(d)['timestamp']}: {d.summary}", file=sys.stderr)
    return len(mentions), written


def backtest_cli(args: Any, settings: Settings) -> int:
    """`earful backtest`: dispatch between the two forms; errors are one line, never a traceback."""
    if bool(args.csv) == bool(args.watchlist):
        raise ValidationError("give either --csv SERIES.csv or --watchlist ID --from T --to T")
    if args.watchlist and not (args.start and args.end):
        raise ValidationError("--watchlist needs --from and --to")
    target = args.out
    out: IO[str] = sys.stdout if target in (None, Path("-")) else target.open("w", encoding="utf-8")
    try:
        if args.csv:
            rows, fired = csv_backtest(args.csv, out, args.rule or "volume", args.bucket, settings)
            print(f"{rows} rows, {fired} alerts" + (f" → {target}" if out is not sys.stdout else ""), file=sys.stderr)
        else:
            mentions, written = history_backtest(args, out, settings)
            print(f"{mentions} mentions replayed, {written} decisions" + (f" → {target}" if out is not sys.stdout else ""),
                  file=sys.stderr)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
