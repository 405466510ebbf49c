"""The sentence an alert leads with, built only from its evidence, each claim traceable to the
mention ids behind it:

    Acme Air: data breach (legal/privacy, 9 of 14 posts) — 14 mentions in 60 s, 8× usual; started by @breachwatch_kat (84k followers)

* the cause (`explain.cause_of`): the dominant tag with its most common evidence phrase, or the
  most distinctive phrase of the window;
* what the detector measured: for a volume spike the count, the window and the ratio to the
  usual; for other rules the detector's own words;
* the first post carrying the cause, with its author's reach.

Rules whose alert is not about what people say (a drop in volume, a source outage) keep the
detector's sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from earful.alerting.explain import compact_number

NO_CAUSE_RULES = frozenset({"volume_drop", "source_outage"})  # alerts about silence: posts do not explain them
MAX_CLAIM_IDS = 100


@dataclass(frozen=True)
class Summary:
    text: str
    claims: list[dict[str, Any]]  # Claim records: {"text", "mention_ids"}


def duration(ms: int) -> str:
    """1.4 s (volume_spike's fast window), 60 s, 5 min, 2 h."""
    if ms < 9_950 and ms % 1000:
        return f"{ms / 1000:.1f} s"
    seconds = round(ms / 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def ratio_text(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < 3 else f"{ratio:.0f}×"


def cause_text(cause: dict[str, Any]) -> str:
    """'data breach (legal/privacy, 9 of 14 posts)' or '"refund" (8 of 20 posts)'."""
    share = f"{cause['count']} of {cause['total']} posts"
    if cause["kind"] == "term":
        return f"\u201c{cause['phrase']}\u201d ({share})"
    if cause.get("phrase"):
        return f"{cause['phrase']} ({cause['label']}, {share})"
    return f"{cause['label']} ({share})"


def measured_text(decision: Any, name: str) -> str:
    """What the detector measured, without the watchlist's name in front."""
    if decision.rule == "volume_spike" and decision.window is not None:
        start, end = decision.window
        return (f"{decision.observed:.0f} mentions in {duration(end - start)}, "
                f"{ratio_text(decision.observed / max(decision.baseline, 0.1))} usual")
    text = str(decision.summary)
    for prefix in (f"{name}: ", f"{decision.watchlist_id}: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def first_post(explanation: dict[str, Any]) -> dict[str, Any] | None:
    return next((p for p in explanation.get("top_posts") or [] if "first" in (p.get("roles") or [])), None)


def started_text(post: dict[str, Any]) -> str:
    """'started by @breachwatch_kat (84k followers)', or by a post of a source without a handle."""
    who = f"@{post['author_handle']}" if post.get("author_handle") else f"a {post['source']} post"
    reach = f" ({compact_number(post['reach'])} followers)" if post.get("reach") else ""
    return f"started by {who}{reach}"


def summarise(name: str, decision: Any, explanation: dict[str, Any] | None) -> Summary:
    """The alert's sentence and its claims (a firing decision with its explanation)."""
    if explanation is None or decision.rule in NO_CAUSE_RULES:
        return Summary(str(decision.summary), [])
    measured = measured_text(decision, name)
    claims: list[dict[str, Any]] = []
    cause = explanation.get("cause")
    head = f"{name}: "
    if cause:
        text = cause_text(cause)
        claims.append({"text": text, "mention_ids": list(cause["mention_ids"])[:MAX_CLAIM_IDS]})
        head += f"{text} \u2014 "
    window_ids = list(explanation.get("mention_ids") or decision.sample_mention_ids)
    claims.append({"text": measured, "mention_ids": window_ids[:MAX_CLAIM_IDS]})
    sentence = head + measured
    first = first_post(explanation)
    if first is not None:
        started = started_text(first)
        claims.append({"text": started, "mention_ids": [first["mention_id"]]})
        sentence += f"; {started}"
    return Summary(sentence, claims)
