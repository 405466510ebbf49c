"""Detection: from mentions to alert decisions, per watchlist, within seconds.

* `detector`: the entry points (`observe` a mention, `observe_counts` a pre-counted bucket,
  `tick` as time passes), which hand the state to one module per rule: `volume_spike`,
  `negative_surge`, `risk_mention`, `viral_post`, `unanswered_question`, `volume_drop`.
* `lifecycle`: the episode life cycle the rules share (pending → firing → resolved).
* `state`: the typed, versioned state per watchlist, and `upgrade_state` for older layouts.
* `buckets`: counting in event-time buckets, hour-of-week norms, the baseline; `stats`: the tests.
* `rules` / `rulebook`: which rules run for a watchlist, with which thresholds (settings defaults).
* `model`: the detector's settings, mentions and decisions; `backtest`: `earful backtest`.
"""

from earful.alerting.detection.detector import observe, observe_counts, tick
from earful.alerting.detection.model import MAX_SAMPLES, Decision, DetectorConfig, Mention, fingerprint, mention_of
from earful.alerting.detection.state import DetectorState, new_state, upgrade_state

__all__ = [
           "MAX_SAMPLES",
           "Decision",
           "DetectorConfig",
           "DetectorState",
           "Mention",
           "fingerprint",
           "mention_of",
           "new_state",
           "observe",
           "observe_counts",
           "tick",
           "upgrade_state",
]
