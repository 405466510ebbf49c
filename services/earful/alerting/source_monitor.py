"""The source-health monitor at run time: fed by every enriched mention, judged on the timer.

Its state (see `earful.alerting.detection.source_health`) is kept under the key ``~sources`` of
the detector's changelogged table, which no watchlist id can take, written once a minute and on
every decision, so a restart resumes with the usual rates it had learnt and resolves an outage
that was firing.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from earful.alerting.detection import source_health
from earful.alerting.detection.model import Decision
from earful.alerting.detection.source_health import SourceHealthConfig

STATE_KEY = b"~sources"
SAVE_EVERY = 6  # judged buckets between two writes of the state (a minute with the default bucket), unless it decided


class SourceMonitor:
    """Source health over a table (the detector's); `enabled` False makes every call a no-op."""

    def __init__(self, table: MutableMapping[bytes, Any], cfg: SourceHealthConfig, enabled: bool = True) -> None:
        self.table = table
        self.cfg = cfg
        self.enabled = enabled
        self._state: dict[str, Any] | None = None
        self._unsaved = 0

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:  # read once the table has been recovered (the first use is in an agent or timer)
            stored = self.table.get(STATE_KEY)
            self._state = stored if isinstance(stored, dict) and stored.get("version") == 1 else source_health.new_health()
        return self._state

    def observe(self, record: dict[str, Any]) -> None:
        """Count an enriched mention (schemas/enriched_mention.avsc) for its source."""
        if not self.enabled:
            return
        m = record["mention"]
        source_health.observe(self.state, m["source"], int(m["created_at"].timestamp() * 1000),
                              int(m["received_at"].timestamp() * 1000), record.get("watchlist_ids") or (), self.cfg)

    def tick(self, now_ms: int) -> list[Decision]:
        """Judge the sources (once per bucket) and keep the state in the table."""
        if not self.enabled:
            return []
        state = self.state
        judged = state["judged"]
        decisions = source_health.judge(state, now_ms, self.cfg)
        if state["judged"] != judged:
            self._unsaved += 1
            if decisions or self._unsaved >= SAVE_EVERY:
                self.table[STATE_KEY] = state
                self._unsaved = 0
        return decisions

    def degraded_for(self, watchlist_id: str) -> list[str]:
        """The degraded sources `watchlist_id` depends on."""
        return source_health.degraded_for(self.state, watchlist_id) if self.enabled else []
