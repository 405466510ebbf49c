"""The `earful` command: one subcommand per service, plus tools for operators and developers.

The development commands (`run`, `demo`, `broker`, `sample generate`, `storage seed`, and `replay`
without a file) come from the separate `earful-dev` package, which the container images do not
ship: they import it only when they run, and say how to install it when it is missing.

Each command imports the service or tool it runs inside its handler, on purpose: the `earful`
image has no NLP stack (only `earful-nlp` can import enrichment), and `earful settings` or
`earful topics list` should not pay for loading spaCy or FastAPI.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import TypeAlias

from earful.core.errors import EarfulError, ValidationError
from earful.core.logs import setup_logging
from earful.core.settings import Settings, load_settings, settings_markdown
from earful.watchlists.cli import add_commands as add_watchlist_commands
from earful.watchlists.cli import run as run_watchlists

SERVICES = ("ingest", "enrichment", "alerting", "storage")


class DevToolsMissing(EarfulError):
    """A development command ran where the earful-dev package is not installed (e.g. in an image)."""

    kind = "dev_tools_missing"


def dev_module(name: str, command: str) -> ModuleType:
    """`earful_dev.<name>`, or a DevToolsMissing that says how to get it.

    Imported here, on use, not at the top: the images lack earful-dev and every other command must
    still work there.
    """
    try:
        return importlib.import_module(f"earful_dev.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "earful_dev":
            raise
        raise DevToolsMissing(
            f"`earful {command}` is a development command and needs the earful-dev package, which the container "
            "images do not ship. In a clone of the repository run `make install` (or pip install -e ./dev)."
        ) from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="earful", description="Earful: self-hosted, Kafka-native social listening.")
    p.add_argument("--version", action="version", version=f"earful {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_services(sub)
    _add_operations(sub)
    add_watchlist_commands(sub)
    _add_models(sub)
    _add_corrections(sub)
    _add_backtest(sub)
    _add_reprocess(sub)
    _add_report(sub)
    _add_replay(sub)
    _add_dev_tools(sub)
    return p


def version() -> str:
    """The installed package's version (what `earful --version` prints)."""
    try:
        return importlib.metadata.version("earful")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_services(sub: Commands) -> None:
    for name, text in (
        ("ingest", "run the ingest service (HTTP push API → raw topic)"),
        ("enrichment", "run the enrichment service (raw → enriched)"),
        ("alerting", "run the alerting service (enriched → alerts → webhooks)"),
        ("storage", "run the storage service (enriched + alerts → PostgreSQL, query API, dashboard)"),
    ):
        service_parser = sub.add_parser(name, help=text, description=text)
        if name == "storage":
            _storage_actions(service_parser)


def _add_operations(sub: Commands) -> None:
    topics = sub.add_parser("topics", help="declared Kafka topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    tsub.add_parser("create", help="create every declared topic (idempotent)")
    tsub.add_parser("list", help="print the topic declarations as JSON")

    sub.add_parser("migrate", help="apply PostgreSQL migrations and exit")
    s = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    s.add_argument("--markdown", action="store_true", help="print the settings reference table instead")

    e = sub.add_parser("enrich", help="run the enrichment processor over a JSONL file of mentions")
    e.add_argument("--in", dest="inp", required=True, type=Path,
                   help='JSONL: one mention per line, {"id", "text", "lang"?, "source"?, "author"?, "created_at"?} '
                        "or the ingest API shape")
    e.add_argument("--out", required=True, type=Path, help="JSONL output: one enriched mention per line")

    w = sub.add_parser("webhook-receiver", help="a local webhook sink that prints every alert it receives")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=9000)
    w.add_argument("--out", type=Path, help="also append each received alert as a JSON line here")
    w.add_argument("--secret", help="verify the Standard Webhooks signature (webhook-signature) with this key; refuse timestamps over 5 min off")


