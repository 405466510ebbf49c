"""viral_post: one post whose reshares + replies grow by `min_growth` within `window_s`.

Growth is measured from successive engagement observations of the post, or from the reshares and
replies of it seen in the stream. Resolves once the growth in the window falls below half the
firing growth (hysteresis). At most `max_posts` posts are followed per watchlist: the state is
written on every mention.
"""

from __future__ import annotations

from typing import Literal

from earful.alerting.detection.lifecycle import hit, resolve
from earful.alerting.detection.model import Decision, DetectorConfig, Mention, duration_text, post_key
from earful.alerting.detection.rules import VIRAL_POST, WatchlistRules
from earful.alerting.detection.state import DetectorState, TrackedPost


def observe(state: DetectorState, rules: WatchlistRules, m: Mention, cfg: DetectorConfig) -> list[Decision]:
    """Record the growth a mention shows (of itself, or of the post it reshares or answers); fire on enough."""
    rule = rules.get(VIRAL_POST)
    if rule is None or not m.source:
        return []
    posts = state["posts"]
    window_ms = int(rule["window_s"] * 1000)
    touched = _track(posts, m, window_ms)
    if len(posts) > cfg.max_posts:  # forget the posts that went quiet longest ago, a fifth at a time (sorting is dear)
        idle = [k for k in sorted(posts, key=lambda k: _last_seen(posts[k])) if f"{VIRAL_POST}:{k}" not in state["episodes"]]
        for key in idle[: len(posts) - cfg.max_posts * 4 // 5]:
            del posts[key]
    out: list[Decision] = []
    for key, kind in touched:
        if key not in posts:
            continue
        growth = _growth(posts[key][kind], window_ms)
        if growth >= rule["min_growth"]:
            post = posts[key]
            name = rules.name or rules.watchlist_id
            who = f" by @{post['u']}" if post.get("u") else ""
            out += hit(state, rules, rule, VIRAL_POST, {"post": key}, m.created_ms, None, cfg, observed=growth,
                       expected=0.0, score=float(growth),
                       summary=f"{name}: a post{who} gained {growth:,} reshares and replies within {duration_text(int(rule['window_s']))}",
                       samples=[s for s in (post.get("m"), m.mention_id) if s], first_received=m.received_ms,
                       window=(m.created_ms - window_ms, m.created_ms + 1))
    return out


Series = Literal["obs", "rep"]  # engagement observations of the post | its reshares and replies in the stream


def _track(posts: dict[str, TrackedPost], m: Mention, window_ms: int) -> list[tuple[str, Series]]:
    """Add the mention's points to the posts it tells about; (post key, series) of each point added."""
    touched: list[tuple[str, Series]] = []
    if m.observed_ms is not None and m.source_id:  # an engagement observation of the post itself
        key = post_key(m.source, m.source_id)
        post = posts.setdefault(key, {"obs": [[m.created_ms, 0]], "rep": [], "m": m.mention_id, "u": m.author_handle})
        post["obs"] = _push(post["obs"], [max(m.observed_ms, m.created_ms), m.engagement], window_ms)
        touched.append((key, "obs"))
    for parent in {p for p in (m.reposted_from, m.in_reply_to) if p}:  # a reshare or reply seen in the stream
        key = post_key(m.source, parent)
        post = posts.setdefault(key, {"obs": [], "rep": [], "m": None, "u": None})
        count = (post["rep"][-1][1] if post["rep"] else 0) + 1
        post["rep"] = _push(post["rep"], [m.created_ms, count], window_ms)
        touched.append((key, "rep"))
    return touched


def _push(series: list[list[int]], point: list[int], window_ms: int) -> list[list[int]]:
    """Add a (time, running total) point: one point per slot (a minute, or window/30 for long
    windows; the latest total in the slot wins), keeping the slots inside the window and the
    last one before it, so at most ~32 points per post."""
    slot_ms = max(60_000, window_ms // 30)
    t, total = point
    if series and t < series[-1][0]:
        t = series[-1][0]  # late arrivals count as now (running totals only grow)
    if series and series[-1][0] // slot_ms == t // slot_ms:
        series = [*series[:-1], [t, total]]
    else:
        series = [*series, [t, total]]
    cut = t - window_ms
    before = [p for p in series if p[0] <= cut][-1:]
    return before + [p for p in series if p[0] > cut]


def _growth(series: list[list[int]], window_ms: int, now_ms: int | None = None) -> int:
    """How much the running total grew within the window ending at `now_ms` (default: the newest
    point). The total at the window's start is interpolated between the points around it, so a
    post first seen with 5,000 reshares a month after it was written grew by ~1 in ten minutes,
    not 5,000."""
    if not series:
        return 0
    end = series[-1][0] if now_ms is None else now_ms
    start = end - window_ms
    inside = [(t, total) for t, total in series if start < t <= end]
    if not inside:
        return 0
    before = [(t, total) for t, total in series if t <= start]
    base = 0.0
    if before:
        (t0, v0), (t1, v1) = before[-1], inside[0]
        base = v0 + (v1 - v0) * (start - t0) / (t1 - t0) if t1 > t0 else v0
    return max(0, int(max(total for _, total in inside) - base))


def _last_seen(post: TrackedPost) -> int:
    return max([p[0] for p in post["obs"]] + [p[0] for p in post["rep"]] + [0])


def settle(state: DetectorState, rules: WatchlistRules, now: int) -> list[Decision]:
    """Resolve posts whose growth in the window fell below half the firing growth."""
    out: list[Decision] = []
    rule = rules.get(VIRAL_POST)
    for key, ep in list(state["episodes"].items()):
        if ep["rule"] != VIRAL_POST or ep["phase"] != "firing" or rule is None:
            continue
        post = state["posts"].get(ep["labels"].get("post", ""))
        window_ms = int(rule["window_s"] * 1000)
        growth = 0
        if post is not None:  # observation times may run ahead of the event clock: judge at the later
            growth = max(_growth(post["obs"], window_ms, max(now, post["obs"][-1][0] if post["obs"] else now)),
                         _growth(post["rep"], window_ms, max(now, post["rep"][-1][0] if post["rep"] else now)))
        if growth < rule["min_growth"] / 2:  # hysteresis: half the firing growth
            name = rules.name or rules.watchlist_id
            out += resolve(state, key, ep, now, float(growth), 0.0,
                           f"{name}: the post stopped spreading fast ({growth} in the last {duration_text(window_ms // 1000)})")
    return out
