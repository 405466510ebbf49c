"""Why an alert fired: terms (stop words, brand names), distinctive terms by log-odds, the evidence
kept per watchlist and the explanation built from it; the alert event record and its JSON form."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone

from earful.alerting.detection import Decision
from earful.alerting.events import alert_record, dashboard_link, event_json
from earful.alerting.explain import (
    HOUR_MS,
    MAX_PENDING_TERMS,
    SKETCH_DEPTH,
    SPILL_TERMS,
    Evidence,
    Post,
    TermHistory,
    compact_number,
    post_of,
)
from earful.watchlists import Watchlist
from earful.watchlists.terms import BrandTerms, brand_terms, distinctive, stop_words, terms_of
from tests.support import example

T0 = 1_741_944_600_000
ACME = Watchlist("acme-air", "Acme Air", "brand", handles=("AcmeAir", "AcmeAirHelp"),
                 query='("Acme Air" OR AcmeAir OR #AcmeAir OR @AcmeAirHelp OR $ACME OR Acmejet*) AND NOT #AcmeAirJobs')


def post(i: int, at: int, reach: int | None, text: str = "Acme Air cancelled my flight #AcmeAir", source: str = "twitter",
         lang: str = "en", sentiment: str = "negative", tags: tuple[tuple[str, str], ...] = (), engagement: int | None = None,
         confidence: float | None = None) -> Post:
    return Post(f"m{i}", source, None, f"user{i}", reach, text, at, lang, sentiment, terms_of(text, lang),
                engagement=engagement, confidence=confidence, tags=tags)


# --- terms -------------------------------------------------------------------------------------


def test_terms_are_words_hashtags_and_phrases_without_links_handles_numbers_or_stop_words() -> None:
    assert terms_of("The @AcmeAir flight was CANCELLED again!! https://x.example/1 #AcmeAir #fail 2024 ok") == (
        "flight", "cancelled", "#acmeair", "#fail")
    # a phrase is two adjacent words with only white space between them (not across punctuation or a stop word)
    assert terms_of("Data breach at Acme: passport numbers, emails", "en") == (
        "data", "data breach", "breach", "acme", "passport", "passport numbers", "numbers", "emails")


def test_stop_words_of_every_supported_language_come_from_spacy() -> None:
    for lang, word in (("en", "the"), ("es", "porque"), ("de", "nicht"), ("fr", "parce"), ("pt", "também"), ("it", "perché")):
        assert word in stop_words(lang), (lang, word)
    assert terms_of("Das ist doch nicht normal, Datenleck bei Acme", "de") == ("normal", "datenleck", "acme")
    assert terms_of("La filtración de datos es grave porque nadie avisó", "es") == (
        "filtración", "datos", "grave", "avisó")
    assert terms_of("Il y a une fuite de données chez Acme", "fr") == ("fuite", "données", "acme")
    # an unknown language loses the stop words of every core language; an unsupported one English's
    assert "nicht" not in terms_of("nicht porque parce data", "und") and terms_of("nicht porque parce data", "und") == ("data",)
    assert stop_words("xx-not-a-language") == frozenset()


def test_brand_terms_come_from_the_watchlist_definition() -> None:
    brand = brand_terms(ACME, ACME.id)
    for term in ("acme", "air", "acmeair", "#acmeair", "@acmeair", "acmeairhelp", "$acme", "acme air", "air travel",
                 "acmejets", "acmejet", "#acmejetset"):
        assert brand.excludes(term), term
    for term in ("data breach", "passport", "#databreach", "airline"):
        assert not brand.excludes(term), term
    assert not brand.excludes("#acmeairjobs")  # what the query excludes is not a brand name
    assert brand_terms(None, "globex-corp").excludes("globex")
    terms_only = Watchlist("w", "Initech", "brand", terms=("TPS report", "#Initech"))
    assert brand_terms(terms_only).excludes("tps") and brand_terms(terms_only).excludes("tpsreport")


# --- log-odds ------------------------------------------------------------------------------------


def test_log_odds_with_an_informative_prior() -> None:
    window = Counter({"breach": 9, "flight": 5, "refund": 2, "once": 1})
    background = Counter({"flight": 400, "refund": 2, "delay": 300})
    total = sum(background.values())
    found = distinctive(window, background, total, prior_strength=100, min_z=-99)
    by_term = {d.term: d for d in found}
    assert found[0].term == "breach" and by_term["breach"].background == 0
    assert "once" not in by_term  # below min_count
    assert by_term["breach"].z > by_term["refund"].z > by_term["flight"].z  # flight is routine for this watchlist
    assert by_term["flight"].z < 0  # under-represented in the window
    # the z-score by hand (Monroe et al. 2008, eq. 22)
    n_i, n_j, y_i, y_j = 17, total, 9, 0
    alpha = 100 * (y_i + y_j) / (n_i + n_j)
    delta = math.log((y_i + alpha) / (n_i + 100 - y_i - alpha)) - math.log((y_j + alpha) / (n_j + 100 - y_j - alpha))
    assert math.isclose(by_term["breach"].z, delta / math.sqrt(1 / (y_i + alpha) + 1 / (y_j + alpha)))
    assert [d.term for d in distinctive(window, background, total, prior_strength=100)] == ["breach", "refund"]
    assert distinctive(Counter(), background, total) == []
    assert distinctive(window, {}, 0, min_z=-99, limit=1)[0].term == "breach"  # no history yet: the prior alone


def test_more_evidence_is_more_distinctive() -> None:
    few = distinctive(Counter({"breach": 3}), {}, 1000, min_z=-99)[0].z
    many = distinctive(Counter({"breach": 30}), {}, 1000, min_z=-99)[0].z
    assert many > few > 0


# --- evidence and history ------------------------------------------------------------------------


def test_the_term_history_counts_posts_per_hour_and_forgets_old_ones() -> None:
    h = TermHistory(hours=3)
    h.add(10, ["breach", "flight"])
    h.add(10, ["flight"])
    assert (h.estimate("flight"), h.estimate("breach"), h.estimate("refund")) == (2, 1, 0)
    assert h.posts == 2 and h.total_count == 3
    h.add(11, ["flight"])
    assert h.estimate("flight") == 3 and h.total_count == 4 and h.span_hours() == 2
    h.add(13, ["refund"])  # hour 10 is now 3 hours old: forgotten
    assert (h.estimate("flight"), h.estimate("breach"), h.estimate("refund")) == (1, 0, 1)
    assert h.posts == 2 and h.total_count == 2
    h.add(9, ["ancient"])  # older than the history keeps
    assert h.estimate("ancient") == 0
    assert h.span_hours() == 3
    delta = h.take_delta()
    assert delta[10] == (2, Counter({"flight": 2, "breach": 1})) and delta[13] == (1, Counter({"refund": 1}))
    assert h.delta == {}


def test_the_term_history_is_bounded_however_varied_the_text() -> None:
    """The history of Counters grew with every new word and phrase of a busy day (the service's
    memory grew for 24 hours under steady load): a busy hour spills into a sketch of fixed size,
    a day of varied text stays within 24 of them, and counts stay upper bounds close to the truth."""
    h = TermHistory()
    row_bytes = SKETCH_DEPTH * h.width * 2
    for hour in range(30):  # more than a day: old hours are forgotten
        for i in range(2_000):
            h.add(hour, [f"rare{hour}-{i}", f"word{i % 50}", "refund"])
        assert h.memory_bytes() == min(hour + 1, 24) * row_bytes
    assert h.posts == 24 * 2_000 and h.total_count == 24 * 2_000 * 3 and h.span_hours() == 24
    per_hour = 2_000 * 3 // h.width + 1  # what shares a cell, on average, in one hour
    assert 24 * 2_000 <= h.estimate("refund") <= 24 * (2_000 + per_hour)
    assert all(24 * 40 <= h.estimate(f"word{i}") <= 24 * (40 + per_hour) for i in range(50))
    over = [h.estimate(f"rare29-{i}") - 1 for i in range(2_000)]
    assert min(over) >= 0 and sum(over) / len(over) <= 24 * per_hour  # shared cells, on average
    assert h.estimate("rare0-0") <= 24 * per_hour  # forgotten: at most what shares its cells


def test_a_quiet_hour_is_counted_exactly_and_spills_into_a_sketch_when_busy() -> None:
    h = TermHistory(hours=2)
    h.add(1, Counter({f"t{i}": 2 for i in range(SPILL_TERMS)}), posts=10)
    assert h.memory_bytes() == 0 and h.estimate("t7") == 2  # exact
    h.add(1, [f"x{i}" for i in range(5)])  # past SPILL_TERMS distinct terms: the hour becomes a sketch
    assert h.memory_bytes() > 0 and h.estimate("t7") >= 2 and h.estimate("x3") >= 1
    h.add(3, ["calm"])  # hour 1 is forgotten, and its sketch with it
    assert h.memory_bytes() == 0 and h.estimate("t7") == 0 and h.estimate("calm") == 1


def test_a_sketch_cell_stops_at_its_maximum() -> None:
    h = TermHistory(hours=2, width=16)
    h.add(1, Counter({f"t{i}": 1 for i in range(SPILL_TERMS + 1)} | {"flood": 70_000}), posts=70_000)
    assert h.estimate("flood") == 0xFFFF


def test_terms_waiting_for_postgresql_are_bounded() -> None:
    """While PostgreSQL is unreachable the per-term delta grows with every new term: past the cap
    only the frequent terms of an hour wait."""
    h = TermHistory(hours=2, width=16)
    for i in range(MAX_PENDING_TERMS + 10):
        h.add(5, [f"rare{i}", "refund"])
    n, waiting = h.delta[5]
    assert n == MAX_PENDING_TERMS + 10 and len(waiting) <= MAX_PENDING_TERMS
    assert waiting["refund"] > MAX_PENDING_TERMS // 2


def test_a_kept_post_is_small_and_shares_its_terms_with_the_others() -> None:
    """Thousands of posts are kept per watchlist: no per-instance dict, one copy of each term."""
    record = example("enriched_mention/v3/01_english_complaint")
    a = post_of(record)
    b = post_of({**record, "mention": {**record["mention"], "text": str(record["mention"]["text"]) + " again"}})
    assert not hasattr(a, "__dict__")
    assert a.terms and all(x is y for x, y in zip(a.terms, b.terms, strict=False))


def test_evidence_keeps_each_post_once_bounded_in_time_and_number() -> None:
    ev = Evidence(horizon_ms=60_000, max_posts=5)
    for i in range(20):
        assert ev.add("w", post(i, T0 + i * 1000, i))
    assert not ev.add("w", post(19, T0 + 19_000, 19))  # re-delivered: one post
    assert len(ev.posts("w", 0, 2**62)) == 5 and ev.history["w"].posts == 20
    ev.add("w", post(99, T0 + 600_000, 1))  # ten minutes later: everything older than the horizon goes
    assert [p.mention_id for p in ev.posts("w", 0, 2**62)] == ["m99"]
    assert len(ev.pending) == 21  # queued for PostgreSQL
    assert ev.add("w", post(5, T0, 1), restored=True) and len(ev.pending) == 21 and ev.history["w"].posts == 21


def test_a_post_of_an_enriched_mention() -> None:
    record = example("enriched_mention/v3/01_english_complaint")
    p = post_of(record)
    assert (p.author_handle, p.reach, p.engagement, p.lang, p.sentiment) == ("jdoe_travels", 1843, 19, "en", "negative")
    assert math.isclose(p.confidence or 0, 0.91, rel_tol=1e-6) and math.isclose(p.negative or 0, 0.91, rel_tol=1e-6)
    assert p.tags == (("operational", "cancelled"), ("reputational", "Worst"), ("complaint", "Worst"))
    assert "cancelled" in p.terms and "@acmeair" not in p.terms and not any("example.com" in t for t in p.terms)
    assert Post.from_json(p.to_json()) == p


BREACH = "Acme Air data breach: passport numbers leaked"


def crisis_evidence() -> Evidence:
    ev = Evidence(horizon_ms=3_600_000)
    for i in range(40):  # history: routine flights and delays
        ev.add("acme-air", post(100 + i, T0 - 3_000_000 + i * 60_000, 100, "Acme Air flight delayed again at the gate",
                                sentiment="negative", tags=(("operational", "delayed"),)))
    legal = (("legal_privacy", "data breach"),)
    ev.add("acme-air", post(1, T0 + 1000, 500, "Ida con #AcmeAir y vuelta con #SkyJet, gana en precio", lang="es",
                            sentiment="neutral", confidence=0.51))
    ev.add("acme-air", post(2, T0 + 2000, 84_213, BREACH, tags=legal, engagement=533, confidence=0.9))
    ev.add("acme-air", post(3, T0 + 3000, 95_000, "Acme Air confirms data breach, regulator investigating", source="news",
                            sentiment="neutral", tags=(*legal, ("regulatory", "investigating")), engagement=31,
                            confidence=0.45))
    for i in range(4, 10):
        ev.add("acme-air", post(i, T0 + i * 1000, 50 + i, f"Acme Air data breach: my passport number {i} is out #AcmeAir",
                                tags=(("legal_privacy", "Data Breach"), ("complaint", "out")), confidence=0.8))
    ev.add("acme-air", post(10, T0 + 10_000, 10**6, "Acme Air lounge looks nice", sentiment="positive", engagement=0))
    ev.add("globex", post(11, T0 + 1000, 10**7))  # another watchlist
    return ev


def test_the_explanation_of_a_crisis_window() -> None:
    ev = crisis_evidence()
    ex = ev.explain("acme-air", T0, T0 + 60_000, "http://dash/#watchlist=acme-air", brand_terms(ACME, ACME.id))
    assert ex["total"] == 10 and ex["mention_ids"][:2] == ["m1", "m2"] and ex["history_posts"] == 40
    terms = [t["term"] for t in ex["top_terms"]]
    assert terms[:2] == ["data breach", "passport number"]
    assert not {"acme", "air", "acmeair", "#acmeair", "acme air"} & set(terms)  # never the brand itself
    assert "breach" not in terms and "passport" not in terms  # covered by the phrases
    breach = next(t for t in ex["top_terms"] if t["term"] == "data breach")
    assert breach["count"] == 8 and len(breach["mention_ids"]) == 8 and breach["score"] >= 1.96
    legal = ex["tags"][0]
    assert (legal["tag"], legal["kind"], legal["count"]) == ("legal_privacy", "risk", 8)
    assert legal["evidence"][0] == {"phrase": "data breach", "count": 8, "mention_id": "m2"}
    assert [t["tag"] for t in ex["tags"]] == ["legal_privacy", "regulatory", "complaint"]  # risks first
    assert ex["cause"]["kind"] == "risk_tag" and ex["cause"]["label"] == "legal/privacy"
    assert ex["cause"]["phrase"] == "data breach" and (ex["cause"]["count"], ex["cause"]["total"]) == (8, 10)
    roles = {p["mention_id"]: p["roles"] for p in ex["top_posts"]}
    assert roles["m2"][:2] == ["first", "loudest"]  # loudness is reach × engagement: 84k × 534 beats 1M × 1
    assert "m10" not in roles  # the 1M-follower post nobody engaged with is neither loud nor relevant
    assert "m1" not in roles  # the unrelated fare comparison is not evidence
    relevant = [p["mention_id"] for p in ex["top_posts"] if "relevant" in p["roles"]]
    assert relevant[0] == "m3"  # cause + phrase + a second risk tag, then reach
    assert ex["sources"] == {"twitter": 9, "news": 1} and ex["languages"] == {"es": 1, "en": 9}
    assert ex["sentiment"] == {"neutral": 2, "negative": 7, "positive": 1}
    neutral = next(s for s in ex["sentiment_confidence"] if s["label"] == "neutral")
    assert neutral == {"label": "neutral", "count": 2, "mean_confidence": 0.48, "low_confidence": 2}
    assert next(s for s in ex["sentiment_confidence"] if s["label"] == "positive")["mean_confidence"] is None
    assert ex["reach"] == 500 + 84_213 + 95_000 + sum(50 + i for i in range(4, 10)) + 10**6
    assert (ex["window_start"], ex["window_end"], ex["dashboard_url"]) == (T0, T0 + 60_000, "http://dash/#watchlist=acme-air")


def test_a_rules_own_tag_is_the_cause_even_when_few_posts_carry_it() -> None:
    ev = crisis_evidence()
    ex = ev.explain("acme-air", T0, T0 + 60_000, None, BrandTerms(frozenset()), focus_tag="regulatory")
    assert ex["cause"]["tag"] == "regulatory" and ex["cause"]["count"] == 1 and ex["cause"]["phrase"] == "investigating"
    assert next(p for p in ex["top_posts"] if "first" in p["roles"])["mention_id"] == "m3"


def test_without_a_dominant_tag_the_cause_is_the_most_distinctive_term() -> None:
    ev = Evidence(horizon_ms=3_600_000)
    for i in range(30):
        ev.add("w", post(i, T0 - 1_800_000 + i * 60_000, 10, "the weather at the airport today"))
    for i in range(8):
        ev.add("w", post(50 + i, T0 + i * 1000, 10, f"free upgrade voucher code {i} for everyone"))
    ex = ev.explain("w", T0, T0 + 60_000, None)
    assert ex["cause"]["kind"] == "term" and ex["cause"]["count"] == 8 and ex["cause"]["phrase"] in {
        t["term"] for t in ex["top_terms"]}
    empty = ev.explain("w", T0 + 10**6, T0 + 10**6 + 1, None)
    assert empty["total"] == 0 and empty["cause"] is None and empty["top_posts"] == [] and empty["negative_share"] is None


def test_compact_numbers() -> None:
    assert [compact_number(n) for n in (950, 84_213, 1_250_000, 12_400_000, 3_000)] == ["950", "84k", "1.2M", "12M", "3k"]


# --- the alert event -----------------------------------------------------------------------------


def decision(status: str = "firing") -> Decision:
    return Decision(status, "volume_spike", "acme-air", "fp", "fp-1", {"watchlist": "acme-air", "rule": "volume_spike",
                    "severity": "critical"}, 27.0, 2.0, 20.7, T0, None if status == "firing" else T0 + 60_000, ["m1"],
                    T0 + 1412, "Acme Air: 27 mentions", (T0, T0 + 10_000) if status == "firing" else None)


def test_alert_record_and_its_json() -> None:
    from earful.alerting.describe import describe

    d = decision()
    link = dashboard_link("http://127.0.0.1:8083/", "acme-air")
    assert link == "http://127.0.0.1:8083/#watchlist=acme-air" and dashboard_link(None, "x") is None
    described = describe(crisis_evidence(), d, ACME, link)
    assert described is not None
    record = alert_record(d, bucket_s=10, detected_at_ms=T0 + 4220, group_key="watchlist=acme-air", dashboard_url=link,
                          explanation=described.explanation, assessment=described.assessment, summary=described.summary)
    assert record["schema_version"] == 3 and record["labels"]["alertname"] == "volume_spike"
    assert record["fingerprint"] == "fp"  # alertname is not part of the identity
    assert record["starts_at"] == datetime.fromtimestamp(T0 / 1000, timezone.utc) and record["ends_at"] is None
    assert record["summary"] == described.summary.text and record["summary"].startswith("Acme Air: data breach")
    annotations = record["annotations"]
    assert annotations["summary"] == record["summary"] and annotations["dashboard_url"] == link
    assert annotations["description"].startswith("Acme Air: 27 mentions. Severity ")
    assert annotations["severity_level"] == record["severity_assessment"]["level"]
    assert record["group_key"] == "watchlist=acme-air" and record["explanation"] is described.explanation
    assert record["explanation"]["claims"] == described.summary.claims
    as_json = event_json(record)
    assert as_json["starts_at"] == "2025-03-14T09:30:00.000Z" and as_json["first_received_at"] == "2025-03-14T09:30:01.412Z"
    assert as_json["explanation"]["window_start"] == "2025-03-14T09:30:00.000Z"
    assert as_json["explanation"]["top_posts"][0]["created_at"].startswith("2025-03-14T09:30:0")
    resolved = alert_record(decision("resolved"), bucket_s=10, detected_at_ms=T0, group_key=None,
                            explanation=described.explanation, assessment=described.assessment, summary=described.summary)
    assert resolved["explanation"] is None and resolved["severity_assessment"] is None
    assert resolved["summary"] == "Acme Air: 27 mentions" and "dashboard_url" not in resolved["annotations"]
    assert resolved["labels"]["alertname"] == "volume_spike" and describe(crisis_evidence(), decision("resolved"), ACME, None) is None


def test_explaining_an_alert_is_cheap() -> None:
    """The explanation runs on the alert path: a window of 2,000 posts against a full day's history
    is explained in well under the alert's latency budget (a generous bound for a loaded machine)."""
    import time

    from earful.alerting.describe import describe

    ev = Evidence(horizon_ms=10 * HOUR_MS, max_posts=2000)
    words = ["flight", "delay", "gate", "refund", "seat", "crew", "lounge", "bag", "meal", "wifi", "app", "booking"]
    for i in range(24 * 200):  # a day of history, 200 posts an hour
        ev.add("acme-air", post(i, T0 - 24 * HOUR_MS + i * 18_000, 100, " ".join(words[(i + k) % 12] for k in range(6))))
    for i in range(2000):
        ev.add("acme-air", post(10**6 + i, T0 + i * 30, 100 + i, f"{BREACH} {words[i % 12]}", tags=(("legal_privacy", "data breach"),)))
    d = Decision("firing", "volume_spike", "acme-air", "fp", "fp-1", {"watchlist": "acme-air"}, 2000.0, 20.0, 50.0, T0,
                 None, [], None, "Acme Air: 2000 mentions", (T0, T0 + 60_000))
    started = time.perf_counter()
    described = describe(ev, d, ACME, None)
    elapsed = time.perf_counter() - started
    assert described is not None and described.explanation["total"] == 2000
    assert elapsed < 0.5, elapsed
