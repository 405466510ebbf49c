"""What the benchmarks in bench/ share: a fresh in-memory broker (also behind a TCP proxy that can
cut it off), a throw-away PostgreSQL database, webhook receivers on a free port (one that can be
made to fail), service processes started and watched as a group, a bounded mention load for the
push API, and the memory of a process from /proc.

Each resource is a context manager that stops, drops or closes what it started on the way out, so
a benchmark that fails half-way leaves no broker, database, proxy or server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.http import HttpServer
from earful.webhook_receiver import Received, WebhookReceiver
from earful_dev.stack.broker import LocalBroker, free_port, stop_with_parent, tansu_binary, terminate, wait_for_port
from earful_dev.stack.postgres import find_postgres
from earful_dev.stack.processes import ServiceProcess, service_env


@contextlib.contextmanager
def local_broker(log_path: Path | None = None) -> Iterator[LocalBroker]:
    """A new in-memory Tansu broker (no topics yet: `earful.core.topics.create_topics`)."""
    broker = LocalBroker.start(log_path=log_path)
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def postgres_database(name: str, data_dir: Path, *, keep: bool = False,
                            log: Callable[[str], None] = print) -> AsyncIterator[str]:
    """The URL of database `name`, created if missing, on the PostgreSQL `earful run` would use.

    That is EARFUL_DATABASE_URL's server if set, else the machine's, else the embedded one in
    `data_dir` (started here and stopped on the way out). The database is dropped at the end
    unless `keep`.
    """
    handle = await find_postgres(name, os.environ.get("EARFUL_DATABASE_URL"), data_dir, log=log)
    url = with_database(handle.url, name)
    try:
        await ensure_database(url)
        yield url
    finally:
        try:
            if not keep:
                await drop_database(url)
                log(f"dropped database {name}")
        finally:
            await handle.stop()


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A receiver recording every alert, and the URL to point EARFUL_WEBHOOK_URLS at."""
    async with _serving(WebhookReceiver()) as served:
        yield served


@contextlib.asynccontextmanager
async def _serving(receiver: Any) -> AsyncIterator[tuple[Any, str]]:
    """`receiver`'s app on a free local port while the block runs, with its /alerts URL."""
    server = HttpServer(receiver.app(), "127.0.0.1", free_port())
    await server.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.port}/alerts"
    finally:
        await server.stop()


# --------------------------------------------------------------------------- processes


