"""`chaos`: what the whole stack loses, duplicates and how fast it recovers when parts of it fail.

The four services run as processes (two enrichment workers) on a broker and an embedded
PostgreSQL of the benchmark's own, under a steady load pushed to ingest with one watchlist spiking
per scenario (so an alert fires and resolves), while, in turn: each service is killed (SIGKILL)
and started again, PostgreSQL restarts, the webhook receiver answers 500, and the broker is cut
off. Per scenario: mentions accepted, stored, lost, duplicate rows, notifications, duplicate
notifications and the time to recover. Every duration is an EARFUL_BENCH_CHAOS_* setting
(bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Context, Result, median, sample_mentions, say, service_base_env

NAME = "chaos"
KEYS = ("chaos_results", "chaos_details", "chaos_notes")
DESCRIPTION = ("the whole stack under ≥300 mentions/s while each service is killed, PostgreSQL restarts, "
               "the webhook fails and the broker is unreachable (run by name only)")

SCENARIOS = ("no_fault", "kill_ingest", "kill_enrichment_1", "kill_enrichment_2", "kill_alerting", "kill_storage",
             "restart_postgres", "webhook_500", "broker_unreachable")
KILLED = {"kill_ingest": "ingest", "kill_enrichment_1": "enrichment-1", "kill_enrichment_2": "enrichment-2",
          "kill_alerting": "alerting", "kill_storage": "storage"}
LATENCY_BOUNDS = (2.5, 5.0, 10.0, 30.0, 60.0)  # buckets of earful_pipeline_latency_seconds
CANDIDATE_PER_S = 1.0  # a watchlist that will spike runs at ~1/s before and after its spike
DATABASE = "earful_chaos"
SOURCE_PREFIX = "chaos"


@dataclass(frozen=True)
class ChaosConfig:
    """The benchmark's settings; each is EARFUL_BENCH_CHAOS_<NAME> in the environment."""

    rate: float = 300.0  # background mentions/s pushed to ingest
    watchlists: int = 24
    warmup_s: float = 140.0  # the detector needs 12 buckets (120 s) of history before it may alert
    spike_rate: float = 50.0  # extra mentions/s of the scenario's watchlist during its spike
    spike_s: float = 10.0
    spike_lead_s: float = 3.0  # the spike starts this long before the fault (not for webhook_500)
    down_s: float = 5.0  # how long a killed service stays down before it is started again
    postgres_down_s: float = 10.0
    webhook_fail_s: float = 60.0
    broker_cut_s: float = 30.0
    recovery_timeout_s: float = 120.0  # after the fault's end
    hold_s: float = 10.0  # how long the pipeline must stay normal to count as recovered
    drain_s: float = 60.0  # after recovery, how long the scenario's accepted mentions may take to be stored
    final_drain_max_s: float = 900.0  # at the end: until all is stored or nothing more for drain_s, at most this long
    latency_bound_s: float = 5.0  # "normal": ingest → storage (and → alerting) within this (or 2× the warm-up p95)
    resolve_wait_s: float = 420.0  # after the last spike, how long the resolved notifications are waited for
    enrich_workers: int = 2
    scenarios: str = ",".join(SCENARIOS)

    @classmethod
    def from_env(cls) -> ChaosConfig:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"EARFUL_BENCH_CHAOS_{f.name.upper()}")
            if raw is not None and raw.strip():
                values[f.name] = type(getattr(cls, f.name))(raw.strip())
        cfg = cls(**values)
        unknown = set(cfg.scenario_list()) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"EARFUL_BENCH_CHAOS_SCENARIOS: unknown {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
        if cfg.enrich_workers not in (1, 2):
            raise ValueError("EARFUL_BENCH_CHAOS_ENRICH_WORKERS must be 1 or 2")
        if cfg.watchlists < len(cfg.scenario_list()) + 1:
            raise ValueError(f"EARFUL_BENCH_CHAOS_WATCHLISTS must exceed the number of scenarios ({len(cfg.scenario_list())})")
        return cfg

    def scenario_list(self) -> list[str]:
        names = [s.strip() for s in self.scenarios.split(",") if s.strip()]
        return [s for s in names if not (s == "kill_enrichment_2" and self.enrich_workers < 2)]

    def fault_s(self, scenario: str) -> float:
        return {"no_fault": 0.0, "restart_postgres": self.postgres_down_s, "webhook_500": self.webhook_fail_s,
                "broker_unreachable": self.broker_cut_s}.get(scenario, self.down_s)

    def planned_s(self) -> float:
        """An upper bound of the run's length (the load generator's time limit)."""
        per = [self.spike_lead_s + self.fault_s(s) + self.recovery_timeout_s + self.drain_s + 10.0
               for s in self.scenario_list()]
        return self.warmup_s + sum(per) + self.resolve_wait_s + 60.0  # the load stops before the final drain


