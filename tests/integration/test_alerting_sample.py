"""The bundled sample stream, enriched for real and replayed through the detector with the default
settings and rules: alerts for acme-air's crisis only (its volume, the risk-tagged posts, the
negative share: one notification group) and the volume alert's resolution — what `make demo` and
`make run` rely on."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from earful.alerting.detection import DetectorConfig, mention_of, new_state, observe
from earful.alerting.detection.rulebook import RuleBook
from earful.alerting.detection.rules import RuleDefaults
from earful.core.mention import MentionIn, to_record
from earful.core.settings import Settings
from earful.enrichment.processor import EnrichmentProcessor
from earful.watchlists import WatchlistSet
from earful_dev.sample.generator import read_meta, read_stream

pytestmark = pytest.mark.integration


def test_the_sample_crisis_is_exactly_one_alert_and_its_resolution() -> None:
    settings = Settings(_env_file=None)
    now = datetime.now(timezone.utc)
    records = [to_record(MentionIn.model_validate(line["mention"]), now) for line in read_stream()]
    processor = EnrichmentProcessor(WatchlistSet.from_file(settings.watchlists_dir), settings.spacy_model)
    enriched = [e for i in range(0, len(records), 64) for e in processor.enrich(records[i:i + 64], now)]
    book = RuleBook(WatchlistSet.from_file(settings.watchlists_dir), RuleDefaults.from_settings(settings))
    cfg = DetectorConfig.from_settings(settings)
    states: dict[str, dict] = {}
    decisions = []
    for e in sorted(enriched, key=lambda e: e["mention"]["created_at"]):
        handle = e["mention"]["author"]["handle"]
        for wid in dict.fromkeys([*e["watchlist_ids"], *book.watchlists_of_handle(handle)]):
            m = mention_of(e, wid)
            decisions += observe(states.setdefault(wid, new_state()), book.rules(wid), m, cfg, wall_ms=m.created_ms)
    crisis = read_meta()["crisis"]
    # The brand pack's rules name the crisis too (a data breach posted by an infosec account with reach, the
    # negative share); every one is the crisis watchlist's, none fires twice, and the volume alert resolves.
    assert {d.watchlist_id for d in decisions} == {crisis["watchlist_id"]}
    firing = [(d.rule, d.labels.get("risk")) for d in decisions if d.status == "firing"]
    assert len(firing) == len(set(firing)) and {("volume_spike", None), ("risk_mention", "legal_privacy")} <= set(firing)
    assert ("resolved", "volume_spike") in [(d.status, d.rule) for d in decisions]
    fired = next(d for d in decisions if d.rule == "volume_spike")
    start = datetime.fromisoformat(crisis["start"].replace("Z", "+00:00"))
    assert -10 <= fired.starts_at_ms / 1000 - start.timestamp() < 60  # its bucket holds the first crisis mention
    first = decisions[0]
    assert first.rule == "risk_mention" and first.starts_at_ms / 1000 - start.timestamp() < 1  # the first post alerts
