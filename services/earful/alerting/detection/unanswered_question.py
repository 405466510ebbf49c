"""unanswered_question: customer questions and complaints left without a reply past the SLA.

A mention tagged customer_question or complaint opens a question; a reply to it from one of the
watchlist's own handles closes it. Only questions by authors with `min_reach` followers count and,
with `own_sources`, only on sources where the watchlist's own handles have replied before (a
brand is not expected to answer where it has no account). `min_count` questions open for longer than `sla_s` fire one
alert, which resolves once every question past the SLA has been answered (questions older than
`max_age_s` stop counting). Judged as time passes (`settle`), since a missing reply sends no event.
"""

from __future__ import annotations

from earful.alerting.detection.lifecycle import hit, resolve
from earful.alerting.detection.model import MAX_SAMPLES, Decision, DetectorConfig, Mention, duration_text, post_key
from earful.alerting.detection.rules import UNANSWERED_QUESTION, WatchlistRules
from earful.alerting.detection.state import DetectorState

QUESTION_TAGS = frozenset({"customer_question", "complaint"})


def observe(state: DetectorState, rules: WatchlistRules, m: Mention, own: bool, cfg: DetectorConfig) -> list[Decision]:
    """Open a question, or close the one the watchlist's own handle (`own`) just answered."""
    rule = rules.get(UNANSWERED_QUESTION)
    if rule is None or rule["sla_s"] <= 0:
        return []
    questions = state["questions"]
    if own and m.in_reply_to:
        questions.pop(post_key(m.source, m.in_reply_to), None)
        state["qsrc"][m.source] = max(state["qsrc"].get(m.source, 0), m.created_ms)
    elif m.matched and not own and QUESTION_TAGS & set(m.risks) and m.source_id and (m.followers or 0) >= rule["min_reach"] \
            and (not rule["own_sources"] or m.source in state["qsrc"]):
        key = post_key(m.source, m.source_id)
        if key not in questions and len(questions) < cfg.max_questions:
            questions[key] = [m.created_ms, m.mention_id, m.received_ms]
    return []  # overdue questions are judged in settle, as time passes


def settle(state: DetectorState, rules: WatchlistRules, cfg: DetectorConfig, now: int) -> list[Decision]:
    """Fire when enough questions are overdue at `now`; resolve when none is any more."""
    rule = rules.get(UNANSWERED_QUESTION)
    if rule is None or rule["sla_s"] <= 0:
        state["questions"].clear()
        return []
    questions = state["questions"]
    max_age_ms = int(rule["max_age_s"] * 1000)
    for key in [k for k, q in questions.items() if now - q[0] > max_age_ms]:
        del questions[key]
    sla_ms = int(rule["sla_s"] * 1000)
    overdue = sorted((q for q in questions.values() if now - q[0] >= sla_ms), key=lambda q: q[0])
    name = rules.name or rules.watchlist_id
    ep = state["episodes"].get(UNANSWERED_QUESTION)
    if len(overdue) >= rule["min_count"]:
        oldest_min = (now - overdue[0][0]) // 60000
        summary = (f"{name}: {len(overdue)} customer question(s) without a reply from the brand for longer than "
                   f"{duration_text(int(rule['sla_s']))} (oldest {oldest_min} min)")
        if ep is not None and ep["phase"] == "firing":
            ep["observed"] = len(overdue)
            return []
        return hit(state, rules, rule, UNANSWERED_QUESTION, {}, now, None, cfg, observed=len(overdue),
                   expected=float(rule["min_count"]), score=float(len(overdue)), summary=summary,
                   samples=[q[1] for q in overdue[:MAX_SAMPLES]], first_received=overdue[0][2],
                   window=(overdue[0][0], now), starts_ms=overdue[0][0] + sla_ms)
    if ep is not None and ep["phase"] == "firing":
        return resolve(state, UNANSWERED_QUESTION, ep, now, float(len(overdue)), float(rule["min_count"]),
                       f"{name}: every customer question past the SLA has been answered")
    return []