def _add_models(sub: Commands) -> None:
    models = sub.add_parser("models", help="train and evaluate the enrichment models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ts = msub.add_parser("train-sentiment", help="train the sentiment model on TweetEval and UMSAB train (8 languages)")
    ts.add_argument("--data", required=True, type=Path,
                    help="folder with sentiment/tweeteval-en and sentiment/umsab/<language>/train_text.txt")
    ts.add_argument("--out", type=Path, default=None, help="model folder to write (default: the shipped model's)")
    ts.add_argument("--corrections", type=Path, default=None,
                    help="JSONL of corrections (earful corrections export); the sentiment ones are added as training texts")
    th = msub.add_parser("train-romanised-hindi", help="train the romanised Hindi detector of the language step")
    th.add_argument("--data", required=True, type=Path, help="the evaluation data folder (e.g. ../shared/eval)")
    th.add_argument("--out", type=Path, default=None, help="model folder to write (default: the shipped model's)")
    tn = msub.add_parser("train-ner", help="train the NER model on WNUT-17 train, WNUT-16 test and the Broad Twitter Corpus")
    tn.add_argument("--data", required=True, type=Path, help="folder with ner/wnut17, ner/wnut16 and ner/broad-twitter-corpus")
    tn.add_argument("--out", type=Path, default=None, help="pipeline folder to write (default: the shipped model's)")
    tn.add_argument("--max-steps", type=int, default=2400, help="training steps")
    tn.add_argument("--corrections", type=Path, default=None,
                    help="JSONL of corrections; the English entity ones are added as training sentences")
    ev = msub.add_parser("evaluate", help="print every enrichment accuracy figure as JSON")
    ev.add_argument("--data", required=True, type=Path, help="the evaluation data folder (e.g. ../shared/eval)")
    ev.add_argument("--only", default="sentiment,ner,language,risk,questions",
                    help="comma-separated: sentiment,ner,language,risk,questions")


def _add_corrections(sub: Commands) -> None:
    """`earful corrections add|list|export` (earful.storage.correction_tools; PostgreSQL at EARFUL_DATABASE_URL)."""
    c = sub.add_parser("corrections", help="correct mentions' sentiment, entities and risk tags; list and export corrections")
    csub = c.add_subparsers(dest="corrections_command", required=True, metavar="ACTION")
    add = csub.add_parser("add", help="correct (or confirm) one mention; applied to it and its rollups at once",
                          description="Correct (or confirm) one mention: at least one of --sentiment, --risks, --entities. "
                                      "Prints the stored corrections as JSON.")
    add.add_argument("mention_id", help="the mention's id (a UUID, as GET /v1/mentions lists it)")
    add.add_argument("--sentiment", choices=("negative", "neutral", "positive"), help="the right sentiment")
    add.add_argument("--risks", help="the complete set of risk/intent tags, comma-separated ('' = none)")
    add.add_argument("--entities", help='the complete list of entities as JSON: [{"text", "type", "start", "end"}, ...]')
    add.add_argument("--by", help="who is correcting (default: cli:<your user name>)")
    add.add_argument("--note", help="why, for the audit trail")
    ls = csub.add_parser("list", help="print corrections as JSON lines, newest first")
    ls.add_argument("--mention", help="only this mention's corrections, oldest first (its audit trail)")
    ls.add_argument("--watchlist", help="only corrections of this watchlist's mentions")
    ls.add_argument("--since", help="only corrections made from this time (RFC 3339; no zone = UTC)")
    ls.add_argument("--field", choices=("sentiment", "entities", "risks"), help="only corrections of this field")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ex = csub.add_parser("export", help="write the corrections in force as training data (JSON lines)",
                         description="One line per (mention, field), the correction in force, with the mention's text "
                                     "(docs/models.md, 'Corrections as training data').")
    ex.add_argument("--out", required=True, type=Path, help="the JSONL file to write ('-': standard output)")
    ex.add_argument("--since", help="only corrections made from this time (RFC 3339; no zone = UTC)")
    ex.add_argument("--watchlist", help="only corrections of this watchlist's mentions")


def _add_backtest(sub: Commands) -> None:
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
                                   "(volume_spike, negative_surge, risk_mention, viral_post, unanswered_question, volume_drop)")
    bt.add_argument("--bucket", help="bucket length, e.g. 5m or 10s (CSV default: the rows' spacing; else EARFUL_ALERT_BUCKET_S)")
    bt.add_argument("--threshold", action="append", metavar="NAME=VALUE", help="a candidate rule threshold (repeatable)")
    bt.add_argument("--severity", choices=("info", "warning", "critical"), help="the candidate rule's severity")
    bt.add_argument("--pending-s", type=int, help="the candidate rule's pending period")
    bt.add_argument("--cooldown-s", type=int, help="the candidate rule's cooldown")
    bt.add_argument("--warmup", help="history before --from that only trains the baseline (default: 1h or more)")