def process_memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc/<pid>/status (VmRSS, VmHWM)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class ServiceGroup:
    """Service processes of one benchmark, by label (e.g. "enrichment-2" runs `earful enrichment`).

    Processes are started on the calling thread, which must outlive them (`ServiceProcess.start`):
    call `spawn` and `restart` from the event loop's thread, never from a worker thread.
    """

    def __init__(self, labels: list[str], env: dict[str, str], log_dir: Path,
                 extra_env: dict[str, dict[str, str]] | None = None) -> None:
        self.services: dict[str, ServiceProcess] = {}
        for label in labels:
            name = label.split("-", 1)[0]
            port = free_port()
            base = {**env, **(extra_env or {}).get(name, {})}
            self.services[label] = ServiceProcess(name, port, service_env(base, name, port), log_dir / f"{label}.log")

    def __getitem__(self, label: str) -> ServiceProcess:
        return self.services[label]

    def spawn(self) -> None:
        for svc in self.services.values():
            svc.start()

    async def wait_ready(self, timeout_s: float) -> None:
        for svc in self.services.values():
            await asyncio.to_thread(svc.wait_ready, timeout_s)

    def pids(self) -> dict[str, int]:
        return {label: svc.process.pid for label, svc in self.services.items() if svc.process and svc.alive()}

    def dead(self) -> list[str]:
        """Labels of the processes that were started and have exited."""
        return [label for label, svc in self.services.items() if svc.process is not None and not svc.alive()]

    async def restart(self, label: str, timeout_s: float) -> float:
        """Start `label` again (it must have exited) and wait until ready; returns the seconds it took."""
        svc = self.services[label]
        started = time.monotonic()
        svc.start()
        await asyncio.to_thread(svc.wait_ready, timeout_s)
        return time.monotonic() - started

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM each, ingest first and storage last (as `Pipeline.stop`)."""
        order = sorted(self.services, key=lambda label: ("ingest", "enrichment", "alerting", "storage").index(
            label.split("-", 1)[0]))
        return {label: await asyncio.to_thread(self.services[label].stop) for label in order}


# --------------------------------------------------------------------------- a broker that can be cut off


class TcpProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, in a process of its own (so the
    forwarding never waits for the benchmark's own Python code, which holds the GIL).

    `cut()` resets every open connection and refuses new ones (RST) until `restore()`: to its
    clients the broker behind it is unreachable, as in a network partition that answers with
    resets, while the broker keeps running (Tansu keeps its records only in memory).
    """

    CUT, RESTORE = signal.SIGUSR1, signal.SIGUSR2

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the proxy process (on the calling thread, which must outlive it) and wait until it listens."""
        import earful
        import earful_dev

        paths = [str(Path(m.__file__).resolve().parents[1]) for m in (earful, earful_dev) if m.__file__]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*paths, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "earful_dev.bench", "proxy", str(self.port), str(self.target_port)], env=env,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=stop_with_parent(),
        )
        wait_for_port(self.port, 30.0, self.process)

    def cut(self) -> None:
        if self.process is not None:
            self.process.send_signal(self.CUT)

    def restore(self) -> None:
        if self.process is not None:
            self.process.send_signal(self.RESTORE)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, 5.0)


class _ProxyServer:
    """The proxy process's event loop: forwarding, and cutting off on SIGUSR1 until SIGUSR2."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port, self.target_port = port, target_port
        self.cut_off = False
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        loop.add_signal_handler(TcpProxy.CUT, self._cut)
        loop.add_signal_handler(TcpProxy.RESTORE, setattr, self, "cut_off", False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        async with server:
            await stopped.wait()
        self._cut()

    def _cut(self) -> None:
        self.cut_off = True
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        if not writer.is_closing():  # pass the end of the stream on (half-close)
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped route does, rather than an orderly FIN."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


@contextlib.contextmanager
def proxied_broker(log_path: Path | None = None) -> Iterator[tuple[LocalBroker, TcpProxy]]:
    """A new in-memory Tansu broker reachable only through a `TcpProxy`: the broker advertises the
    proxy's address, so every connection (bootstrap and partition leaders) goes through it.
    The yielded broker's `bootstrap` is the proxy's address."""
    real_port = free_port()
    proxy = TcpProxy(real_port)
    proxy.start()
    log = open(log_path, "ab") if log_path else None
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{real_port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}", "--storage-engine", "memory://tansu/"],
        stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=stop_with_parent(),
    )
    broker = LocalBroker(proxy.port, process)
    try:
        wait_for_port(real_port, 20.0, process)
        yield broker, proxy
    finally:
        broker.stop()
        proxy.stop()
        if log is not None:
            log.close()


# --------------------------------------------------------------------------- a webhook receiver that can fail


@dataclass
class RecordingReceiver:
    """Records every notification POSTed to it, duplicates included (unlike `WebhookReceiver`,
    which drops a repeated idempotency key), and answers 500 while `failing` is set."""

    deliveries: list[Received] = field(default_factory=list)
    refusals: list[Received] = field(default_factory=list)  # the notifications answered 500
    failing: bool = False

    @property
    def refused(self) -> int:
        return len(self.refusals)

    def app(self) -> FastAPI:
        app = FastAPI(title="Earful benchmark webhook receiver")

        @app.post("/alerts")
        async def receive(request: Request) -> JSONResponse:
            body = await request.body()
            try:
                payload = json.loads(body)
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
            received = Received(payload, time.time(), request.headers.get("X-Earful-Idempotency-Key"))
            if self.failing:
                self.refusals.append(received)
                return JSONResponse({"error": "failing on purpose"}, status_code=500)
            self.deliveries.append(received)
            return JSONResponse({"ok": True})

        return app


