"""Why an alert fired: evidence kept per watchlist and the explanation built from it; the alert
event record and its JSON form."""

from __future__ import annotations

from datetime import datetime, timezone

from earful.alerting.detection import Decision
from earful.alerting.events import alert_record, dashboard_link, event_json
from earful.alerting.explain import Evidence, Post, terms_of

T0 = 1_741_944_600_000


def post(i: int, at: int, reach: int | None, text: str = "Acme Air cancelled my flight #AcmeAir", source: str = "twitter",
         lang: str = "en", sentiment: str = "negative") -> Post:
    return Post(f"m{i}", source, None, f"user{i}", reach, text, at, lang, sentiment, terms_of(text))


def test_terms_are_words_and_hashtags_without_links_handles_or_stop_words() -> None:
    assert terms_of("The @AcmeAir flight was CANCELLED again!! https://x.example/1 #AcmeAir #fail 2024 ok") == (
        "acmeair", "flight", "cancelled", "again", "#acmeair", "#fail")


def test_explanation_of_a_window() -> None:
    ev = Evidence(horizon_ms=600_000)
    ev.add("acme-air", post(1, T0 + 1000, 500))
    ev.add("acme-air", post(2, T0 + 2000, 84_213, source="mastodon", lang="de", sentiment="neutral"))
    ev.add("acme-air", post(2, T0 + 2000, 84_213))  # re-delivered: one post
    ev.add("acme-air", post(3, T0 + 3000, None, text="Refund please #AcmeAir", sentiment="unknown"))
    ev.add("acme-air", post(4, T0 + 20_000, 10**6))  # outside the window
    ev.add("globex", post(5, T0 + 1000, 10**7))  # another watchlist
    ex = ev.explain("acme-air", T0, T0 + 10_000, "http://dash/#watchlist=acme-air")
    assert [p["mention_id"] for p in ex["top_posts"]] == ["m2", "m1", "m3"]  # by reach, unknown reach last
    assert ex["top_posts"][0]["reach"] == 84_213 and ex["top_posts"][0]["created_at"] == T0 + 2000
    assert ex["top_terms"][0] == {"term": "#acmeair", "count": 3}
    assert ex["sources"] == {"twitter": 2, "mastodon": 1} and ex["languages"] == {"en": 2, "de": 1}
    assert ex["sentiment"] == {"negative": 1, "neutral": 1, "unknown": 1}
    assert (ex["window_start"], ex["window_end"], ex["dashboard_url"]) == (T0, T0 + 10_000, "http://dash/#watchlist=acme-air")


def test_evidence_is_bounded_in_time_and_size() -> None:
    ev = Evidence(horizon_ms=60_000, max_posts=5)
    for i in range(20):
        ev.add("w", post(i, T0 + i * 1000, i))
    assert len(ev.explain("w", 0, 2**62, None)["sources"]) == 1
    assert sum(ev.explain("w", 0, 2**62, None)["sources"].values()) == 5
    ev.add("w", post(99, T0 + 600_000, 1))  # ten minutes later: everything older than the horizon goes
    assert ev.explain("w", 0, 2**62, None)["sources"] == {"twitter": 1}


def test_alert_record_and_its_json() -> None:
    d = Decision("firing", "volume_spike", "acme-air", "fp", "fp-1", {"watchlist": "acme-air", "rule": "volume_spike",
                 "severity": "critical"}, 27.0, 2.0, 20.7, T0, None, ["m1"], T0 + 1412, "Acme Air: 27 mentions", (T0, T0 + 10_000))
    link = dashboard_link("http://127.0.0.1:8083/", "acme-air")
    assert link == "http://127.0.0.1:8083/#watchlist=acme-air" and dashboard_link(None, "x") is None
    explanation = Evidence(60_000).explain("acme-air", T0, T0 + 10_000, link)
    record = alert_record(d, bucket_s=10, detected_at_ms=T0 + 4220, group_key="watchlist=acme-air",
                          explanation=explanation, dashboard_url=link)
    assert record["starts_at"] == datetime.fromtimestamp(T0 / 1000, timezone.utc) and record["ends_at"] is None
    assert record["annotations"] == {"summary": d.summary, "description": d.summary, "dashboard_url": link}
    assert record["group_key"] == "watchlist=acme-air" and record["explanation"] is explanation
    as_json = event_json(record)
    assert as_json["starts_at"] == "2025-03-14T09:30:00.000Z" and as_json["first_received_at"] == "2025-03-14T09:30:01.412Z"
    assert as_json["explanation"]["window_start"] == "2025-03-14T09:30:00.000Z"
    resolved = alert_record(Decision(**{**d.__dict__, "status": "resolved", "ends_at_ms": T0 + 60_000}), bucket_s=10,
                            detected_at_ms=T0, group_key=None, explanation=explanation)
    assert resolved["explanation"] is None and "dashboard_url" not in resolved["annotations"]
