"""Sales leads and staff policy flags from every batch the writer stores, in its transaction.

writer.py calls `record_signals` at the end of the transaction that stores a batch, with the
batch's rows: the purchase-intent mentions of prospects become lead evidence (storage/leads.py),
the posts of staff are checked against the policy (storage/policy_flags.py), and both are stored
with their outbox rows, so they are durable exactly when the mentions are and are published
after the commit. A re-delivered batch finds its evidence and flags stored and adds nothing.

What the rules need besides the rows (the watchlists in force, with their kinds, brand and staff
accounts; EARFUL_OWNED_HANDLES; the policy file; EARFUL_LEAD_PERIOD_DAYS) comes from the
`SignalSource` the storage service installs with `use_signals` before it starts its consume loop
(a context variable, so the loop's tasks inherit it and a test can install its own). Without one,
leads are still found (only the accounts the writer marked as owned are left out) and no post is
checked: no staff, no policy.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from earful.core.db import open_pool
from earful.core.errors import ConfigError
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import LEADS, POLICY_FLAGS
from earful.storage.lead_webhook import lead_webhook
from earful.storage.leads import LeadOutbox, lead_evidence, record_leads
from earful.storage.policy_flags import PolicyFlagOutbox, record_flags, staff_flags
from earful.storage.table_outbox import TableOutbox
from earful.watchlists import WatchlistSet
from earful.watchlists.owned import OwnedHandles
from earful.watchlists.policy import Policy, Staff, load_policy

log = logging.getLogger(__name__)
DEFAULT_PERIOD_DAYS = 7


@dataclass(frozen=True)
class SignalRules:
    """Everything the lead and policy rules read besides a mention."""

    period_days: int = DEFAULT_PERIOD_DAYS
    accounts: OwnedHandles = field(default_factory=OwnedHandles)  # brand and staff accounts: not prospects
    staff: Staff = field(default_factory=lambda: Staff({}))  # whose posts are checked against the policy
    kinds: Mapping[str, str] = field(default_factory=dict)  # watchlist id → kind
    policy: Policy = field(default_factory=Policy)


class SignalSource:
    """The rules in force: rebuilt when the watchlist set changes or the policy file is rewritten.

    A policy file that cannot be used stops start-up (ConfigError); a later edit that breaks it is
    logged and the previous policy stays in force until the file is fixed.
    """

    def __init__(self, watchlists: Callable[[], WatchlistSet], *, period_days: int = DEFAULT_PERIOD_DAYS,
                 owned_handles: Sequence[str] = (), policy_file: Path | None = None) -> None:
        self.watchlists = watchlists
        self.period_days = period_days
        self.owned_handles = tuple(owned_handles)
        self.policy_file = policy_file
        self._stamp: tuple[int, int] | None = None
        self._policy = Policy()
        if policy_file is not None:
            self._stamp = _stamp(policy_file)
            self._policy = load_policy(policy_file)
        self._built: tuple[WatchlistSet | None, Policy | None, SignalRules] = (None, None, SignalRules(period_days))

    def policy(self) -> Policy:
        """The policy in force (the file read again when its size or modification time changed)."""
        if self.policy_file is None:
            return self._policy
        try:
            stamp = _stamp(self.policy_file)
        except OSError as exc:
            log.error("cannot read the policy file; the previous policy stays in force",
                      extra={"path": str(self.policy_file), "error": str(exc)})
            return self._policy
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._policy = load_policy(self.policy_file)
                log.info("policy file loaded", extra={"path": str(self.policy_file), "rules": len(self._policy.rules)})
            except ConfigError as exc:
                log.error("policy file not usable; the previous policy stays in force",
                          extra={"path": str(self.policy_file), "error": str(exc)})
        return self._policy

    def current(self) -> SignalRules:
        current, policy = self.watchlists(), self.policy()
        if self._built[0] is not current or self._built[1] is not policy:
            members = list(current.watchlists.values())
            rules = SignalRules(self.period_days, OwnedHandles.of(members, self.owned_handles), Staff.of(members),
                                {w.id: w.kind for w in members}, policy)
            self._built = (current, policy, rules)
        return self._built[2]


def _stamp(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


_SOURCE: contextvars.ContextVar[SignalSource | SignalRules | None] = contextvars.ContextVar("earful_signals", default=None)


def use_signals(source: SignalSource | SignalRules | None) -> contextvars.Token[SignalSource | SignalRules | None]:
    """Install the rules the writer uses in this task and the tasks it starts from now on."""
    return _SOURCE.set(source)


def rules_in_force() -> SignalRules:
    source = _SOURCE.get()
    if source is None:
        return SignalRules()
    return source if isinstance(source, SignalRules) else source.current()


async def record_signals(conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Leads and policy flags of a batch's rows, stored in the caller's (the writer's) transaction."""
    if not rows:
        return
    rules = rules_in_force()
    await record_leads(conn, lead_evidence(rows, period_days=rules.period_days, accounts=rules.accounts, kinds=rules.kinds))
    await record_flags(conn, staff_flags(rows, rules.policy, rules.staff))


# --- in the storage service ------------------------------------------------------------------


@dataclass
class SignalLoops:
    """The outbox loops that publish leads and policy flags (and deliver leads to the CRM webhook)."""

    loops: list[TableOutbox]

    async def run(self, stopping: asyncio.Event) -> None:
        await asyncio.gather(*(loop.run(stopping) for loop in self.loops))


async def start_signals(settings: Settings, stack: AsyncExitStack, producer: AIOKafkaProducer, codecs: Codecs,
                        watchlists: Callable[[], WatchlistSet]) -> SignalLoops:
    """Install the rules the writer uses from now on in this task (and the tasks it starts), and make
    the loops that publish what it records. A policy file that cannot be used is a ConfigError here.
    The loops get a small pool of their own (each holds a connection to listen on)."""
    source = SignalSource(watchlists, period_days=settings.lead_period_days, owned_handles=settings.owned_handles,
                          policy_file=settings.policy_file)
    use_signals(source)
    pool = await open_pool(settings.database_url.get_secret_value(), max_size=6, migrate_first=False)
    stack.push_async_callback(pool.close)
    loops: list[TableOutbox] = [LeadOutbox(pool, producer, codecs.for_topic(LEADS)),
                                PolicyFlagOutbox(pool, producer, codecs.for_topic(POLICY_FLAGS))]
    webhook = lead_webhook(pool, settings)
    if webhook is not None:
        stack.push_async_callback(webhook.aclose)
        loops.append(webhook)
    return SignalLoops(loops)