# --------------------------------------------------------------------------- the embedded database


class EmbeddedDatabase:
    """An embedded PostgreSQL of this benchmark's own (the machine's shared server is never restarted)."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.data_dir, self.name = data_dir, name
        self.url: str | None = None
        self._handle: Any = None

    async def start(self) -> str:
        from earful_dev.stack.postgres import start_embedded

        handle = await start_embedded(self.data_dir, self.name, log=lambda m: say(f"  {m}"))
        if self.url is not None and handle.url != self.url:
            await handle.stop()
            raise RuntimeError("the embedded PostgreSQL came back on another port; the services cannot follow it")
        self._handle, self.url = handle, handle.url
        return handle.url

    async def stop(self) -> None:
        if self._handle is not None:
            await self._handle.stop()
            self._handle = None


class Queries:
    """The benchmark's own reads of the mentions table; a failed connection is opened again next time
    (PostgreSQL restarts during one scenario)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        from earful.core.db import connect

        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.url, timeout=5.0)
        try:
            return await getattr(self._conn, method)(sql, *args, timeout=30)
        except Exception:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
            raise

    async def rows(self, source_ids: list[str]) -> dict[str, tuple[float, float]]:
        """source_id → (received_at, stored_at) as epoch seconds, of those stored."""
        found = await self._run(
            "fetch", "SELECT source_id, extract(epoch FROM received_at)::float8 AS r, extract(epoch FROM stored_at)::float8 AS s"
            " FROM mentions WHERE source = 'twitter' AND source_id = ANY($1::text[])", source_ids)
        return {r["source_id"]: (r["r"], r["s"]) for r in found}

    async def duplicate_rows(self, prefix: str) -> int:
        """Rows beyond one per (source, source_id) among the mentions whose source_id starts with `prefix`."""
        row = await self._run("fetchrow", "SELECT count(*) AS n, count(DISTINCT (source, source_id)) AS d FROM mentions"
                              " WHERE source_id LIKE $1", prefix.replace("_", r"\_") + "%")
        return int(row["n"] - row["d"])

    async def latency_p95(self, prefix: str, since: float) -> float | None:
        return await self._run(
            "fetchval", "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - received_at))"
            " FROM mentions WHERE source_id LIKE $1 AND received_at >= to_timestamp($2)", prefix.replace("_", r"\_") + "%", since)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


# --------------------------------------------------------------------------- measuring


_HIST = re.compile(r'^earful_pipeline_latency_seconds_(bucket|count)\{([^}]*)\} ([0-9.e+]+)$')


def latency_counts(metrics_text: str, service: str, bound: float) -> tuple[float, float]:
    """(records finished, of which within `bound` seconds) from a service's earful_pipeline_latency_seconds."""
    total = within = 0.0
    for line in metrics_text.splitlines():
        m = _HIST.match(line)
        if not m or f'service="{service}"' not in m.group(2):
            continue
        if m.group(1) == "count":
            total = float(m.group(3))
        elif f'le="{bound}"' in m.group(2):
            within = float(m.group(3))
    return total, within


def storage_recovered_at(accepted: dict[str, float], rows: dict[str, tuple[float, float]], since: float, now: float,
                         bound: float, hold: float) -> float | None:
    """When ingest → storage became normal again after `since`: the acceptance time of the first
    mention from which on every mention accepted was stored within `bound` (one not stored at all
    counts as late), provided that has held for `hold` seconds; None while it has not."""
    horizon = now - bound  # a mention accepted later may still be on time
    times = sorted((at, sid) for sid, at in accepted.items() if since <= at <= horizon)
    first_good = 0
    for i, (_, sid) in enumerate(times):
        row = rows.get(sid)
        if row is None or row[1] - row[0] > bound:
            first_good = i + 1
    if first_good >= len(times) or horizon - times[first_good][0] < hold:
        return None
    return times[first_good][0]


