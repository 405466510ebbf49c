"""The alerting service: one object that builds and holds every part, and runs them.

`AlertingService` wires, in start-up order:

* the live watchlists (rules, handles and SLAs change without a restart) → `rulebook`;
* `AlertDatabase`: PostgreSQL, waited for at start-up as long as it takes, migrations applied;
* the ops HTTP server with the alerting API (`earful.alerting.api`);
* `NotificationRuntime`: the dispatcher and its background tasks, once PostgreSQL is up;
* `AlertingAgents` (`earful.alerting.agents`): the stream processors, from enriched mentions to
  alert events in PostgreSQL.
* `CaseSla` (`earful.alerting.case_sla`): customer-care cases from earful.cases.v1 → SLA warning
  and breach alert events, on time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import mode

from earful.alerting import SERVICE
from earful.alerting.agents import AlertingAgents
from earful.alerting.api import build_router
from earful.alerting.case_sla import follow_cases
from earful.alerting.detection.rulebook import RuleBook
from earful.alerting.detection.rules import RuleDefaults
from earful.alerting.notification.delivery import Outcome, deliverers_for, make_client
from earful.alerting.notification.dispatcher import DeadLetter, Dispatcher, QuietLookup
from earful.alerting.notification.grouping import Alert, utc_now
from earful.alerting.notification.routing import NotifyConfig, Receiver, load_notify_config
from earful.alerting.notification.store import AlertStore
from earful.alerting.notification.targets import TargetPolicy
from earful.core.auth import KeyRing
from earful.core.db import open_pool, reason, redact
from earful.core.erased_authors import follow_erasures
from earful.core.errors import DeliveryError, StorageError
from earful.core.faust_service import FaustDeadLetters, attach_ops_server, run_faust_service
from earful.core.health import Health, tcp_check
from earful.core.kafka import Codecs, faust_app
from earful.core.metrics import ERRORS
from earful.core.migrate import migrate
from earful.core.retry import Backoff, retry
from earful.core.settings import Settings
from earful.core.topics import ALERTS, ERASURES
from earful.watchlists import QuietHours, WatchlistSource
from earful.watchlists.live import live_watchlists

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 3600  # how often resolved alerts older than a week are forgotten


class PostgresUnavailable(StorageError):
    """PostgreSQL does not answer (or failed mid-migration): worth waiting for, unlike a refused migration."""


class AlertDatabase(mode.Service):
    """The alert store on PostgreSQL, opened when the service starts (migrations applied first).

    Start-up waits for PostgreSQL as long as it takes (backing off up to 10 s), so the service can
    start before its database; `ready` is set once the store can be used.
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dsn = settings.database_url.get_secret_value()
        self.pool: asyncpg.Pool | None = None
        self.store: AlertStore | None = None
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        self.pool = await retry(self._open, retry_on=(PostgresUnavailable,), backoff=Backoff(base_s=0.5, max_s=10.0),
                                on_retry=self._waiting)
        self.store = AlertStore(self.pool)
        self.ready.set()

    async def _open(self) -> asyncpg.Pool:
        try:
            pool = await open_pool(self.dsn, max_size=8, migrate_first=False, command_timeout=60)
        except StorageError as exc:
            raise PostgresUnavailable(str(exc)) from exc
        try:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            await pool.close()
            raise PostgresUnavailable(f"cannot migrate PostgreSQL ({redact(self.dsn)}): {reason(exc)}") from exc
        except BaseException:
            await pool.close()
            raise
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        return pool

    @staticmethod
    def _waiting(exc: BaseException, delay: float) -> None:
        ERRORS.labels(SERVICE, StorageError.kind).inc()
        log.warning("PostgreSQL not reachable; retrying", extra={"error": str(exc)[:300], "delay_s": round(delay, 2)})

    async def on_stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def check(self) -> None:
        """Readiness: connected, and answering."""
        if not self.ready.is_set() or self.pool is None:
            raise ConnectionError("not connected yet")
        await self.pool.fetchval("SELECT 1")