def _add_reprocess(sub: Commands) -> None:
    """`earful reprocess` (earful.storage.reprocess; PostgreSQL at EARFUL_DATABASE_URL, the broker for the watchlists
    in force and the re-scored records)."""
    r = sub.add_parser(
        "reprocess", help="re-enrich stored mentions with the current models, in place, every count adjusted",
        description="Re-enrich the stored mentions of a period (optionally of one watchlist or source) with the models "
                    "and watchlists in force: changed fields and provenance are stored, every rollup is adjusted exactly, "
                    "and each re-scored mention is published to earful.mentions.enriched.v1 with reprocessed_at set. "
                    "Resumable (--resume), idempotent, throttled (docs/history.md). Prints a JSON summary last.")
    r.add_argument("--from", dest="start", help="first creation time covered (RFC 3339; no zone = UTC)")
    r.add_argument("--to", dest="end", help="end of the period, excluded")
    r.add_argument("--watchlist", help="only mentions stored with this watchlist")
    r.add_argument("--source", help="only mentions of this source, e.g. twitter")
    r.add_argument("--rate", type=float, help="at most this many mentions per second (default 100)")
    r.add_argument("--batch", type=int, default=100, help="mentions per transaction (default 100; at most --rate)")
    r.add_argument("--max-live-lag", type=int, default=1000, metavar="RECORDS",
                   help="pause while the live enrichment, alerting or storage consumers are more than this many records"
                        " behind, until half of it (default 1000; 0: do not watch)")
    r.add_argument("--resume", type=int, metavar="JOB", help="continue a stopped job (its period and filters)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")


def _add_report(sub: Commands) -> None:
    """`earful report` (earful.storage.report; PostgreSQL at EARFUL_DATABASE_URL, read only)."""
    r = sub.add_parser(
        "report", help="write a watchlist's executive report: figures, charts, KPIs, risks, alerts (PDF or HTML)",
        description="The executive report of one watchlist over a period, compared with the period before, each figure "
                    "linked to the dashboard view that shows it (docs/reports.md). Default period: the latest complete "
                    "Monday-to-Sunday UTC week with mentions of the watchlist.")
    r.add_argument("--watchlist", required=True, help="the watchlist's id, e.g. acme-air")
    r.add_argument("--from", dest="start", help="start of the period (RFC 3339 or YYYY-MM-DD; no zone = UTC); with --to")
    r.add_argument("--to", dest="end", help="end of the period, excluded (RFC 3339 or YYYY-MM-DD); with --from")
    r.add_argument("--period", choices=("last-week", "last-month"),
                   help="last-week: the last complete Monday-to-Sunday UTC week; last-month: the last complete calendar month")
    r.add_argument("--format", dest="fmt", choices=("pdf", "html"), help="default: html for an --out ending in .html, else pdf")
    r.add_argument("--out", required=True, help="the file to write ('-': standard output)")
    r.add_argument("--tz", default="UTC", help="IANA time zone of the times shown, e.g. Europe/London (default UTC)")


def _add_replay(sub: Commands) -> None:
    r = sub.add_parser("replay", help="replay a JSONL/CSV file of mentions into an ingest API or straight to Kafka",
                       description="Replay a JSONL or CSV file (optionally .gz) of mentions: Earful stream files, bare "
                       "mentions, or other tools' exports (columns mapped by name; see docs/connectors.md).")
    r.add_argument("file", nargs="?", type=Path, help="a .jsonl, .csv or .tsv file, optionally .gz; default: the bundled sample")
    r.add_argument("--ingest-url", default="http://127.0.0.1:8080", help="ingest base URL (key from EARFUL_INGEST_API_KEYS)")
    r.add_argument("--to-kafka", action="store_true", help="produce straight to the raw topic (EARFUL_KAFKA_BOOTSTRAP) instead")
    r.add_argument("--speed", type=float, default=0.0, help="event time / wall time: 1 = original speed, 60 = a minute per second, "
                   "0 = as fast as possible (default)")
    r.add_argument("--batch", type=int, default=None, help="mentions per POST (default 100) or produce batch (default 500)")
    r.add_argument("--format", dest="fmt", choices=("auto", "jsonl", "csv"), default="auto", help="default: from the file name")
    r.add_argument("--source", default="import", help="source of rows without one (default: import)")
    r.add_argument("--map", dest="mapping", action="append", default=[], metavar="FIELD=COLUMN",
                   help="read FIELD from COLUMN, e.g. --map text='Full Text' (repeatable)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")