@contextlib.asynccontextmanager
async def recording_webhook_receiver() -> AsyncIterator[tuple[RecordingReceiver, str]]:
    """A `RecordingReceiver` and the URL to point EARFUL_WEBHOOK_URLS at."""
    async with _serving(RecordingReceiver()) as served:
        yield served


# --------------------------------------------------------------------------- load


def brand_watchlists(path: Path, count: int) -> list[tuple[str, str]]:
    """`count` brand watchlists with one-word names no other brand contains, written to the YAML
    file `path` (for EARFUL_WATCHLISTS_DIR); returns (id, term) pairs."""
    brands = [(f"bench-{i:02d}", f"Benchbrand{i:02d}") for i in range(count)]
    lines = ["watchlists:"]
    for wid, term in brands:
        lines += [f"  - id: {wid}", f"    name: {term}", "    kind: brand", f'    terms: ["{term}", "#{term}"]']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return brands


def _poisson(rng: random.Random, lam: float) -> int:
    k, p, threshold = 0, rng.random(), math.exp(-lam)
    while p > threshold:
        k += 1
        p *= rng.random()
    return k


@dataclass
class LoadStats:
    """What a `MentionLoad` sent and what ingest made of it (counts of mentions)."""

    generated: int = 0
    accepted: dict[str, float] = field(default_factory=dict)  # source_id → when ingest first answered 202
    retried: int = 0  # mentions sent again after a failed attempt
    shed: int = 0  # not sent: too many requests already in flight
    rejected: int = 0  # a final answer other than 202 (a 4xx other than 408/429)
    gave_up: int = 0  # still failing when the retry window closed
    late_ticks: int = 0  # ticks the generator started late (it could not keep its rate)
    failures: dict[str, int] = field(default_factory=dict)  # failed attempts by status or error type
    by_tag: dict[str, dict[str, int]] = field(default_factory=dict)  # tag → generated, shed, rejected, gave_up

    def count(self, tag: str, what: str, n: int) -> None:
        per = self.by_tag.setdefault(tag, {})
        per[what] = per.get(what, 0) + n