def alerting_recovered_at(samples: list[tuple[float, int, float, float]], since: float, hold: float) -> float | None:
    """When alerting again finished records, all within the bound, in every scrape interval after
    `since` for `hold` seconds. `samples` are (time, pid, finished, within bound) of its /metrics."""
    intervals = []
    for (t0, pid0, n0, w0), (t1, pid1, n1, w1) in itertools.pairwise(samples):
        if t1 < since:
            continue
        dn, dw = (n1 - n0, w1 - w0) if pid1 == pid0 and n1 >= n0 else (n1, w1)  # a restart starts from zero
        intervals.append((t0, t1, dn > 0 and dw >= dn))
    first_good = 0
    for i, (_, _, ok) in enumerate(intervals):
        if not ok:
            first_good = i + 1
    if first_good >= len(intervals) or intervals[-1][1] - intervals[first_good][0] < hold:
        return None
    return max(since, intervals[first_good][0])


def notification_counts(deliveries: list[Any], watchlist: str) -> dict[str, Any]:
    """Notifications about `watchlist` received (answered 2xx), and those duplicating an alert state
    change (fingerprint + status) already received; when the first firing and resolved came."""
    seen: set[tuple[Any, Any]] = set()
    out: dict[str, Any] = {"notifications": 0, "duplicate_notifications": 0, "firing_at": None, "resolved_at": None,
                           "duplicate_keys": 0}
    keys: set[str] = set()
    for d in deliveries:
        if not _about(d, watchlist):
            continue
        mine = [a for a in d.alerts if (a.get("labels") or {}).get("watchlist") == watchlist]
        out["notifications"] += 1
        states = {(a.get("fingerprint"), a.get("status")) for a in mine}
        if states <= seen:
            out["duplicate_notifications"] += 1
        if d.idempotency_key and d.idempotency_key in keys:
            out["duplicate_keys"] += 1  # the same notification sent again (a receiver may drop it by its key)
        keys.add(d.idempotency_key or "")
        seen |= states
        for a in mine:
            key = f"{a.get('status')}_at"
            if key in out and out[key] is None:
                out[key] = d.received_at
    return out


# --------------------------------------------------------------------------- the run


@dataclass
class Scenario:
    name: str
    watchlist: str
    spike_at: float = 0.0
    fault_at: float = 0.0
    fault_end: float = 0.0
    recovered: dict[str, float | None] = field(default_factory=dict)
    ready_s: float | None = None  # a restarted service: start → ready
    accepted: int = 0
    stored_at_drain: int = 0  # stored when the scenario's own drain ended (the next fault began)
    stored_ids: set[str] = field(default_factory=set)
    duplicate_rows: int | None = None
    error: str | None = None


