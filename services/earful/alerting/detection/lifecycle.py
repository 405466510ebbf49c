"""The alert episode life cycle every rule shares: pending → firing → resolved → cooling down.

A rule reports that its condition holds (`hit`): the episode starts pending, fires once the
condition held for the rule's `pending_s`, and is extended while it keeps holding. A pending
episode whose condition stopped holding is dropped without a word; a firing one is resolved by its
rule (`resolve`, always reported), after which the same episode may not fire again for
`cooldown_s` (one crisis, one alert). Identity: the labels (watchlist labels, watchlist, rule,
severity, plus the rule's own, e.g. the risk tag) → fingerprint; the alert id adds the start time.
"""

from __future__ import annotations

from earful.alerting.detection.model import Decision, DetectorConfig, fingerprint
from earful.alerting.detection.rules import RuleConfig, WatchlistRules
from earful.alerting.detection.state import DetectorState, Episode


def labels_of(rules: WatchlistRules, rule: RuleConfig, extra: dict[str, str]) -> dict[str, str]:
    """An alert's labels: the watchlist's own, then watchlist, rule and severity, then the rule's."""
    labels = dict(rules.labels.items())
    labels.update({"watchlist": rules.watchlist_id, "rule": rule.rule, "severity": rule.severity})
    labels.update(extra)
    return labels


def hit(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, key_rule: str, extra: dict[str, str],
        at_ms: int, bucket: int | None, cfg: DetectorConfig, *, observed: float, expected: float, score: float,
        summary: str, samples: list[str] | None = None, first_received: int | None = None,
        window: tuple[int, int] | None = None, starts_ms: int | None = None) -> list[Decision]:
    """The rule's condition holds at `at_ms`: start pending, fire once pending is over, or extend."""
    key = key_rule if not extra else f"{key_rule}:{':'.join(extra.values())}"
    ep = state["episodes"].get(key)
    if ep is not None and ep["phase"] == "firing":
        if bucket is not None:
            ep["bucket"] = bucket if ep["bucket"] is None else max(ep["bucket"], bucket)
        ep["last_ms"] = max(ep["last_ms"], at_ms)
        return []
    if ep is None:
        if at_ms <= state["cool"].get(key, -1):
            return []  # cooling down after a resolution: one crisis, one alert
        ep = {"rule": rule.rule, "phase": "pending", "since_ms": at_ms, "last_ms": at_ms, "bucket": bucket,
              "since_bucket": bucket, "pending_s": rule.pending_s, "labels": labels_of(rules, rule, extra)}
        state["episodes"][key] = ep
    ep["last_ms"] = max(ep["last_ms"], at_ms)
    if bucket is not None:
        ep["bucket"] = bucket if ep["bucket"] is None else max(ep["bucket"], bucket)
    if at_ms - ep["since_ms"] < rule.pending_s * 1000:
        return []
    return [_fire(state, rules, rule, ep, bucket, cfg, observed=observed, expected=expected, score=score,
                  summary=summary, samples=samples, first_received=first_received, window=window,
                  starts_ms=starts_ms)]


def _fire(state: DetectorState, rules: WatchlistRules, rule: RuleConfig, ep: Episode, bucket: int | None,
          cfg: DetectorConfig, *, observed: float, expected: float, score: float, summary: str,
          samples: list[str] | None, first_received: int | None, window: tuple[int, int] | None,
          starts_ms: int | None) -> Decision:
    """Pending is over: the episode fires (evidence defaults to the bucket that hit)."""
    labels = ep["labels"]
    fp = fingerprint(labels)
    if starts_ms is None:
        since_bucket = ep.get("since_bucket")
        starts_ms = since_bucket * cfg.bucket_ms if since_bucket is not None else ep["since_ms"]
    alert_id = f"{fp}-{starts_ms}"
    ep["phase"], ep["fingerprint"], ep["alert_id"] = "firing", fp, alert_id
    ep["starts_ms"], ep["cooldown_s"], ep["observed"] = starts_ms, rule.cooldown_s, observed
    if samples is None and bucket is not None:
        samples = list(state["samples"].get(str(bucket), []))
        first_received = state["recv"].get(str(bucket))
    if window is None and bucket is not None:
        window = (bucket * cfg.bucket_ms, (bucket + 1) * cfg.bucket_ms)
    return Decision(
        status="firing", rule=rule.rule, watchlist_id=rules.watchlist_id, fingerprint=fp, alert_id=alert_id,
        labels=dict(labels), observed=float(observed), baseline=float(expected), score=float(score),
        starts_at_ms=starts_ms, ends_at_ms=None, sample_mention_ids=samples or [], first_received_at_ms=first_received,
        summary=summary, window=window,
    )


def resolve(state: DetectorState, key: str, ep: Episode, ends_ms: int, observed: float, expected: float,
            summary: str, *, cool_down: bool = True) -> list[Decision]:
    """End an episode: a firing one is reported resolved and cools down (unless it is withdrawn as
    never real: `cool_down=False`); a pending one just ends."""
    del state["episodes"][key]
    if ep["phase"] != "firing":
        return []
    if cool_down:
        state["cool"][key] = ends_ms + int(ep.get("cooldown_s", 0)) * 1000
    for k in [k for k, until in state["cool"].items() if until < ends_ms]:  # expired cool-downs
        del state["cool"][k]
    labels = ep["labels"]
    return [Decision(
        status="resolved", rule=ep["rule"], watchlist_id=labels.get("watchlist", ""), fingerprint=ep["fingerprint"],
        alert_id=ep["alert_id"], labels=dict(labels), observed=float(observed), baseline=float(expected), score=0.0,
        starts_at_ms=ep["starts_ms"], ends_at_ms=max(ends_ms, ep["starts_ms"]), sample_mention_ids=[],
        first_received_at_ms=None, summary=summary,
    )]


def settle_episodes(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig, now: int) -> list[Decision]:
    """Drop pending episodes whose condition stopped holding; resolve those of rules removed since."""
    out: list[Decision] = []
    for key, ep in list(state["episodes"].items()):
        if rules.get(ep["rule"]) is None:
            out += resolve(state, key, ep, now, 0.0, 0.0, f"{ep['labels'].get('watchlist')}: rule {ep['rule']} removed")
            continue
        if ep["phase"] == "pending" and _pending_expired(ep, now, state, cfg):
            del state["episodes"][key]
    return out


def _pending_expired(ep: Episode, now: int, state: DetectorState, cfg: DetectorConfig) -> bool:
    bucket = ep["bucket"]
    if bucket is not None:  # count-based: the bucket after the last hit came and went normal
        return state["latest"] is not None and state["latest"] > bucket + 1
    return now - ep["last_ms"] > max(ep.get("pending_s", 0) * 1000, cfg.bucket_ms) * 2


def settled_end(state: DetectorState, rule_name: str, cfg: DetectorConfig) -> tuple[Episode, int] | None:
    """A firing count-based episode whose `resolve_buckets` buckets after its last hit have all
    settled (left the lateness window), with the last of them; None while any may still change."""
    if state["latest"] is None:
        return None
    ep = state["episodes"].get(rule_name)
    if ep is None or ep["phase"] != "firing" or ep["bucket"] is None:
        return None
    end = ep["bucket"] + cfg.resolve_buckets  # the last of the normal buckets required
    if state["latest"] - cfg.lateness_buckets - 1 < end:
        return None
    return ep, end
