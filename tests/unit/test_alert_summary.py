"""The sentence an alert leads with (cause, measurement, first post, each claim with its mention
ids) and the severity judged from the evidence."""

from __future__ import annotations

from typing import Any

import pytest

from earful.alerting.detection import Decision
from earful.alerting.severity import assess, level_of, reasons
from earful.alerting.summary import cause_text, duration, summarise

T0 = 1_793_604_580_000


def spike(observed: float = 14.0, baseline: float = 1.7, rule: str = "volume_spike", summary: str = "") -> Decision:
    return Decision("firing", rule, "acme-air", "fp", "fp-1", {"watchlist": "acme-air", "rule": rule}, observed, baseline,
                    30.0, T0, None, ["m1", "m2"], T0 + 22_400, summary or f"Acme Air: {observed:.0f} mentions in 60s",
                    (T0, T0 + 60_000))


def explanation(**overrides: Any) -> dict[str, Any]:
    ids = [f"m{i}" for i in range(1, 15)]
    legal = ids[:9]
    out: dict[str, Any] = {
        "total": 14, "mention_ids": ids, "window_start": T0, "window_end": T0 + 60_000, "reach": 180_000,
        "negative_share": 0.7, "history_posts": 700, "history_hours": 8,
        "tags": [{"tag": "legal_privacy", "kind": "risk", "count": 9, "mention_ids": legal,
                  "evidence": [{"phrase": "data breach", "count": 6, "mention_id": "m1"}]},
                 {"tag": "complaint", "kind": "intent", "count": 3, "mention_ids": ids[9:12], "evidence": []}],
        "cause": {"kind": "risk_tag", "tag": "legal_privacy", "label": "legal/privacy", "phrase": "data breach",
                  "count": 9, "total": 14, "mention_ids": legal},
        "top_posts": [{"mention_id": "m1", "source": "twitter", "author_handle": "breachwatch_kat", "reach": 84_213,
                       "roles": ["first", "loudest", "relevant"]}],
    }
    out.update(overrides)
    return out


# --- summary -------------------------------------------------------------------------------------


def test_the_summary_names_the_cause_the_measurement_and_who_started_it() -> None:
    said = summarise("Acme Air", spike(), explanation())
    assert said.text == ("Acme Air: data breach (legal/privacy, 9 of 14 posts) \u2014 14 mentions in 60 s, 8\u00d7 usual; "
                         "started by @breachwatch_kat (84k followers)")
    cause, measured, started = said.claims
    assert cause == {"text": "data breach (legal/privacy, 9 of 14 posts)", "mention_ids": [f"m{i}" for i in range(1, 10)]}
    assert measured["text"] == "14 mentions in 60 s, 8\u00d7 usual" and len(measured["mention_ids"]) == 14
    assert started == {"text": "started by @breachwatch_kat (84k followers)", "mention_ids": ["m1"]}
    # every claim is in the sentence, every id in the claims is evidence of the window
    for claim in said.claims:
        assert claim["text"] in said.text
        assert set(claim["mention_ids"]) <= set(explanation()["mention_ids"])


def test_the_cause_reads_differently_for_a_term_and_a_tag_without_evidence() -> None:
    term = {"kind": "term", "tag": None, "label": "free upgrade", "phrase": "free upgrade", "count": 8, "total": 20,
            "mention_ids": []}
    assert cause_text(term) == "\u201cfree upgrade\u201d (8 of 20 posts)"
    bare = {"kind": "risk_tag", "tag": "regulatory", "label": "regulatory", "phrase": None, "count": 2, "total": 5,
            "mention_ids": []}
    assert cause_text(bare) == "regulatory (2 of 5 posts)"


