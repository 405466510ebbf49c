"""risk_mention: mentions tagged with a risk (legal_privacy, regulatory, ...) by authors with reach.

A mention tagged with one of the alerting risk tags by an author with at least `min_reach`
followers counts; `min_count` of them, each within `quiet_s` of the previous, fire one alert per
tag, which resolves after `quiet_s` without another. It must also be news: at least `min_ratio`
times the tag's usual count per `quiet_s` for this watchlist (a memory with a one-day half-life),
judged only once the watchlist has `min_history_s` of history. So one post about a data breach
alerts a brand that never sees one, while a big brand for which such posts are routine is not
paged for each (its volume and negative-share rules see a real surge).
"""

from __future__ import annotations

import math

from earful.alerting.detection.lifecycle import hit, resolve
from earful.alerting.detection.model import Decision, DetectorConfig, Mention, duration_text
from earful.alerting.detection.rules import RISK_MENTION, RuleConfig, WatchlistRules
from earful.alerting.detection.state import DetectorState

MEMORY_HALF_LIFE_S = 86400  # memory of a tag's usual count


def observe(state: DetectorState, rules: WatchlistRules, m: Mention, cfg: DetectorConfig) -> list[Decision]:
    """Count a risk-tagged mention per tag; fire once a tag has `min_count` of them."""
    rule = rules.get(RISK_MENTION)
    if rule is None or not m.risks:
        return []
    if (m.followers or 0) < rule["min_reach"]:
        return []
    out: list[Decision] = []
    first = state["first"]
    history_ms = m.created_ms - first * cfg.bucket_ms if first is not None else 0
    for tag in sorted(set(m.risks) & cfg.risk_tags):
        usual = _usual(state, tag, m.created_ms, rule, history_ms)
        track = state["risk"].get(tag)
        if track is None or m.created_ms - track[0] > rule["quiet_s"] * 1000:
            track = [m.created_ms, 0, m.mention_id, m.created_ms]
        track[0] = max(track[0], m.created_ms)
        track[1] += 1
        state["risk"][tag] = track
        if track[1] < rule["min_count"] or history_ms < rule["min_history_s"] * 1000:
            continue
        quiet_ms = rule["quiet_s"] * 1000  # the run's count per quiet_s against the tag's usual count per quiet_s
        per_quiet = track[1] * quiet_ms / max(quiet_ms, track[0] - (track[3] if len(track) > 3 else track[0]))
        if per_quiet < rule["min_ratio"] * usual:  # routine for this watchlist, not news
            continue
        name = rules.name or rules.watchlist_id
        reach = f" (author reach {m.followers:,})" if m.followers else ""
        out += hit(state, rules, rule, RISK_MENTION, {"risk": tag}, m.created_ms, None, cfg, observed=track[1],
                   expected=0.0, score=float(track[1]), summary=f"{name}: {track[1]} mention(s) tagged {tag}{reach}",
                   samples=[track[2], m.mention_id], first_received=m.received_ms,
                   window=(m.created_ms - int(rule["quiet_s"] * 1000), m.created_ms + 1))
    return out


def _usual(state: DetectorState, tag: str, at_ms: int, rule: RuleConfig, history_ms: int) -> float:
    """The tag's usual count of qualifying mentions per `quiet_s` before this one; remembers this one."""
    memory = state["riskrate"].get(tag) or [0.0, at_ms]
    decayed = memory[0] * 0.5 ** (max(0, at_ms - memory[1]) / (MEMORY_HALF_LIFE_S * 1000))
    state["riskrate"][tag] = [round(decayed + 1.0, 4), max(at_ms, memory[1])]
    span_s = min(max(history_ms / 1000, rule["quiet_s"]), MEMORY_HALF_LIFE_S / math.log(2))
    return decayed * rule["quiet_s"] / span_s


def settle(state: DetectorState, rules: WatchlistRules, now: int) -> list[Decision]:
    """Forget tags quiet for `quiet_s`; resolve their alerts."""
    out: list[Decision] = []
    rule = rules.get(RISK_MENTION)
    for tag, track in list(state["risk"].items()):
        quiet_ms = int((rule["quiet_s"] if rule else 0) * 1000)
        if now - track[0] < quiet_ms:
            continue
        del state["risk"][tag]
        key = f"{RISK_MENTION}:{tag}"
        ep = state["episodes"].get(key)
        if ep is not None and ep["phase"] == "firing":
            name = rules.name or rules.watchlist_id
            out += resolve(state, key, ep, track[0] + quiet_ms, 0.0, 0.0,
                           f"{name}: no new mention tagged {tag} for {duration_text(quiet_ms // 1000)}")
    return out
