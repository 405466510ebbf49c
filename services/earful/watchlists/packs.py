"""Rule packs: the alert rules a watchlist runs by default, by its kind.

A brand wants to hear of a crisis (volume, negative share, risk-tagged posts by people with reach,
a post going viral, an influential customer left waiting); a competitor's surge is a heads-up, not
a page; a campaign wants to know when it takes off or sours; an executive's name next to a risk
tag matters at once. Each pack's thresholds are chosen so a quiet watchlist stays quiet: every
rule judges against the watchlist's own history, and rules that could fire on one post (risk,
questions) need reach and, for risk, news (a tag the watchlist rarely sees).

A watchlist may override any rule: an entry of its `alert_rules` replaces the pack's entry of the
same rule (its thresholds are added to the pack's, overriding those it names), `enabled: false`
switches a pack rule off, and rules the pack lacks are added. Kind `staff` runs no rule unless it
lists some. Kind `topic` has no pack: it runs
its own rules, or the service defaults (`EARFUL_ALERT_DEFAULT_RULES`) when it lists none.
"""

from __future__ import annotations

from dataclasses import replace

from earful.watchlists.model import AlertRule, Watchlist

QUESTION_REACH = 50000.0  # an influential customer: followers of an author whose question must not wait

RULE_PACKS: dict[str, tuple[AlertRule, ...]] = {
    "brand": (
        AlertRule("volume_spike", severity="critical"),
        AlertRule("negative_surge", severity="warning"),
        AlertRule("risk_mention", severity="warning"),
        AlertRule("viral_post", severity="warning"),
        AlertRule("unanswered_question", severity="warning",
                  thresholds={"min_reach": QUESTION_REACH, "own_sources": 1.0}),
    ),
    "competitor": (  # their slow burn is not ours to watch: the minute and the five minutes only
        AlertRule("volume_spike", severity="warning", thresholds={"window_long_s": 0.0}),
        AlertRule("negative_surge", severity="info"),
        AlertRule("viral_post", severity="info"),
    ),
    "campaign": (
        AlertRule("volume_spike", severity="warning"),
        AlertRule("negative_surge", severity="warning"),
        AlertRule("viral_post", severity="warning"),
    ),
    "executive": (
        AlertRule("volume_spike", severity="warning"),
        AlertRule("negative_surge", severity="warning"),
        AlertRule("risk_mention", severity="critical"),
        AlertRule("viral_post", severity="warning"),
    ),
    "product": (
        AlertRule("volume_spike", severity="warning"),
        AlertRule("negative_surge", severity="warning"),
        AlertRule("risk_mention", severity="warning"),
        AlertRule("unanswered_question", severity="warning",
                  thresholds={"min_reach": QUESTION_REACH, "own_sources": 1.0}),
    ),
    "staff": (),  # employees' own posts: checked against the social-media policy, not for volume
}


def pack_rules(watchlist: Watchlist) -> tuple[AlertRule, ...] | None:
    """The alert rules of the watchlist's kind merged with its own, or None when its kind has no pack."""
    pack = RULE_PACKS.get(watchlist.kind)
    if pack is None:
        return None
    own = {r.rule: r for r in watchlist.alert_rules}
    merged: list[AlertRule] = []
    for base in pack:
        mine = own.pop(base.rule, None)
        if mine is None:
            merged.append(base)
        else:
            merged.append(replace(mine, thresholds={**base.thresholds, **mine.thresholds}))
    merged += own.values()  # rules the pack does not have, in the watchlist's order
    return tuple(merged)
