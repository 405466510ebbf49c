"""The `earful` command: one subcommand per service, plus tools for operators and developers."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from earful.core.errors import EarfulError
from earful.core.logs import setup_logging
from earful.core.settings import Settings, load_settings, settings_markdown

SERVICES = ("ingest", "enrichment", "alerting", "storage")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="earful", description="Earful: self-hosted, Kafka-native social listening.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("ingest", "run the ingest service (HTTP push API → raw topic)"),
        ("enrichment", "run the enrichment service (raw → enriched)"),
        ("alerting", "run the alerting service (enriched → alerts → webhooks)"),
        ("storage", "run the storage service (enriched + alerts → PostgreSQL, query API, dashboard)"),
    ):
        sub.add_parser(name, help=text, description=text)

    topics = sub.add_parser("topics", help="declared Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    tsub.add_parser("create", help="create every declared topic (idempotent)")
    tsub.add_parser("list", help="print the topic declarations as JSON")

    sub.add_parser("migrate", help="apply PostgreSQL migrations and exit")
    s = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    s.add_argument("--markdown", action="store_true", help="print the settings reference table instead")

    e = sub.add_parser("enrich", help="run the enrichment processor over a JSONL file of mentions")
    e.add_argument("--in", dest="inp", required=True, type=Path, help="JSONL: one mention per line (ingest API shape)")
    e.add_argument("--out", required=True, type=Path, help="JSONL output: one enriched mention per line")

    bt = sub.add_parser(
        "backtest", help="run the alert detector over history: a timestamp,value CSV or a watchlist's stored mentions",
        description="Either --csv SERIES.csv (NAB format: timestamp,value) or --watchlist ID --from T --to T "
                    "(mentions stored in PostgreSQL). Writes one JSON line per decision; EARFUL_ALERT_* settings apply.")
    bt.add_argument("--csv", type=Path, help="a timestamp,value series (counts per row)")
    bt.add_argument("--watchlist", help="replay this watchlist's stored mentions")
    bt.add_argument("--from", dest="start", help="start of the replayed period (RFC 3339; no zone = UTC)")
    bt.add_argument("--to", dest="end", help="end of the replayed period")
    bt.add_argument("--out", type=Path, help="JSON lines output (default: stdout)")
    bt.add_argument("--rule", help="the rule to run: volume (CSV default), or a candidate rule for --watchlist "
                                   "(volume_spike, negative_surge, risk_mention, viral_post, unanswered_question)")
    bt.add_argument("--bucket", help="bucket length, e.g. 5m or 10s (CSV default: the rows' spacing; else EARFUL_ALERT_BUCKET_S)")
    bt.add_argument("--threshold", action="append", metavar="NAME=VALUE", help="a candidate rule threshold (repeatable)")
    bt.add_argument("--severity", choices=("info", "warning", "critical"), help="the candidate rule's severity")
    bt.add_argument("--pending-s", type=int, help="the candidate rule's pending period")
    bt.add_argument("--cooldown-s", type=int, help="the candidate rule's cooldown")
    bt.add_argument("--warmup", help="history before --from that only trains the baseline (default: 1h or more)")

    sample = sub.add_parser("sample", help="the bundled sample stream")
    ssub = sample.add_subparsers(dest="sample_command", required=True, metavar="ACTION")
    ssub.add_parser("generate", help="(re)generate the sample stream", add_help=False)

    r = sub.add_parser("replay", help="replay a sample stream into an ingest API")
    r.add_argument("file", nargs="?", type=Path, help="stream .jsonl(.gz); default: the bundled sample")
    r.add_argument("--ingest-url", default="http://127.0.0.1:8080", help="ingest base URL")
    r.add_argument("--speed", type=float, default=0.0, help="event time / wall time; 0 = as fast as possible")
    r.add_argument("--batch", type=int, default=100, help="mentions per POST")

    w = sub.add_parser("webhook-receiver", help="a local webhook sink that prints every alert it receives")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=9000)
    w.add_argument("--out", type=Path, help="also append each received alert as a JSON line here")
    w.add_argument("--secret", help="verify X-Earful-Signature with this HMAC key")

    b = sub.add_parser("broker", help="run the local Kafka-protocol broker (Tansu) in the foreground")
    b.add_argument("--port", type=int, default=9092)

    for name, text in (("run", "start the whole local stack, replay the sample crisis, keep running"),
                       ("demo", "the sample crisis end to end, headless; prints a JSON summary last")):
        d = sub.add_parser(name, help=text, description=text)
        d.add_argument("--speed", type=float, default=None, help="replay speed-up (event time / wall time)")
        d.add_argument("--work-dir", type=Path, default=Path(".earful"), help="logs, data and state of the local stack")
        d.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sample", "generate"]:
        from earful.sample.generator import main as generate_main

        return generate_main(argv[2:])
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except EarfulError as exc:
        print(f"earful: {exc}", file=sys.stderr)
        return 2
    service = args.command if args.command in SERVICES else f"cli-{args.command}"
    setup_logging(service, settings.log_level, settings.log_format if args.command in SERVICES else "text")
    try:
        return _dispatch(args, settings)
    except EarfulError as exc:
        print(f"earful {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in SERVICES:
        import importlib

        return importlib.import_module(f"earful.{args.command}.__main__").main(settings)
    if args.command == "topics":
        from earful.core.topics import create_topics, load_topics

        if args.topics_command == "list":
            specs = load_topics(settings.schema_dir)
            print(json.dumps([vars(s) for s in specs.values()], indent=2))
            return 0
        for name, state in asyncio.run(create_topics(settings)).items():
            print(f"{state:8} {name}")
        return 0
    if args.command == "migrate":
        from earful.storage.__main__ import migrate_only

        asyncio.run(migrate_only(settings))
        print("migrations applied")
        return 0
    if args.command == "settings":
        if args.markdown:
            print(settings_markdown())
        else:
            for key, value in settings.model_dump().items():
                print(f"EARFUL_{key.upper()}={value}")
        return 0
    if args.command == "enrich":
        from earful.enrichment.batch import enrich_file

        return enrich_file(args.inp, args.out, settings)
    if args.command == "backtest":
        from earful.alerting.backtest import backtest_cli

        return backtest_cli(args, settings)
    if args.command == "replay":
        from earful.stack.replay import replay_cli

        return replay_cli(args.file, args.ingest_url, args.speed, args.batch)
    if args.command == "webhook-receiver":
        from earful.stack.receiver import run_receiver

        return run_receiver(args.host, args.port, args.out, args.secret)
    if args.command == "broker":
        from earful.stack.broker import run_broker_foreground

        return run_broker_foreground(args.port)
    if args.command in ("run", "demo"):
        from earful.stack.demo import run_demo

        return run_demo(settings, headless=args.command == "demo", speed=args.speed, work_dir=args.work_dir,
                        timeout_s=args.timeout)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
