"""Detection per watchlist: pure functions over a small JSON-able state, evaluated on every event.

`observe` takes one mention, `observe_counts` a pre-counted bucket (backtests), `tick` lets time
pass without a mention. Each hands the state to the rules (see `earful.alerting.detection.rules`),
one module each: volume_spike, negative_surge, risk_mention, viral_post, unanswered_question and
volume_drop. They share the episode life cycle (`lifecycle`: pending → firing → resolved →
cooling down) and the bucket counts (`buckets`).

Mentions may arrive late in event time (several partitions, slow sources, fast replays): buckets
up to `lateness_buckets` behind the newest are still judged, and a count-based alert resolves only
once `resolve_buckets` settled buckets after its last spike were normal. `tick` advances time when
no mention arrives (the event clock moves with the wall clock), so a watchlist that falls silent
still resolves and an unanswered question still becomes overdue.

The state (`state.DetectorState`) lives in a Faust table (changelogged, survives restarts).
"""

from __future__ import annotations

from earful.alerting.detection import (
    negative_surge,
    risk_mention,
    unanswered_question,
    viral_post,
    volume_drop,
    volume_spike,
)
from earful.alerting.detection.buckets import advance_clock, advance_to, count, now_of, season_add
from earful.alerting.detection.lifecycle import settle_episodes
from earful.alerting.detection.model import Decision, DetectorConfig, Mention
from earful.alerting.detection.rules import NEGATIVE_SURGE, VOLUME_SPIKE, WatchlistRules
from earful.alerting.detection.state import DetectorState


def observe(state: DetectorState, rules: WatchlistRules, m: Mention, cfg: DetectorConfig,
            wall_ms: int | None = None) -> list[Decision]:
    """Take one mention into `state` (mutating it) and return the alert decisions it causes."""
    decisions: list[Decision] = []
    advance_clock(state, m.created_ms, m.received_ms if wall_ms is None else wall_ms)
    own = (m.author_handle or "").casefold().lstrip("@") in rules.handles if m.author_handle else False
    idx = m.created_ms // cfg.bucket_ms
    earned = m.matched and not own and not m.owned  # the brand talking about itself is not a mention of it

    if earned and count(state, idx, m, cfg):
        decisions += _judge_counts(state, rules, idx, cfg, m.created_ms)
    if earned:
        decisions += risk_mention.observe(state, rules, m, cfg)
    decisions += viral_post.observe(state, rules, m, cfg)
    decisions += unanswered_question.observe(state, rules, m, own, cfg)
    decisions += _settle(state, rules, cfg)
    return decisions


def observe_counts(state: DetectorState, rules: WatchlistRules, idx: int, count: int, cfg: DetectorConfig,
                   negative: int = 0) -> list[Decision]:
    """Take a whole bucket's count at once (backtests over pre-counted series, e.g. NAB CSVs)."""
    at_ms = idx * cfg.bucket_ms
    advance_clock(state, at_ms, at_ms)
    if state["first"] is None:
        state["first"] = state["latest"] = idx
    assert state["latest"] is not None
    if idx > state["latest"]:
        advance_to(state, idx, cfg)
    key = str(idx)
    state["counts"][key] = state["counts"].get(key, 0) + count
    if negative:
        state["neg"][key] = state["neg"].get(key, 0) + negative
    season_add(state, idx, count, cfg)
    decisions = _judge_counts(state, rules, idx, cfg, at_ms) if count else []
    return decisions + _settle(state, rules, cfg)


def tick(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig, wall_ms: int) -> list[Decision]:
    """Let time pass without a mention: the event clock advances with the wall clock since the
    newest mention, so a silent watchlist resolves and questions become overdue."""
    clock = state["clock"]
    if not clock:
        return []
    event_ms, seen_wall = clock
    now = event_ms + max(0, wall_ms - seen_wall)
    virtual = now // cfg.bucket_ms - 1  # one bucket of slack for mentions still in the pipeline
    if state["latest"] is not None and virtual > state["latest"]:
        advance_to(state, virtual, cfg)
    return _settle(state, rules, cfg, now)


def _judge_counts(state: DetectorState, rules: WatchlistRules, idx: int, cfg: DetectorConfig,
                  at_ms: int) -> list[Decision]:
    """Judge bucket idx (if still within the lateness window) for the count-based rules."""
    assert state["latest"] is not None
    if idx < state["latest"] - cfg.lateness_buckets:
        return []
    out: list[Decision] = []
    rule = rules.get(VOLUME_SPIKE)
    if rule is not None:
        out += volume_spike.judge(state, rules, rule, idx, cfg, at_ms)
    rule = rules.get(NEGATIVE_SURGE)
    if rule is not None:
        out += negative_surge.judge(state, rules, rule, idx, cfg, at_ms)
    return out


def _settle(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig, now: int | None = None) -> list[Decision]:
    """Everything that depends on time passing: resolutions, overdue questions, drops."""
    now = now_of(state) if now is None else now
    out = settle_episodes(state, rules, cfg, now)
    out += volume_spike.settle(state, rules, cfg)
    out += negative_surge.settle(state, rules, cfg)
    out += risk_mention.settle(state, rules, now)
    out += viral_post.settle(state, rules, now)
    out += unanswered_question.settle(state, rules, cfg, now)
    out += volume_drop.judge(state, rules, cfg)
    return out