def _add_dev_tools(sub: Commands) -> None:
    """The commands of the earful-dev package (see the module docstring)."""
    sample = sub.add_parser("sample", help="the bundled sample stream")
    ssub = sample.add_subparsers(dest="sample_command", required=True, metavar="ACTION")
    ssub.add_parser("generate", help="(re)generate the sample stream", add_help=False)

    b = sub.add_parser("broker", help="run the local Kafka-protocol broker (Tansu) in the foreground")
    b.add_argument("--port", type=int, default=9092)

    for name, text in (("run", "start the whole local stack, replay the sample crisis, keep running"),
                       ("demo", "the sample crisis end to end, headless; prints a JSON summary last")):
        d = sub.add_parser(name, help=text, description=text)
        d.add_argument("--speed", type=float, default=None, help="replay speed-up (event time / wall time)")
        d.add_argument("--work-dir", type=Path, default=Path(".earful"), help="logs, data and state of the local stack")
        d.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")


def _storage_actions(storage: argparse.ArgumentParser) -> None:
    """`earful storage ACTION`: data maintenance (without an action, `earful storage` runs the service)."""
    actions = storage.add_subparsers(dest="storage_command", required=False, metavar="ACTION")
    seed = actions.add_parser("seed", help="load a large generated data set (benchmarks, demos) into an empty database",
                              description="Load a large generated data set into an empty database.")
    seed.add_argument("--mentions", type=int, default=5_000_000, help="mentions to generate (default 5,000,000)")
    seed.add_argument("--days", type=int, default=90, help="days they span, ending today (default 90)")
    seed.add_argument("--watchlists", type=int, default=50, help="brand watchlists (default 50)")
    seed.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    seed.add_argument("--end", type=date.fromisoformat, default=None, help="last day (YYYY-MM-DD, UTC); default today")
    seed.add_argument("--database", default=None,
                      help="database name on the server of EARFUL_DATABASE_URL (created if missing); default: that URL's")
    seed.add_argument("--watchlists-out", type=Path, default=None,
                      help="also write the generated watchlists here (usable as EARFUL_WATCHLISTS_DIR)")
    ret = actions.add_parser("retention", help="drop partitions and rows older than EARFUL_STORAGE_RETENTION_DAYS",
                             description="Drop mention partitions, rollups, questions and alerts older than the retention period.")
    ret.add_argument("--days", type=int, default=None, help="override EARFUL_STORAGE_RETENTION_DAYS for this run")
    ret.add_argument("--dry-run", action="store_true", help="only print what would be dropped")
    erase = actions.add_parser("erase", help="erase every mention of an author everywhere (privacy request)",
                               description="Erase every mention of an author, including rollups, and record the erasure.")
    erase.add_argument("--source", required=True, help="source, e.g. twitter")
    erase.add_argument("--author", required=True, help="handle (case-insensitive, @ optional) or account id")
    erase.add_argument("--yes", action="store_true", help="really erase (without it: only count what would be erased)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sample", "generate"]:
        try:
            generator = dev_module("sample.generator", "sample generate")
        except DevToolsMissing as exc:
            print(f"earful sample: {exc}", file=sys.stderr)
            return 1
        return int(generator.main(argv[2:]))
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except EarfulError as exc:
        print(f"earful: {exc}", file=sys.stderr)
        return 2
    is_service = args.command in SERVICES and not getattr(args, "storage_command", None)
    service = args.command if is_service else f"cli-{args.command}"
    setup_logging(service, settings.log_level, settings.log_format if is_service else "text")
    try:
        return _dispatch(args, settings)
    except EarfulError as exc:
        print(f"earful {args.command}: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # e.g. enrichment started from the image without the NLP stack
        print(f"earful {args.command}: this installation lacks the Python module {exc.name!r}. "
              "The `earful` container image has no NLP stack: run enrichment (and `earful enrich`) from the "
              "`earful-nlp` image; elsewhere install Earful's `nlp` extra (pip install 'earful[nlp]'; see deploy/README.md).",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `earful settings | head`: the reader left early, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush stays quiet
        return 0


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command in SERVICES and not getattr(args, "storage_command", None):
        return int(importlib.import_module(f"earful.{args.command}.__main__").main(settings))
    return _HANDLERS[args.command](args, settings)


def _storage_tool(args: argparse.Namespace, settings: Settings) -> int:
    if args.storage_command == "seed":
        return int(dev_module("seed", "storage seed").seed_command(args, settings))
    from earful.storage.tools import run_tool

    return run_tool(args, settings)


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from earful.core.topics import create_topics, load_topics

    if args.topics_command == "list":
        specs = load_topics(settings.schema_dir)
        print(json.dumps([vars(s) for s in specs.values()], indent=2))
        return 0
    for name, state in asyncio.run(create_topics(settings)).items():
        print(f"{state:8} {name}")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from earful.storage.__main__ import migrate_only

    asyncio.run(migrate_only(settings))
    print("migrations applied")
    return 0


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(settings_markdown())
    else:
        for key, value in settings.model_dump().items():
            print(f"EARFUL_{key.upper()}={value}")
    return 0


def _enrich(args: argparse.Namespace, settings: Settings) -> int:
    from earful.enrichment.batch import enrich_file

    return enrich_file(args.inp, args.out, settings)


def _corrections(args: argparse.Namespace, settings: Settings) -> int:
    from earful.storage.correction_tools import run

    return run(args, settings)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from earful.storage.report import run

    return run(args, settings)


def _reprocess(args: argparse.Namespace, settings: Settings) -> int:
    from earful.enrichment.processor import EnrichmentProcessor
    from earful.storage.reprocess import reprocess_cli

    return reprocess_cli(args, settings, lambda watchlists: EnrichmentProcessor.from_settings(settings, watchlists))


def _watchlists(args: argparse.Namespace, settings: Settings) -> int:
    if args.watchlists_command == "backfill":
        from earful.storage.backfill import backfill_cli

        return backfill_cli(args, settings)
    return run_watchlists(args, settings.watchlists_dir)


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    from earful.alerting.detection.backtest import backtest_cli

    return backtest_cli(args, settings)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from earful.replay import replay_cli

    batch = args.batch if args.batch is not None else (500 if args.to_kafka else 100)
    path = args.file or _bundled_sample()
    return replay_cli(path, args.ingest_url, args.speed, batch, settings=settings, to_kafka=args.to_kafka,
                      fmt=args.fmt, source=args.source, mapping=args.mapping, progress=not args.no_progress)


def _webhook_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from earful.webhook_receiver import run_receiver

    return run_receiver(args.host, args.port, args.out, args.secret)


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    return int(dev_module("stack.broker", "broker").run_broker_foreground(args.port))


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    run_demo = dev_module("stack.demo", args.command).run_demo
    return int(run_demo(settings, headless=args.command == "demo", speed=args.speed, work_dir=args.work_dir,
                        timeout_s=args.timeout))


def _bundled_sample() -> Path:
    """The sample stream `earful replay` sends when given no file (it ships with earful-dev)."""
    try:
        generator = dev_module("sample.generator", "replay")
    except DevToolsMissing as exc:
        raise DevToolsMissing("no FILE given, and the bundled sample stream comes with the earful-dev package, which "
                              "the container images do not ship: name the file to replay (mount it into the container), "
                              "or in a clone of the repository run `make install`.") from exc
    return Path(generator.PACKAGE_DIR) / generator.STREAM_FILE


def _models(args: argparse.Namespace, settings: Settings) -> int:
    if not args.data.is_dir():
        raise ValidationError(f"--data {args.data}: no such folder")
    if args.models_command == "train-sentiment":
        from earful.enrichment.sentiment import BUILTIN_DIR
        from earful.enrichment.training import train_sentiment

        if args.corrections is not None and not args.corrections.is_file():
            raise ValidationError(f"--corrections {args.corrections}: no such file")
        print(json.dumps(train_sentiment(args.data, args.out or BUILTIN_DIR, corrections=args.corrections), indent=2))
        return 0
    if args.models_command == "train-romanised-hindi":
        from earful.enrichment.language import HINGLISH_DIR
        from earful.enrichment.training import train_romanised_hindi

        print(json.dumps(train_romanised_hindi(args.data, args.out or HINGLISH_DIR), indent=2))
        return 0
    if args.models_command == "train-ner":
        from earful.enrichment.ner import BUILTIN_DIR as NER_DIR
        from earful.enrichment.ner_training import train_ner

        meta = train_ner(args.data, args.out or NER_DIR, corrections=args.corrections, max_steps=args.max_steps)
        print(json.dumps({k: meta[k] for k in ("name", "version", "performance") if k in meta}, indent=2))
        return 0
    from earful.enrichment.evaluation import evaluate_all

    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - {"sentiment", "ner", "language", "risk", "questions"}
    if unknown:
        raise ValidationError(f"--only: unknown {', '.join(sorted(unknown))}; "
                              "choose from sentiment, ner, language, risk, questions")
    print(json.dumps(evaluate_all(args.data, only, settings), indent=2))
    return 0


_HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "storage": _storage_tool, "topics": _topics, "migrate": _migrate, "settings": _settings, "enrich": _enrich,
    "watchlists": _watchlists, "models": _models, "reprocess": _reprocess,
    "backtest": _backtest, "report": _report, "corrections": _corrections, "replay": _replay, "webhook-receiver": _webhook_receiver, "broker": _broker,
    "run": _stack, "demo": _stack,
}


if __name__ == "__main__":
    sys.exit(main())
