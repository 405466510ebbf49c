"""The bundled sample crisis, enriched for real and replayed through the detector with the default
settings and rules, explained as the alerting service explains it: the volume alert's summary
names the data breach (legal/privacy), no top term is one of the watchlist's own, the risk
breakdown is there, and explaining costs little on the alert path."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from earful.alerting.describe import BrandCache, Description, describe
from earful.alerting.detection import Decision, DetectorConfig, mention_of, new_state, observe
from earful.alerting.detection.rulebook import RuleBook
from earful.alerting.detection.rules import RuleDefaults
from earful.alerting.explain import Evidence, evidence_horizon_ms, post_of
from earful.core.mention import MentionIn, to_record
from earful.core.settings import Settings
from earful.enrichment.processor import EnrichmentProcessor
from earful.watchlists import WatchlistSet
from earful.watchlists.terms import brand_terms
from earful.watchlists.text import scan
from earful_dev.sample.generator import read_meta, read_stream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def explained() -> tuple[list[tuple[Decision, Description | None, float]], WatchlistSet]:
    """Every decision of the replay with its description and the seconds describing it took."""
    settings = Settings(_env_file=None)
    now = datetime.now(timezone.utc)
    records = [to_record(MentionIn.model_validate(line["mention"]), now) for line in read_stream()]
    watchlists = WatchlistSet.from_file(settings.watchlists_dir)
    processor = EnrichmentProcessor(watchlists, settings.spacy_model)
    enriched = [e for i in range(0, len(records), 64) for e in processor.enrich(records[i:i + 64], now)]
    book = RuleBook(watchlists, RuleDefaults.from_settings(settings))
    cfg = DetectorConfig.from_settings(settings)
    evidence = Evidence(evidence_horizon_ms(cfg.bucket_ms, cfg.lateness_buckets, settings), max_posts=2000)
    brands = BrandCache()
    states: dict[str, dict] = {}
    out: list[tuple[Decision, Description | None, float]] = []
    for e in sorted(enriched, key=lambda e: e["mention"]["created_at"]):
        handle = e["mention"]["author"]["handle"]
        for wid in dict.fromkeys([*e["watchlist_ids"], *book.watchlists_of_handle(handle)]):
            m = mention_of(e, wid)
            if m.matched:
                evidence.add(wid, post_of(e))
            for d in observe(states.setdefault(wid, new_state()), book.rules(wid), m, cfg, wall_ms=m.created_ms):
                started = time.perf_counter()
                described = describe(evidence, d, watchlists.get(wid), None, brands)
                out.append((d, described, time.perf_counter() - started))
    return out, watchlists


def test_the_crisis_alert_names_the_data_breach(explained) -> None:
    decisions, _ = explained
    crisis = read_meta()["crisis"]
    spikes = [(d, x) for d, x, _ in decisions if d.status == "firing" and d.rule == "volume_spike"
              and d.watchlist_id == crisis["watchlist_id"]]
    assert len(spikes) == 1, [(d.rule, d.watchlist_id) for d, _, _ in decisions]
    _, described = spikes[0]
    assert described is not None
    summary = described.summary.text
    assert summary.startswith("Acme Air: data breach (legal/privacy, "), summary
    assert "started by @breachwatch_kat (84k followers)" in summary  # the researcher's post began it
    explanation = described.explanation
    cause = explanation["cause"]
    assert cause["tag"] == "legal_privacy" and 2 * cause["count"] >= explanation["total"]  # half the posts or more
    legal = next(t for t in explanation["tags"] if t["tag"] == "legal_privacy")
    assert legal["count"] == cause["count"] and legal["evidence"] and legal["mention_ids"]
    assert set(cause["mention_ids"]) <= set(explanation["mention_ids"])
    for claim in described.summary.claims:  # every claim traceable to posts of the window
        assert claim["text"] in summary and claim["mention_ids"]
        assert set(claim["mention_ids"]) <= set(explanation["mention_ids"])
    top = [p for p in explanation["top_posts"] if "relevant" in p["roles"]]
    assert all("legal_privacy" in p["tags"] for p in top), top  # no unrelated fare comparison among them
    assert described.assessment is not None and described.assessment["level"] in ("critical", "high")


def test_no_alert_explains_itself_with_the_watchlists_own_terms(explained) -> None:
    decisions, watchlists = explained
    fired = [(d, x) for d, x, _ in decisions if x is not None]
    assert fired
    for d, described in fired:
        watchlist = watchlists.get(d.watchlist_id)
        assert watchlist is not None
        own = {k for k, *_ in scan(f"{watchlist.name} {' '.join(watchlist.handles)} {watchlist.query}") if k}
        own |= {k.lstrip("#@$") for k in own}
        brand = brand_terms(watchlist, d.watchlist_id)
        for term in described.explanation["top_terms"]:
            assert not brand.excludes(term["term"]), (d.rule, term)
            assert not set(term["term"].split(" ")) & own, (d.rule, term)
        assert described.explanation["tags"], d.rule  # the risk breakdown is there


def test_explaining_costs_little_on_the_alert_path(explained) -> None:
    decisions, _ = explained
    costs = [seconds for _, x, seconds in decisions if x is not None]
    assert costs and max(costs) < 0.05, costs  # milliseconds, next to a latency budget of seconds