class NotificationRuntime(mode.Service):
    """The notification side at run time, once PostgreSQL is up: the dispatcher (flushing due
    groups to the receivers), groups re-planned after a start, hourly housekeeping, and re-planning
    after the API changed what is muted. Every task is the service's own: kept, cancelled and
    awaited when it stops."""

    def __init__(self, settings: Settings, config: NotifyConfig, database: AlertDatabase, *, quiet_hours: QuietLookup,
                 dead_letter: DeadLetter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.database = database
        self.client = make_client(settings.webhook_timeout_s, TargetPolicy(settings.webhook_allowed_networks))
        self.deliverers = deliverers_for(config, self.client, settings)
        self.quiet_hours = quiet_hours
        self.dead_letter = dead_letter
        self.external_url = settings.alert_dashboard_url or ""
        self.store: AlertStore | None = None
        self.dispatcher: Dispatcher | None = None
        self.ready = asyncio.Event()  # set once `store` and `dispatcher` exist
        self._changed = asyncio.Event()

    async def on_start(self) -> None:
        await self.database.ready.wait()
        assert self.database.store is not None
        self.store = store = self.database.store
        self.dispatcher = dispatcher = Dispatcher(store, self.config, self.deliverers, quiet_hours=self.quiet_hours,
                                                  dead_letter=self.dead_letter, external_url=self.external_url)
        self.ready.set()
        recovered = await store.recover(utc_now())
        if recovered:
            log.info("rescheduled notification groups after start", extra={"groups": recovered})
        self.add_future(dispatcher.run())
        self.add_future(self._housekeeping(store))
        self.add_future(self._replan_on_change(store, dispatcher))

    def changed(self) -> None:
        """A silence or an acknowledgement changed: every firing group is re-planned now."""
        self._changed.set()

    def wake_at(self, due: datetime) -> None:
        """A group is due at `due` (the dispatcher polls anyway; this makes it exact)."""
        if self.dispatcher is not None:
            self.dispatcher.wake_at(due)

    async def _replan_on_change(self, store: AlertStore, dispatcher: Dispatcher) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()  # changes made while re-planning trigger one more round
            now = utc_now()
            try:
                await store.flush_firing_now(now)
            except (OSError, asyncpg.PostgresError) as exc:
                ERRORS.labels(SERVICE, StorageError.kind).inc()
                log.warning("re-planning firing groups failed", extra={"error": str(exc)[:300]})
                continue
            dispatcher.wake_at(now)

    async def _housekeeping(self, store: AlertStore) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                await store.forget(utc_now())
            except (OSError, asyncpg.PostgresError) as exc:
                ERRORS.labels(SERVICE, StorageError.kind).inc()
                log.warning("alert housekeeping failed", extra={"error": str(exc)[:300]})

    async def on_stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.client.aclose()


class AlertingService:
    """The composition root: every part of the alerting service, built once, held in named fields."""

    def __init__(self, settings: Settings, watchlists: WatchlistSource | None = None) -> None:
        """`watchlists` defaults to the live store that follows earful.watchlists.v1."""
        self.settings = settings
        self.app = faust_app(settings, "earful-alerting", table_standby_replicas=0)
        codecs = Codecs(settings)
        self.health = Health(SERVICE)
        self.health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
        if watchlists is None:  # rules, handles and SLAs come live from the topic
            watchlists = live_watchlists(self.app, settings, self.health, SERVICE)
        self.rulebook = RuleBook(watchlists, RuleDefaults.from_settings(settings), settings.owned_handles)
        self.notify_config = load_notify_config(settings)
        self.database = AlertDatabase(settings)
        self.app.service(self.database)  # type: ignore[arg-type]  # Faust starts instances as well as classes
        self.health.add_check("postgres", self.database.check)
        self.dead_letters = FaustDeadLetters(self.app, codecs, SERVICE)
        self.notifications = NotificationRuntime(settings, self.notify_config, self.database,
                                                 quiet_hours=self.quiet_hours, dead_letter=self.dead_letter)
        router = build_router(lambda: self.database.store, self.notify_config, KeyRing.from_settings(settings), utc_now,
                              self.notifications.changed, timedelta(days=settings.alert_silence_max_days))
        attach_ops_server(self.app, settings, self.health, SERVICE, routers=[router])
        self.app.service(self.notifications)  # type: ignore[arg-type]  # Faust starts instances as well as classes
        self.agents = AlertingAgents(self.app, settings, codecs, rulebook=self.rulebook, notify_config=self.notify_config,
                                     dead_letters=self.dead_letters, notifications=self.notifications,
                                     erased=follow_erasures(self.app, settings, codecs.for_topic(ERASURES), SERVICE,
                                                            self.health))
        # Customer-care cases past their warning share or deadline (earful.cases.v1); None when switched off.
        self.case_sla = follow_cases(self.app, settings, codecs, self.health, rulebook=self.rulebook,
                                     notify_config=self.notify_config, notifications=self.notifications,
                                     alerts_topic=self.agents.alerts)

    def run(self) -> int:
        """Create the topics, then run until SIGTERM; the exit code."""
        return run_faust_service(self.app, self.settings, SERVICE)

    def quiet_hours(self, alert: Alert) -> QuietHours | None:
        """The quiet hours of the rule that raised `alert` (none for a rule no longer configured)."""
        rule = self.rulebook.rule(alert.labels.get("watchlist", ""), alert.labels.get("rule", ""))
        return rule.quiet_hours if rule else None

    async def dead_letter(self, group_key: str, receiver: Receiver, body: bytes, outcome: Outcome) -> None:
        """A notification given up on goes to the DLQ, with the body it would have sent."""
        error = DeliveryError(f"receiver {receiver.name} ({receiver.kind}): {outcome.reason} after {outcome.attempts} attempts")
        await self.dead_letters.send(topic=ALERTS, partition=-1, offset=-1, key=group_key.encode(), value=body, error=error)