class ChaosRun:
    """One chaos run on a running stack: warm-up, then each scenario in turn, then the results."""

    def __init__(self, cfg: ChaosConfig, group: Any, db: EmbeddedDatabase, receiver: Any, proxy: Any,
                 brands: list[tuple[str, str]]) -> None:
        from earful_dev.bench import MentionLoad

        self.cfg, self.group, self.db, self.receiver, self.proxy = cfg, group, db, receiver, proxy
        names = cfg.scenario_list()
        candidates = [wid for wid, _ in brands[: len(names)]]
        others = [wid for wid, _ in brands[len(names):]]
        rates = dict.fromkeys(candidates, CANDIDATE_PER_S)
        rates.update({w: (cfg.rate - CANDIDATE_PER_S * len(candidates)) / len(others) for w in others})
        self.scenarios = [Scenario(n, w) for n, w in zip(names, candidates, strict=True)]
        texts = [m["text"] for m in sample_mentions(800)]
        top = cfg.rate + cfg.spike_rate
        self.load = MentionLoad(group["ingest"].url, brands, rates, texts, max_mentions=int(top * cfg.planned_s()),
                                max_seconds=cfg.planned_s(), prefix=SOURCE_PREFIX)
        self.queries = Queries(db.url or "")
        self.started = time.time()
        self.bound = cfg.latency_bound_s
        self.samples: list[tuple[float, int, float, float]] = []
        self.down: set[str] = set()  # killed on purpose: the watchdog leaves them alone
        self.exits: list[dict[str, Any]] = []
        self.current = "warmup"
        self.warmup_p95: float | None = None
        self.load_averages: list[float] = []  # the machine's 1-minute load average, every 10 s
        self.final_drain_s: float | None = None

    def at(self, t: float | None) -> float | None:
        """A wall-clock time as seconds since the run started."""
        return None if t is None else round(t - self.started, 1)

    async def run(self) -> dict[str, Any]:
        load_task = asyncio.create_task(self.load.run())
        helpers = [asyncio.create_task(self._scrape()), asyncio.create_task(self._watchdog()),
                   asyncio.create_task(self._note_load())]
        try:
            await self._warm_up()
            for scenario in self.scenarios:
                self.current = scenario.name
                try:
                    await self._scenario(scenario)
                except Exception as exc:  # one failed scenario must not hide the others' figures
                    scenario.error = f"{type(exc).__name__}: {exc}"
                    say(f"  {scenario.name}: FAILED: {scenario.error}")
            self.current = "end"
            await self._await_resolved()
            self.load.stop()
            await load_task
            await self._final_drain()
            return await self._report()
        finally:
            self.load.stop()
            for task in helpers:
                task.cancel()
            await asyncio.gather(load_task, *helpers, return_exceptions=True)
            await self.queries.close()

    async def _warm_up(self) -> None:
        cfg = self.cfg
        self.load.tag = "warmup"
        say(f"  warm-up: {cfg.rate:.0f} mentions/s over {cfg.watchlists} watchlists for {cfg.warmup_s:.0f}s")
        await asyncio.sleep(cfg.warmup_s)
        with contextlib.suppress(Exception):
            self.warmup_p95 = await self.queries.latency_p95(f"{SOURCE_PREFIX}-warmup-", time.time() - 60)
        wanted = max(cfg.latency_bound_s, 2 * (self.warmup_p95 or 0.0))
        self.bound = next((b for b in LATENCY_BOUNDS if b >= wanted), LATENCY_BOUNDS[-1])
        accepted = len(self.load.accepted_with("warmup"))
        say(f"  warm-up done: {accepted} mentions accepted; ingest → storage p95 over the last minute "
            f"{self.warmup_p95 if self.warmup_p95 is None else round(self.warmup_p95, 2)}s; 'normal' = within {self.bound:g}s")

    async def _scenario(self, sc: Scenario) -> None:
        cfg = self.cfg
        lead = 0.0 if sc.name == "webhook_500" else cfg.spike_lead_s
        self.load.tag = sc.name
        sc.spike_at = time.time()
        self.load.spike(sc.watchlist, cfg.spike_rate, cfg.spike_s)
        await asyncio.sleep(lead)
        sc.fault_at = time.time()
        say(f"  {sc.name}: fault begins (spike on {sc.watchlist} since {lead:g}s)")
        sc.fault_end = await self._fault(sc)
        await self._await_recovery(sc)
        self.load.tag = f"after-{sc.name}"
        await self._drain(sc)

    async def _fault(self, sc: Scenario) -> float:
        """Inflict the scenario's fault and end it; returns when it ended (wall clock)."""
        cfg = self.cfg
        if sc.name in KILLED:
            label = KILLED[sc.name]
            self.down.add(label)
            svc = self.group[label]
            svc.kill9()
            await asyncio.sleep(cfg.down_s)
            end = time.time()
            svc.start()  # here, on the event loop's thread, which outlives it
            self.down.discard(label)
            asyncio.create_task(self._time_ready(sc, svc, end))  # noqa: RUF006 - it ends with the run's loop
            return end
        if sc.name == "restart_postgres":
            await self.db.stop()
            await asyncio.sleep(cfg.postgres_down_s)
            end = time.time()
            await self.db.start()
            return end
        if sc.name == "webhook_500":
            # Failing from the spike on; the outage is timed from the first refused notification of
            # the spike's alert, so it always meets a delivery however long the detection took.
            self.receiver.failing = True
            deadline = time.time() + cfg.recovery_timeout_s
            while time.time() < deadline and not any(_about(r, sc.watchlist) for r in self.receiver.refusals):
                await asyncio.sleep(0.2)
            sc.fault_at = next((r.received_at for r in self.receiver.refusals if _about(r, sc.watchlist)), time.time())
            say(f"  {sc.name}: first notification refused {sc.fault_at - sc.spike_at:.1f}s after the spike began")
            await asyncio.sleep(max(0.0, sc.fault_at + cfg.webhook_fail_s - time.time()))
            self.receiver.failing = False
            return time.time()
        if sc.name == "broker_unreachable":
            self.proxy.cut()
            await asyncio.sleep(cfg.broker_cut_s)
            self.proxy.restore()
            return time.time()
        return time.time()  # no_fault: the control

    async def _time_ready(self, sc: Scenario, svc: Any, since: float) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(svc.wait_ready, 300.0)
            sc.ready_s = round(time.time() - since, 1)

    async def _await_recovery(self, sc: Scenario) -> None:
        """Poll until ingest → storage and ingest → alerting are normal again and the scenario's
        firing notification has arrived, or the recovery timeout passes."""
        cfg = self.cfg
        rows: dict[str, tuple[float, float]] = {}
        deadline = sc.fault_end + cfg.recovery_timeout_s
        next_note = time.time() + 30
        while True:
            await asyncio.sleep(2.0)
            now = time.time()
            if now >= next_note and sc.recovered:
                next_note = now + 30
                say(f"  {sc.name}: {now - sc.fault_end:.0f}s after the fault's end, back to normal: "
                    + ", ".join(f"{k} {'yes' if v is not None else 'not yet'}" for k, v in sc.recovered.items()))
            accepted = {sid: at for sid, at in self.load.accepted_with(sc.name).items() if at >= sc.fault_end}
            missing = [sid for sid in accepted if sid not in rows]
            with contextlib.suppress(Exception):  # PostgreSQL may be down: ask again next time
                rows.update(await self.queries.rows(missing) if missing else {})
            firing = notification_counts(self.receiver.deliveries, sc.watchlist)["firing_at"]
            sc.recovered = {
                "storage": storage_recovered_at(accepted, rows, sc.fault_end, now, self.bound, cfg.hold_s),
                "alerting": alerting_recovered_at(list(self.samples), sc.fault_end, cfg.hold_s),
                "notification": None if firing is None else max(firing, sc.fault_end),
            }
            if all(v is not None for v in sc.recovered.values()) or now > deadline:
                break
        shown = {k: None if v is None else round(v - sc.fault_end, 1) for k, v in sc.recovered.items()}
        say(f"  {sc.name}: fault {sc.fault_end - sc.fault_at:.0f}s; back to normal after the fault's end: {shown}")

    async def _missing(self, sc: Scenario) -> int:
        """Mentions of the scenario accepted but not (yet) stored, plus requests of it still being sent;
        looks up only the mentions not seen stored before."""
        accepted = self.load.accepted_with(sc.name)
        missing = [sid for sid in accepted if sid not in sc.stored_ids]
        with contextlib.suppress(Exception):  # PostgreSQL may be down: ask again next time
            sc.stored_ids |= set(await self.queries.rows(missing)) if missing else set()
        sc.accepted = len(accepted)
        return sc.accepted - len(sc.stored_ids) + self.load.in_flight(sc.name)

    async def _drain(self, sc: Scenario) -> None:
        """Before the next fault: wait until every mention of the scenario that ingest accepted is
        stored, or the drain deadline (what is left may still arrive: `lost` is counted at the end)."""
        deadline = time.time() + self.cfg.drain_s
        while await self._missing(sc) and time.time() < deadline:
            await asyncio.sleep(2.0)
        sc.stored_at_drain = len(sc.stored_ids)
        say(f"  {sc.name}: {sc.accepted} accepted, {sc.stored_at_drain} stored, {sc.accepted - sc.stored_at_drain} not yet")

    async def _final_drain(self) -> None:
        """After the last scenario, with the load stopped: wait until every accepted mention is stored, or
        until nothing more was stored for `drain_s` (what is missing then is lost, not late), at most
        `final_drain_max_s`."""
        cfg = self.cfg
        started = last_progress = time.time()
        stored = -1
        while True:
            missing = sum([await self._missing(sc) for sc in self.scenarios])
            now_stored = sum(len(sc.stored_ids) for sc in self.scenarios)
            if now_stored > stored:
                stored, last_progress = now_stored, time.time()
            if not missing or time.time() - last_progress > cfg.drain_s or time.time() - started > cfg.final_drain_max_s:
                break
            await asyncio.sleep(5.0)
        self.final_drain_s = round(time.time() - started, 1)
        say(f"  final drain: {self.final_drain_s}s, {missing} accepted mentions not stored")
        for sc in self.scenarios:
            with contextlib.suppress(Exception):
                sc.duplicate_rows = await self.queries.duplicate_rows(f"{SOURCE_PREFIX}-{sc.name}-")

    async def _await_resolved(self) -> None:
        """Keep the load going until every alert that fired has resolved, or `resolve_wait_s` after the last
        spike. The detector resolves a volume spike only once the normal buckets after it have left the
        lateness window (30 buckets of 10 s by default): about 5 minutes after the spike."""
        last_spike = max((sc.spike_at for sc in self.scenarios), default=time.time())
        say(f"  waiting up to {self.cfg.resolve_wait_s:g}s after the last spike for the alerts to resolve")
        while time.time() < last_spike + self.cfg.resolve_wait_s:
            counts = [notification_counts(self.receiver.deliveries, sc.watchlist) for sc in self.scenarios]
            if all(c["firing_at"] is None or c["resolved_at"] is not None for c in counts):
                return
            await asyncio.sleep(2.0)

    async def _scrape(self) -> None:
        """Sample alerting's pipeline latency histogram every second."""
        import httpx

        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                svc = self.group["alerting"]
                if svc.alive() and svc.process is not None:
                    with contextlib.suppress(httpx.HTTPError):
                        text = (await client.get(svc.url + "/metrics")).text
                        self.samples.append((time.time(), svc.process.pid, *latency_counts(text, "alerting", self.bound)))
                await asyncio.sleep(1.0)

    async def _note_load(self) -> None:
        while True:
            self.load_averages.append(os.getloadavg()[0])
            await asyncio.sleep(10.0)

    async def _watchdog(self) -> None:
        """A service that exits unbidden is recorded and started again, as Kubernetes would restart
        its pod: at once the first time, then after a doubling delay (up to 30 s) while it keeps exiting."""
        delays: dict[str, float] = {}
        while True:
            await asyncio.sleep(1.0)
            for label in self.group.dead():
                if label in self.down:
                    continue
                svc = self.group[label]
                code = svc.process.returncode if svc.process else None
                self.exits.append({"service": label, "exit_code": code, "at_s": self.at(time.time()),
                                   "during": self.current, "log_tail": _last_error(svc.log_path)})
                delay = delays.get(label, 0.0)
                say(f"  warning: {label} exited by itself (code {code}) during {self.current}; starting it again"
                    + (f" in {delay:g}s" if delay else ""))
                delays[label] = min(30.0, max(1.0, 2 * delay))
                self.down.add(label)
                asyncio.create_task(self._restart_later(label, delay))  # noqa: RUF006 - it ends with the run's loop

    async def _restart_later(self, label: str, delay: float) -> None:
        await asyncio.sleep(delay)
        svc = self.group[label]
        svc.start()  # on the event loop's thread, which outlives it
        self.down.discard(label)
        with contextlib.suppress(Exception):  # exiting again: the watchdog sees it
            await asyncio.to_thread(svc.wait_ready, 300.0)

    async def _report(self) -> dict[str, Any]:
        results: dict[str, Any] = {}
        details: dict[str, Any] = {}
        for sc in self.scenarios:
            results[sc.name], details[sc.name] = await self._scenario_report(sc)
        stats = self.load.stats
        details["run"] = {
            "latency_bound_s": self.bound, "final_drain_s": self.final_drain_s, "warmup_latency_p95_s": None if self.warmup_p95 is None else round(self.warmup_p95, 3),
            "generated": stats.generated, "accepted": len(stats.accepted), "retried": stats.retried, "shed": stats.shed,
            "rejected": stats.rejected, "gave_up": stats.gave_up, "failed_attempts": stats.failures,
            "late_ticks": stats.late_ticks, "unexpected_exits": self.exits,
            "webhook_refused": self.receiver.refused, "other_notifications": self._other_notifications(),
            "load_average_1m": {"min": min(self.load_averages, default=None), "median": round(median(self.load_averages), 2)
                                if self.load_averages else None, "max": max(self.load_averages, default=None)},
        }
        return {"results": results, "details": details}

    async def _scenario_report(self, sc: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
        counts = notification_counts(self.receiver.deliveries, sc.watchlist)
        done = sc.recovered and all(v is not None for v in sc.recovered.values())
        stored = len(sc.stored_ids)
        result = {"accepted": sc.accepted, "stored": stored, "lost": sc.accepted - stored,
                  "duplicate_rows": sc.duplicate_rows, "notifications": counts["notifications"],
                  "duplicate_notifications": counts["duplicate_notifications"],
                  "recovery_s": round(max(v for v in sc.recovered.values() if v is not None) - sc.fault_end, 1)
                  if done else None}
        by_tag = self.load.stats.by_tag.get(sc.name, {})
        detail = {
            "spike_watchlist": sc.watchlist, "spike_at_s": self.at(sc.spike_at), "fault_at_s": self.at(sc.fault_at),
            "fault_s": round(sc.fault_end - sc.fault_at, 1),
            "recovered_after_fault_s": {k: None if v is None else round(v - sc.fault_end, 1) for k, v in sc.recovered.items()},
            "restarted_ready_s": sc.ready_s, "sent": by_tag.get("generated", 0), "shed": by_tag.get("shed", 0),
            "gave_up": by_tag.get("gave_up", 0), "rejected": by_tag.get("rejected", 0),
            "stored_at_drain": sc.stored_at_drain, "firing_after_spike_s": None if counts["firing_at"] is None else round(counts["firing_at"] - sc.spike_at, 1),
            "resolved_after_spike_s": None if counts["resolved_at"] is None else round(counts["resolved_at"] - sc.spike_at, 1),
            "resent_idempotency_keys": counts["duplicate_keys"],
            "refused_notifications": sum(1 for r in self.receiver.refusals if _about(r, sc.watchlist)),
        }
        if sc.error:
            detail["error"] = sc.error
        return result, detail

    def _other_notifications(self) -> list[dict[str, Any]]:
        """Alerts about watchlists that never spiked (false alerts, or a volume drop during an outage)."""
        spiked = {sc.watchlist for sc in self.scenarios}
        out = []
        for d in self.receiver.deliveries:
            for a in d.alerts:
                labels = a.get("labels") or {}
                if labels.get("watchlist") not in spiked:
                    out.append({"watchlist": labels.get("watchlist"), "rule": labels.get("rule") or labels.get("alertname"),
                                "status": a.get("status"), "at_s": self.at(d.received_at)})
        return out


# --------------------------------------------------------------------------- the stack


async def _with_stack(cfg: ChaosConfig, log_dir: Path) -> dict[str, Any]:
    """Broker (behind a proxy), embedded PostgreSQL, webhook receiver and services; one chaos run."""
    from earful.core.settings import Settings
    from earful.core.topics import create_topics
    from earful_dev.bench import ServiceGroup, brand_watchlists, proxied_broker, recording_webhook_receiver

    brands = brand_watchlists(log_dir / "watchlists.yaml", cfg.watchlists)
    with proxied_broker(log_dir / "broker.log") as (broker, proxy):
        db = EmbeddedDatabase(log_dir / "postgres", DATABASE)
        url = await db.start()
        try:
            async with recording_webhook_receiver() as (receiver, webhook_url):
                await create_topics(Settings(kafka_bootstrap=broker.bootstrap))
                env = service_base_env(broker.bootstrap)
                env.update({"EARFUL_WATCHLISTS_DIR": str(log_dir / "watchlists.yaml"), "EARFUL_DATABASE_URL": url,
                            "EARFUL_WEBHOOK_URLS": webhook_url, "EARFUL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                            "EARFUL_INGEST_STATE_DIR": str(log_dir / "ingest-state")})
                labels = ["ingest", *[f"enrichment-{i + 1}" for i in range(cfg.enrich_workers)], "alerting", "storage"]
                group = ServiceGroup(labels, env, log_dir)
                try:
                    started = time.monotonic()
                    group.spawn()  # on this thread, which outlives the services
                    await group.wait_ready(180.0)
                    say(f"  {', '.join(labels)} ready in {time.monotonic() - started:.1f}s "
                        f"(broker {broker.bootstrap} through a proxy, embedded PostgreSQL)")
                    return await ChaosRun(cfg, group, db, receiver, proxy, brands).run()
                finally:
                    codes = await group.stop()
                    bad = {k: v for k, v in codes.items() if v not in (0, None)}
                    if bad:
                        say(f"  warning: exit codes on stop {bad}; logs in {log_dir}")
        finally:
            await db.stop()


def notes(cfg: ChaosConfig) -> list[str]:
    return [
        (f"load: {cfg.rate:g} mentions/s over {cfg.watchlists} watchlists (Poisson, one POST per 0.1 s, failed requests "
        "sent again for up to 60 s); per scenario one watchlist spikes by "
        f"{cfg.spike_rate:g}/s for {cfg.spike_s:g} s, starting {cfg.spike_lead_s:g} s before the fault "
        "(with the fault for webhook_500)"),
        f"enrichment: {cfg.enrich_workers} worker process(es)",
        (f"kill_*: SIGKILL, the service stays down {cfg.down_s:g} s, then is started again; the fault ends when it is "
        "started, so recovery_s includes its start-up"),
        (f"restart_postgres: an embedded PostgreSQL of the benchmark's own (not the machine's server), fast shutdown, "
        f"down {cfg.postgres_down_s:g} s, started again on the same port"),
        (f"webhook_500: the webhook receiver answers 500 to every notification from the spike on, until "
         f"{cfg.webhook_fail_s:g} s after it refused the first notification about the spike's alert (fault_s: those "
         f"{cfg.webhook_fail_s:g} s; the outage is timed from the first refusal so that it always meets a delivery)"),
        ("broker_unreachable: Tansu keeps its records only in memory, so it is not restarted; every service reaches it "
        "through a TCP proxy process the benchmark starts (the broker advertises the proxy's address), which resets every "
        f"connection and refuses new ones for {cfg.broker_cut_s:g} s"),
        ("every service runs with its default settings. A scenario's notifications are those about its spike "
         "watchlist over the whole run: the firing one comes during the scenario, the resolved one about 5 minutes "
         "later (a volume spike resolves once the normal buckets after it have left the 300 s lateness window), so "
         "the faults of later scenarios may touch it too"),
        ("lost = accepted (202 from ingest) minus stored, counted at the end of the run once the load has stopped and "
         f"nothing more was stored for {cfg.drain_s:g} s (so a backlog is not counted as lost; details.stored_at_drain: "
         "stored when the scenario's own drain ended, before the next fault); duplicate_rows = rows beyond one per "
        "(source, source_id); duplicate_notifications = notifications (answered 2xx) that carried no alert state "
        "(fingerprint + status) not received before"),
        ("recovery_s = from the fault's end until ingest → storage and ingest → alerting are back within the latency "
        f"bound for {cfg.hold_s:g} s and the scenario's firing notification has arrived; null if not within "
        f"{cfg.recovery_timeout_s:g} s"),
    ]


def run(ctx: Context) -> Result:
    cfg = ChaosConfig.from_env()
    log_dir = ctx.work_dir / "chaos"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = asyncio.run(_with_stack(cfg, log_dir))
    results, details = out["results"], out["details"]
    for name, r in results.items():
        say(f"  {name}: {r}")
    failed = [f"{n}: {d['error']}" for n, d in details.items() if isinstance(d, dict) and d.get("error")]
    return Result({"chaos_results": results, "chaos_details": details, "chaos_notes": notes(cfg)},
                  dict.fromkeys(KEYS, 1), "; ".join(failed) or None)


def _about(delivery: Any, watchlist: str) -> bool:
    """Whether a notification carries an alert about `watchlist`."""
    return any((a.get("labels") or {}).get("watchlist") == watchlist for a in delivery.alerts)


def _last_error(log_path: Path) -> str | None:
    """The last error or critical line of a service's JSON log, shortened (why it exited)."""
    import json

    try:
        lines = log_path.read_text(errors="replace").splitlines()[-400:]
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical") and "never retrieved" not in str(entry.get("msg")):
                return f"{entry.get('logger')}: {str(entry.get('msg'))[:300]}"
    return None
