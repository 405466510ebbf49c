"""The dispatcher: due groups → one queue per receiver → plan → deliver → record.

The dispatcher claims the groups that are due (PostgreSQL decides, so several replicas never
flush one group twice) and hands each (group, receiver) to that receiver's queue. A receiver's
workers plan from fresh state right before sending (so a queued flush never repeats what an
earlier one just delivered) and never work on one group twice at the same time. Receivers are
independent: a hanging receiver only delays its own queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from prometheus_client import Counter

from earful.alerting.notification.delivery import Deliverer, Outcome
from earful.alerting.notification.grouping import (
    Alert,
    Clock,
    NflogEntry,
    Plan,
    after_send,
    idempotency_key,
    in_quiet_hours,
    plan,
    utc_now,
)
from earful.alerting.notification.receivers import Request, build_request
from earful.alerting.notification.routing import NotifyConfig, Receiver, Route
from earful.alerting.notification.store import AlertStore
from earful.watchlists import QuietHours

log = logging.getLogger(__name__)

DECISIONS = Counter("earful_alert_notify_decisions_total", "Notification decisions by receiver and reason.",
                    ["receiver", "reason"])
WORKERS_PER_RECEIVER = 4

QuietLookup = Callable[[Alert], QuietHours | None]
DeadLetter = Callable[[str, Receiver, bytes, Outcome], Awaitable[None]]


class ReceiverQueue:
    """Pending groups of one receiver, worked on by a few tasks, never one group twice at once."""

    def __init__(self, work: Callable[[str], Awaitable[object]], workers: int = WORKERS_PER_RECEIVER) -> None:
        self.work = work
        self.pending: dict[str, None] = {}
        self.running: set[str] = set()
        self.again: set[str] = set()
        self.ready = asyncio.Event()
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(workers)]

    def submit(self, group_key: str) -> None:
        if group_key in self.running:
            self.again.add(group_key)  # re-plan once the running flush is done
        else:
            self.pending[group_key] = None
            self.ready.set()

    async def _worker(self) -> None:
        while True:
            key = next((k for k in self.pending if k not in self.running), None)
            if key is None:
                self.ready.clear()
                await self.ready.wait()
                continue
            del self.pending[key]
            self.running.add(key)
            try:
                await self.work(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an outage for one group must not stop the receiver
                log.exception("notifying a group failed", extra={"group_key": key})
            finally:
                self.running.discard(key)
                if key in self.again:
                    self.again.discard(key)
                    self.submit(key)

    async def idle(self) -> None:
        while self.pending or self.running:  # noqa: ASYNC110 - two sets, changed in several places: a poll is simpler than an event per change
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Dispatcher:
    def __init__(self, store: AlertStore, config: NotifyConfig, deliverers: dict[str, Deliverer], *,
                 quiet_hours: QuietLookup = lambda a: None, dead_letter: DeadLetter | None = None,
                 external_url: str = "", clock: Clock = utc_now, poll_s: float = 1.0) -> None:
        self.store = store
        self.config = config
        self.deliverers = deliverers
        self.quiet_hours = quiet_hours
        self.dead_letter = dead_letter
        self.external_url = external_url
        self.clock = clock
        self.poll_s = poll_s
        self.queues: dict[str, ReceiverQueue] = {}
        self._wake = asyncio.Event()
        self._timers: list[asyncio.TimerHandle] = []
        self.last_plans: dict[tuple[str, str], Plan] = {}  # (group, receiver) → the latest decision (for the API)

    def queue(self, receiver: str) -> ReceiverQueue:
        if receiver not in self.queues:
            self.queues[receiver] = ReceiverQueue(lambda key: self.notify(receiver, key))
        return self.queues[receiver]

    def wake_at(self, when: datetime) -> None:
        """Flush due groups at `when` (or now, if it is past)."""
        delay = max(0.0, (when - self.clock()).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > loop.time()]
        self._timers.append(loop.call_later(delay + 0.005, self._wake.set))

    async def run(self) -> None:
        """Forever: flush every due group, then sleep until the next one is due (or poll_s)."""
        while True:
            try:
                await self.flush_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: try again shortly
                log.warning("flushing notification groups failed; retrying", extra={"error": str(exc)[:300]})
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def flush_due(self) -> int:
        now = self.clock()
        keys = await self.store.claim_due(now)
        for key in keys:
            alerts = await self.store.group_alerts(key)
            receivers = {r for a in alerts for r in a.receivers if r in self.config.receivers}
            for receiver in sorted(receivers):
                self.queue(receiver).submit(key)
            if any(a.firing for a in alerts):  # Alertmanager flushes a live group every group_interval
                await self.store.schedule(key, now + timedelta(seconds=self.flush_interval_s(alerts, receivers)))
        return len(keys)

    def flush_interval_s(self, alerts: list[Alert], receivers: set[str]) -> float:
        """How soon a live group is flushed again: its route's group_interval, or sooner when an
        Alertmanager receiver of the group must be re-sent its firing alerts before that."""
        interval = self.config.route_for(alerts[0].labels).group_interval_s
        resends = [r.resend_s for name in receivers if (r := self.config.receivers[name]).kind == "alertmanager"]
        return min([interval, *resends])

    async def notify(self, receiver_name: str, group_key: str) -> Plan | None:
        """Plan and, if needed, send one notification of `group_key` to one receiver."""
        receiver = self.config.receivers.get(receiver_name)
        deliverer = self.deliverers.get(receiver_name)
        if receiver is None or deliverer is None:
            return None
        alerts = await self.store.group_alerts(group_key)
        if not alerts:
            return None
        now = self.clock()
        entry = await self.store.nflog(group_key, receiver_name)
        route = self.config.route_for(alerts[0].labels)
        decided = plan(alerts, receiver_name, entry, now=now, route=route, silences=await self.store.silences(now),
                       inhibit_rules=self.config.inhibit_rules, firing_alerts=await self.store.firing(),
                       send_resolved=receiver.send_resolved,
                       in_quiet_hours=lambda a, t: in_quiet_hours(self.quiet_hours(a), a.labels.get("severity", ""), t),
                       resend_s=receiver.resend_s if receiver.kind == "alertmanager" else None)
        self.last_plans[(group_key, receiver_name)] = decided
        DECISIONS.labels(receiver_name, decided.reason.split(":")[0]).inc()
        if not decided.send:
            log.debug("no notification", extra={"group_key": group_key, "receiver": receiver_name, "reason": decided.reason})
            return decided
        seq = (entry.seq if entry else 0) + 1
        group_labels = {name: alerts[0].labels.get(name, "") for name in route.group_by}
        request = build_request(decided, receiver, group_key, group_labels,
                                idempotency_key(receiver_name, group_key, seq, decided.alerts), self.external_url, now)
        await self._deliver(deliverer, receiver, group_key, route, entry, decided, request)
        return decided

    async def _deliver(self, deliverer: Deliverer, receiver: Receiver, group_key: str, route: Route,
                       entry: NflogEntry | None, decided: Plan, request: Request) -> None:
        """Send, then record the outcome: the receiver's log entry once delivered, a dead letter once given up."""
        outcome = await deliverer.send(request)
        done = self.clock()
        row = {"group_key": group_key, "receiver": receiver.name, "receiver_kind": receiver.kind, "status": decided.status,
               "alert_ids": [a.alert_id for a in decided.alerts], "fingerprints": [a.fingerprint for a in decided.alerts],
               "attempts": outcome.attempts, "outcome": outcome.outcome, "http_status": outcome.http_status,
               "error": None if outcome.delivered else outcome.reason[:1000], "sent_at": done}
        if outcome.delivered:
            await self.store.delivered(group_key, receiver.name, after_send(entry, decided, done), row)
            log.info("notification delivered", extra={"group_key": group_key, "receiver": receiver.name,
                                                      "reason": decided.reason, "status": decided.status,
                                                      "alerts": len(decided.alerts), "attempts": outcome.attempts})
            return
        await self.store.log(row)
        log.error("notification not delivered", extra={"group_key": group_key, "receiver": receiver.name,
                                                       "outcome": outcome.outcome, "error": outcome.reason[:300]})
        if outcome.outcome == "dead_lettered":
            if self.dead_letter is not None:
                await self.dead_letter(group_key, receiver, request.body, outcome)
            retry_s = min(route.group_interval_s, receiver.resend_s) if receiver.kind == "alertmanager" else route.group_interval_s
            await self.store.schedule(group_key, done + timedelta(seconds=retry_s))  # try again later

    async def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        for q in self.queues.values():
            await q.stop()
