"""The bundled sample stream, enriched for real and replayed through the detector with the default
settings and rules: exactly one alert (acme-air's crisis, a volume spike) and its resolution —
what `make demo` and `make run` rely on."""

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
    assert [(d.status, d.rule, d.watchlist_id) for d in decisions] == [
        ("firing", "volume_spike", crisis["watchlist_id"]), ("resolved", "volume_spike", crisis["watchlist_id"])]
    fired = decisions[0]
    start = datetime.fromisoformat(crisis["start"].replace("Z", "+00:00"))
    assert 0 <= fired.starts_at_ms / 1000 - start.timestamp() < 60  # within a minute of the crisis starting
