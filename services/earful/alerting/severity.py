"""How serious an alert is, judged from its evidence (not the rule's configured severity, which
routes it): a score from 0 to 10 and a level, with the factors that made it.

Five factors add up (their maxima sum to 10):

| factor | points | full marks at |
|---|---|---|
| volume: window volume against the usual | up to 2.5 | 32× (log2 scale from 1×) |
| reach: followers of the window's distinct authors | up to 2 | 1M (log scale from 1k) |
| risk: share of posts with a risk tag × the tag's weight | up to 3 | half the posts, legal/privacy or regulatory |
| negative: expected share of negative posts | up to 1.5 | 80% (from 20%) |
| velocity: mentions per minute over the window | up to 1 | 100/min (log scale from 1/min) |

Levels: critical ≥ 6.5, high ≥ 4.5, medium ≥ 2.5, else low. The score has one decimal and the factors
list each one's value, points and reason, so two alerts of different weight differ.
"""

from __future__ import annotations

import math
from typing import Any

from earful.alerting.explain import compact_number, tag_label

#: How much a risk tag weighs (legal and regulatory exposure most).
RISK_WEIGHTS = {"legal_privacy": 1.0, "regulatory": 1.0, "reputational": 0.7, "operational": 0.6}
LEVELS = (("critical", 6.5), ("high", 4.5), ("medium", 2.5), ("low", 0.0))
VOLUME_RULES = frozenset({"volume_spike"})  # rules whose observed/baseline is a volume ratio


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def level_of(score: float) -> str:
    return next(name for name, floor in LEVELS if score >= floor)


def volume_ratio(rule: str, observed: float, baseline: float, explanation: dict[str, Any]) -> float | None:
    """The window's volume against the usual: the detector's own ratio for volume rules, else the
    window's rate against the history's (None when the history covers under an hour)."""
    if rule in VOLUME_RULES and observed > 0:
        return observed / max(baseline, 0.1)
    hours = explanation.get("history_hours") or 0
    history = explanation.get("history_posts") or 0
    minutes = _window_minutes(explanation)
    if hours < 1 or not history or not minutes:
        return None
    usual = history / (hours * 60.0)
    return (explanation.get("total") or 0) / minutes / max(usual, 1e-3)


def _window_minutes(explanation: dict[str, Any]) -> float:
    start, end = explanation.get("window_start"), explanation.get("window_end")
    if not isinstance(start, int) or not isinstance(end, int):
        return 1.0
    return max(end - start, 60_000) / 60_000


def assess(rule: str, observed: float, baseline: float, explanation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The SeverityAssessment record for an alert with this evidence (None without evidence)."""
    if not explanation or not explanation.get("total"):
        return None
    total = int(explanation["total"])
    factors: list[dict[str, Any]] = []

    ratio = volume_ratio(rule, observed, baseline, explanation)
    if ratio is not None:
        points = 2.5 * _clamp(math.log2(max(ratio, 1.0)) / 5.0)
        factors.append(_factor("volume", ratio, points, f"{_ratio_text(ratio)} the usual volume"))

    reach = float(explanation.get("reach") or 0)
    factors.append(_factor("reach", reach, 2.0 * _clamp((math.log10(max(reach, 1.0)) - 3.0) / 3.0),
                           f"{compact_number(reach)} followers reached"))

    best: tuple[float, str, int] | None = None
    for t in explanation.get("tags") or []:
        weight = RISK_WEIGHTS.get(t["tag"])
        if weight is None or t["count"] < 2:
            continue
        points = 3.0 * weight * _clamp(t["count"] / total / 0.5)
        if best is None or points > best[0]:
            best = (points, t["tag"], t["count"])
    if best is not None:
        factors.append(_factor("risk", best[2] / total, best[0], f"{tag_label(best[1])} in {best[2]} of {total} posts"))
    else:
        factors.append(_factor("risk", 0.0, 0.0, "no risk tag on two posts or more"))

    negative = explanation.get("negative_share")
    if negative is not None:
        factors.append(_factor("negative", negative, 1.5 * _clamp((negative - 0.2) / 0.6), f"{negative:.0%} negative"))

    rate = total / _window_minutes(explanation)
    factors.append(_factor("velocity", rate, _clamp(math.log10(max(rate, 1.0)) / 2.0), f"{rate:.0f} mentions a minute"))

    score = round(min(10.0, sum(f["points"] for f in factors)), 1)
    factors.sort(key=lambda f: -f["points"])
    return {"level": level_of(score), "score": score, "factors": factors}


def _factor(name: str, value: float, points: float, reason: str) -> dict[str, Any]:
    return {"name": name, "value": round(float(value), 4), "points": round(points, 2), "reason": reason}


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < 3 else f"{ratio:.0f}×"


def reasons(assessment: dict[str, Any], limit: int = 5) -> str:
    """'critical 8.1/10: legal/privacy in 9 of 14 posts, 8× the usual volume, ...' (factors that scored)."""
    parts = [f["reason"] for f in assessment["factors"] if f["points"] > 0][:limit]
    head = f"{assessment['level']} {assessment['score']:.1f}/10"
    return f"{head}: {', '.join(parts)}" if parts else head