class MentionLoad:
    """Mentions POSTed to ingest's push API at a steady Poisson rate per watchlist, one request per tick.

    Bounded: it stops after `max_mentions` mentions or `max_seconds`, whichever comes first, and it
    only talks to 127.0.0.1. Each mention's source_id is `<prefix>-<tag>-<n>`, so a benchmark can
    count, per phase (`tag`), what was accepted and what was stored. A request that fails (refused
    connection, timeout, 408/429/5xx) is sent again, the same mentions, until `retry_window_s` after
    its first attempt, as a careful client would; `spike()` adds a burst for one watchlist.
    """

    def __init__(self, ingest_url: str, brands: list[tuple[str, str]], rates: dict[str, float], texts: list[str], *,
                 max_mentions: int, max_seconds: float, prefix: str = "bench", tick_s: float = 0.1,
                 retry_window_s: float = 60.0, max_in_flight: int = 64, seed: int = 20261102) -> None:
        if httpx.URL(ingest_url).host != "127.0.0.1":
            raise ValueError(f"the load generator only talks to 127.0.0.1, not {ingest_url}")
        self.url, self.terms, self.rates, self.texts = ingest_url, dict(brands), rates, texts
        self.max_mentions, self.max_seconds, self.prefix, self.tick_s = int(max_mentions), max_seconds, prefix, tick_s
        self.retry_window_s, self.max_in_flight = retry_window_s, max_in_flight
        self.rng = random.Random(seed)
        self.tag = "start"
        self.stats = LoadStats()
        self._spikes: dict[str, tuple[float, float]] = {}  # watchlist → (extra rate, until monotonic)
        self._stop = asyncio.Event()
        self._counter = itertools.count()
        self._pending: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, int] = {}

    def spike(self, watchlist: str, rate_per_s: float, seconds: float) -> None:
        self._spikes[watchlist] = (rate_per_s, time.monotonic() + seconds)

    def stop(self) -> None:
        self._stop.set()

    def in_flight(self, tag: str) -> int:
        """Requests of mentions tagged `tag` still being sent (or waiting to be sent again)."""
        return self._in_flight.get(tag, 0)

    def accepted_with(self, tag: str) -> dict[str, float]:
        head = f"{self.prefix}-{tag}-"
        return {sid: at for sid, at in self.stats.accepted.items() if sid.startswith(head)}

    def _mention(self, watchlist: str) -> dict[str, Any]:
        n = next(self._counter)
        text = f"{self.terms[watchlist]} {self.rng.choice(self.texts)}"[:1000]
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"source": "twitter", "source_id": f"{self.prefix}-{self.tag}-{n}", "text": text, "lang": "en",
                "created_at": now, "author": {"id": f"u{n % 5000}", "handle": f"user{n % 5000}",
                                              "followers": self.rng.randint(10, 50000)}}

    def _batch(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        rates = dict(self.rates)
        for watchlist, (extra, until) in list(self._spikes.items()):
            if now < until:
                rates[watchlist] = rates.get(watchlist, 0.0) + extra
            else:
                del self._spikes[watchlist]
        batch = [self._mention(w) for w, rate in rates.items() for _ in range(_poisson(self.rng, rate * self.tick_s))]
        self.rng.shuffle(batch)
        return batch

    async def run(self) -> LoadStats:
        """Send until stopped or a bound is reached, then wait for the requests still in flight."""
        async with httpx.AsyncClient(base_url=self.url, timeout=15.0, trust_env=False,
                                     limits=httpx.Limits(max_connections=self.max_in_flight)) as client:
            started = time.monotonic()
            tick = 0
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds \
                    and self.stats.generated < self.max_mentions:
                batch = self._batch()[: self.max_mentions - self.stats.generated]
                self.stats.generated += len(batch)
                self.stats.count(self.tag, "generated", len(batch))
                if batch and len(self._pending) >= self.max_in_flight:
                    self.stats.shed += len(batch)
                    self.stats.count(self.tag, "shed", len(batch))
                elif batch:
                    task = asyncio.create_task(self._deliver(client, batch, self.tag))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
                tick += 1
                wait = started + tick * self.tick_s - time.monotonic()
                if wait > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), wait)
                else:
                    self.stats.late_ticks += 1
            self._stop.set()
            await asyncio.gather(*self._pending)
        return self.stats

    async def _deliver(self, client: httpx.AsyncClient, batch: list[dict[str, Any]], tag: str) -> None:
        self._in_flight[tag] = self._in_flight.get(tag, 0) + 1
        try:
            await self._send(client, batch, tag)
        finally:
            self._in_flight[tag] -= 1

    async def _send(self, client: httpx.AsyncClient, batch: list[dict[str, Any]], tag: str) -> None:
        first = time.monotonic()
        while True:
            delay = 1.0
            try:
                resp = await client.post("/v1/mentions", json={"mentions": batch})
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            else:
                if resp.status_code == 202:
                    at = time.time()
                    for m in batch:
                        self.stats.accepted.setdefault(m["source_id"], at)
                    return
                failure = str(resp.status_code)
                if resp.status_code not in (408, 429) and resp.status_code < 500:
                    self.stats.failures[failure] = self.stats.failures.get(failure, 0) + 1
                    self.stats.rejected += len(batch)
                    self.stats.count(tag, "rejected", len(batch))
                    return
                with contextlib.suppress(ValueError):
                    delay = float(resp.headers.get("Retry-After", delay))
            self.stats.failures[failure] = self.stats.failures.get(failure, 0) + 1
            delay = min(max(delay, 0.2), 5.0)
            if self._stop.is_set() or time.monotonic() + delay - first > self.retry_window_s:
                self.stats.gave_up += len(batch)
                self.stats.count(tag, "gave_up", len(batch))
                return
            await asyncio.sleep(delay)
            self.stats.retried += len(batch)


if __name__ == "__main__":  # `python -m earful_dev.bench proxy PORT TARGET_PORT`: the process of a TcpProxy
    if len(sys.argv) != 4 or sys.argv[1] != "proxy":
        sys.exit("usage: python -m earful_dev.bench proxy PORT TARGET_PORT")
    asyncio.run(_ProxyServer(int(sys.argv[2]), int(sys.argv[3])).serve())