def test_other_rules_keep_their_measurement_and_silence_rules_their_sentence() -> None:
    surge = spike(0.64, 0.32, "negative_surge", "Acme Air: 64% of 39 mentions negative in 60s, usually 32%")
    said = summarise("Acme Air", surge, explanation())
    assert said.text.startswith("Acme Air: data breach (legal/privacy, 9 of 14 posts) \u2014 64% of 39 mentions negative")
    drop = spike(2, 30, "volume_drop", "Acme Air: 2 mentions in the last 30 min, usually 30")
    assert summarise("Acme Air", drop, explanation()).text == "Acme Air: 2 mentions in the last 30 min, usually 30"
    nothing = summarise("Acme Air", spike(), explanation(cause=None, top_posts=[]))
    assert nothing.text == "Acme Air: 14 mentions in 60 s, 8\u00d7 usual" and len(nothing.claims) == 1
    no_handle = explanation(top_posts=[{"mention_id": "n1", "source": "news", "author_handle": None, "reach": None,
                                        "roles": ["first"]}])
    assert summarise("Acme Air", spike(), no_handle).text.endswith("; started by a news post")
    assert summarise("Acme Air", spike(), None).text == "Acme Air: 14 mentions in 60s"


@pytest.mark.parametrize("ms,text", [(1_401, "1.4 s"), (2_000, "2 s"), (10_000, "10 s"), (60_000, "60 s"),
                                     (300_000, "5 min"), (7_200_000, "2 h")])
def test_durations(ms: int, text: str) -> None:
    assert duration(ms) == text


# --- severity ------------------------------------------------------------------------------------


def test_a_data_breach_crisis_is_critical_and_says_why() -> None:
    a = assess("volume_spike", 14, 1.7, explanation())
    assert a is not None and a["level"] == "critical" and 6.5 <= a["score"] <= 10
    by_name = {f["name"]: f for f in a["factors"]}
    assert set(by_name) == {"volume", "reach", "risk", "negative", "velocity"}
    assert by_name["risk"]["points"] == 3.0 and by_name["risk"]["reason"] == "legal/privacy in 9 of 14 posts"
    assert by_name["volume"]["reason"] == "8\u00d7 the usual volume" and by_name["reach"]["reason"] == "180k followers reached"
    assert [f["points"] for f in a["factors"]] == sorted((f["points"] for f in a["factors"]), reverse=True)
    assert a["score"] == round(sum(f["points"] for f in a["factors"]), 1)
    assert reasons(a).startswith(f"critical {a['score']:.1f}/10: legal/privacy in 9 of 14 posts, ")


def test_alerts_of_different_weight_never_look_the_same() -> None:
    crisis = assess("volume_spike", 14, 1.7, explanation())
    operational = assess("volume_spike", 14, 1.7, explanation(
        tags=[{"tag": "operational", "kind": "risk", "count": 9, "mention_ids": [], "evidence": []}]))
    quiet = assess("volume_spike", 14, 1.7, explanation(tags=[], reach=900, negative_share=0.1))
    bigger = assess("volume_spike", 60, 1.7, explanation(tags=[], reach=900, negative_share=0.1, total=60))
    assert crisis and operational and quiet and bigger
    scores = [crisis["score"], operational["score"], bigger["score"], quiet["score"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4  # legal weighs more than operational
    assert quiet["level"] == "low" and crisis["level"] == "critical"
    assert next(f for f in quiet["factors"] if f["name"] == "risk")["reason"] == "no risk tag on two posts or more"


def test_volume_for_other_rules_comes_from_the_history_and_nothing_without_evidence() -> None:
    a = assess("risk_mention", 1, 0, explanation(window_end=T0 + 1_800_000))  # 14 posts in 30 min vs 700 in 8 h
    volume = next(f for f in a["factors"] if f["name"] == "volume") if a else None
    assert volume is not None and round(volume["value"], 2) == round((14 / 30) / (700 / 480), 2)
    young = assess("risk_mention", 1, 0, explanation(history_hours=0))
    assert young is not None and "volume" not in {f["name"] for f in young["factors"]}
    assert assess("volume_spike", 14, 1.7, None) is None and assess("volume_spike", 14, 1.7, explanation(total=0)) is None


@pytest.mark.parametrize("score,level", [(0.0, "low"), (2.49, "low"), (2.5, "medium"), (4.5, "high"), (6.5, "critical"),
                                         (10.0, "critical")])
def test_levels(score: float, level: str) -> None:
    assert level_of(score) == level
