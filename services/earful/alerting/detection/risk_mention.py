"""risk_mention: mentions tagged with a risk (legal_privacy, regulatory, ...) by authors with reach.

A mention tagged with one of the alerting risk tags by an author with at least `min_reach`
followers counts; `min_count` of them, each within `quiet_s` of the previous, fire one alert per
tag, which resolves after `quiet_s` without another.
"""

from __future__ import annotations

from earful.alerting.detection.lifecycle import hit, resolve
from earful.alerting.detection.model import Decision, DetectorConfig, Mention, duration_text
from earful.alerting.detection.rules import RISK_MENTION, WatchlistRules
from earful.alerting.detection.state import DetectorState


def observe(state: DetectorState, rules: WatchlistRules, m: Mention, cfg: DetectorConfig) -> list[Decision]:
    """Count a risk-tagged mention per tag; fire once a tag has `min_count` of them."""
    rule = rules.get(RISK_MENTION)
    if rule is None or not m.risks:
        return []
    if (m.followers or 0) < rule["min_reach"]:
        return []
    out: list[Decision] = []
    for tag in sorted(set(m.risks) & cfg.risk_tags):
        track = state["risk"].get(tag)
        if track is None or m.created_ms - track[0] > rule["quiet_s"] * 1000:
            track = [m.created_ms, 0, m.mention_id]
        track[0] = max(track[0], m.created_ms)
        track[1] += 1
        state["risk"][tag] = track
        if track[1] < rule["min_count"]:
            continue
        name = rules.name or rules.watchlist_id
        reach = f" (author reach {m.followers:,})" if m.followers else ""
        out += hit(state, rules, rule, RISK_MENTION, {"risk": tag}, m.created_ms, None, cfg, observed=track[1],
                   expected=0.0, score=float(track[1]), summary=f"{name}: {track[1]} mention(s) tagged {tag}{reach}",
                   samples=[track[2], m.mention_id], first_received=m.received_ms,
                   window=(m.created_ms - int(rule["quiet_s"] * 1000), m.created_ms + 1))
    return out


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
