"""`earful run` and `earful demo`: the whole pipeline on this machine with the sample crisis.

Starts the local broker, a schema registry (so the topics carry the Confluent wire format that
stock consumers decode), finds (or starts) PostgreSQL, starts a webhook receiver and the four
services as separate processes, replays the bundled sample stream, and waits until the crisis
alert reached the receiver and every sent mention is in PostgreSQL. `demo` then stops everything
and prints one JSON summary line last; `run` keeps the stack up until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from earful.core.errors import EarfulError
from earful.core.http import HttpServer
from earful.core.settings import Settings
from earful.core.topics import create_topics
from earful.replay import replay
from earful.webhook_receiver import WebhookReceiver
from earful_dev.sample.generator import read_meta, read_stream
from earful_dev.stack.broker import LocalBroker, free_port
from earful_dev.stack.postgres import PostgresHandle, find_postgres
from earful_dev.stack.processes import Pipeline, StackError
from earful_dev.stack.registry import LocalRegistry

DEFAULT_SPEED = 600.0  # 8 h of sample history in ~48 s


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, the terminal closed


def say(message: str) -> None:
    emit(message, sys.stderr)


def emit(line: str, stream: TextIO) -> None:
    """Print `line` to `stream`, which may have lost its reader: `earful run | tee run.log` after
    Ctrl-C (EPIPE; Python ignores SIGPIPE), or a terminal that was closed (EIO). The stream then
    goes to /dev/null, so the stack still stops everything it started, and exits quietly."""
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):  # ValueError: the stream was closed
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def run_demo(settings: Settings, headless: bool, speed: float | None, work_dir: Path, timeout_s: float) -> int:
    try:
        summary = asyncio.run(_run(settings, headless, speed or DEFAULT_SPEED, work_dir, timeout_s))
    except EarfulError as exc:
        say(f"demo failed: {exc}")
        return 1
    except asyncio.CancelledError:  # Ctrl-C / SIGTERM / SIGHUP: everything started was stopped on the way out
        say("stopped")
        return 0 if not headless else 130
    if summary is None:
        return 1
    if not headless:
        return 0
    emit(json.dumps(summary), sys.stdout)
    ok = summary["mentions_stored"] == summary["mentions_sent"] and summary["alerts_received"] >= 1
    return 0 if ok else 1


async def count_stored(url: str, mention_ids: list[str]) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM mentions WHERE mention_id = ANY($1::uuid[])", mention_ids))
    finally:
        await conn.close()


async def _fresh_alert_state(url: str) -> None:
    """The broker starts empty, so alerting does too: forget a previous local stack's alert state."""
    from earful.alerting.notification.store import reset_local_state
    from earful.core.migrate import migrate

    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        await reset_local_state(conn)
    finally:
        await conn.close()


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM or a hang-up at any stage cancels the run, whose `finally` stops what it
    started (the services and the broker run in sessions of their own: no signal reaches them)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, lambda: task.cancel() if task else None)


async def _run(settings: Settings, headless: bool, speed: float, work_dir: Path, timeout_s: float) -> dict[str, Any] | None:
    _stop_on_signals()
    deadline = time.monotonic() + timeout_s
    log_dir = work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    meta = read_meta()
    crisis = meta["crisis"]
    say(f"Earful local stack (logs in {log_dir}/)")

    broker = LocalBroker.start(log_path=log_dir / "broker.log")
    say(f"  broker      Tansu (Kafka protocol, in memory) on {broker.bootstrap}")
    pg = None
    pipeline: Pipeline | None = None
    server: HttpServer | None = None
    registry: LocalRegistry | None = None
    try:
        registry = LocalRegistry.start()
        say(f"  registry    schema registry (Confluent API, in memory) on {registry.url}")
        pg = await find_postgres("earful", os.environ.get("EARFUL_DATABASE_URL"), work_dir / "postgres", log=lambda m: say(f"  postgres    {m}"))
        await _fresh_alert_state(pg.url)
        receiver = WebhookReceiver(out=log_dir / "alerts.jsonl", echo=False)
        receiver_port = free_port()
        server = HttpServer(receiver.app(), "127.0.0.1", receiver_port)
        await server.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EARFUL_")}
        env.update({
            "EARFUL_KAFKA_BOOTSTRAP": broker.bootstrap,
            "EARFUL_DATABASE_URL": pg.url,
            "EARFUL_WEBHOOK_URLS": f"http://127.0.0.1:{receiver_port}/alerts",
            "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the local receiver: allowed explicitly
            "EARFUL_LOG_FORMAT": "json",
            "EARFUL_LOG_LEVEL": settings.log_level,
            "EARFUL_SCHEMA_DIR": str(settings.schema_dir),
            "EARFUL_SCHEMA_REGISTRY_URL": registry.url,  # Confluent framing: stock tools decode the topics
        })
        await create_topics(Settings(kafka_bootstrap=broker.bootstrap, schema_dir=settings.schema_dir))
        pipeline = Pipeline(env, log_dir)
        pipeline["alerting"].env["EARFUL_ALERT_DASHBOARD_URL"] = pipeline["storage"].url + "/"  # alerts link to it
        say("  starting    ingest, enrichment, alerting, storage (separate processes)...")
        started = time.monotonic()
        pipeline.spawn()  # on this thread, which outlives the services (a worker thread's end would stop them)
        await asyncio.to_thread(pipeline.wait_ready, max(10.0, deadline - time.monotonic()))
        say(f"  ready       all four services in {time.monotonic() - started:.1f}s")
        say(f"  dashboard   {pipeline['storage'].url}/   (query API docs: {pipeline['storage'].url}/docs)")
        say(f"  ingest API  {pipeline['ingest'].url}/v1/mentions   (docs: {pipeline['ingest'].url}/docs)")
        say(f"  webhooks    http://127.0.0.1:{receiver_port}/alerts -> {log_dir / 'alerts.jsonl'}")
        say(f"  topics      Avro in the Confluent wire format; registry {registry.url}, e.g."
            f" kcat -b {broker.bootstrap} -C -t earful.mentions.enriched.v1 -o beginning -e -J -s value=avro -r {registry.url}")

        crisis_start = crisis["start"] if crisis else None
        first_crisis_accepted: list[float] = []

        def on_accepted(batch: list[dict[str, Any]], at: float) -> None:
            if crisis and not first_crisis_accepted and any(
                line["scenario"] == "crisis" and line["mention"]["created_at"] >= crisis_start for line in batch
            ):
                first_crisis_accepted.append(at)

        say(f"  replaying   {meta['count']} sample mentions ({meta['start']} .. {meta['end']}) at {speed:g}x; "
            f"crisis for {crisis['watchlist_id']} at {crisis['start']}")
        stats = await replay(read_stream(), pipeline["ingest"].url, speed=speed, on_accepted=on_accepted,
                             progress=lambda m: say(f"  replay      {m}"))
        distinct = sorted(set(stats.mention_ids))
        say(f"  replayed    {stats.accepted} accepted, {stats.rejected} rejected in {stats.elapsed_s:.1f}s")

        def crisis_alerts() -> list[tuple[dict[str, Any], float]]:
            return [(a, at) for a, at in receiver.alerts_with("firing")
                    if (a.get("labels") or {}).get("watchlist") == crisis["watchlist_id"]]

        stored = 0
        while time.monotonic() < deadline:
            stored = await count_stored(pg.url, distinct)
            if stored == len(distinct) and crisis_alerts():
                break
            for svc in pipeline.services.values():
                if not svc.alive():
                    raise StackError(f"{svc.name} died:\n{svc.log_tail()}")
            await asyncio.sleep(0.5)
        firing = receiver.alerts_with("firing")
        crisis_firing = crisis_alerts()
        latency = (crisis_firing[0][1] - first_crisis_accepted[0]) if crisis_firing and first_crisis_accepted else None
        for r in receiver.alerts:
            for a in r.alerts:
                summary = (a.get("annotations") or {}).get("summary") or (a.get("earful") or {}).get("summary")
                say(f"  ALERT       {str(a.get('status', '?')).upper()}: {summary}")
        if not crisis_firing:
            say("  no crisis alert arrived before the timeout")
        # The crisis may raise several rules' alerts (volume, risk, negative share) in its watchlist's one
        # notification group; false are the alerts of any other watchlist and a second episode of a crisis rule.
        crisis_fingerprints = [a.get("fingerprint") for a, _ in crisis_firing]
        summary = {
            "mentions_sent": len(distinct),
            "mentions_stored": stored,
            "alerts_received": len(firing),
            "alert_latency_s": None if latency is None else round(latency, 3),
            "false_alerts": len(firing) - len(crisis_firing) + len(crisis_fingerprints) - len(set(crisis_fingerprints)),
        }
        if not headless:
            say(f"\nEarful is running. Open {pipeline['storage'].url}/ for the dashboard.")
            if latency is not None:
                say(f"The crisis alert reached the webhook {latency:.2f}s after its first mention was accepted.")
            say("Press Ctrl-C to stop everything.")
            emit(json.dumps(summary), sys.stdout)
            await asyncio.Event().wait()  # until a signal cancels the run
        return summary
    finally:
        await _stop_stack(pipeline, server, broker, pg, registry)


async def _stop_stack(pipeline: Pipeline | None, server: HttpServer | None, broker: LocalBroker,
                      pg: PostgresHandle | None, registry: LocalRegistry | None = None) -> None:
    """Stop what `_run` started: the services (in order), the receiver, the registry, the broker,
    PostgreSQL. Each is stopped even when stopping another failed, and further signals only say it
    is under way."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:  # a second Ctrl-C must not abandon the clean-up
        loop.add_signal_handler(sig, lambda: say("still stopping the local stack..."))
    say("stopping the local stack...")
    async with contextlib.AsyncExitStack() as stopping:  # runs the callbacks last-in first
        if pg is not None:
            stopping.push_async_callback(pg.stop)
        stopping.callback(broker.stop)
        if registry is not None:
            stopping.callback(registry.stop)
        if server is not None:
            stopping.push_async_callback(server.stop)
        if pipeline is not None:
            codes = await asyncio.to_thread(pipeline.stop)
            unclean = {k: v for k, v in codes.items() if v not in (0, None)}
            if unclean:
                say(f"  warning: services exited uncleanly: {unclean}")
