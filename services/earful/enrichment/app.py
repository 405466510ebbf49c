"""The enrichment service's parts, built once per process: the Faust app, its agent, the models.

`EnrichmentService.build` is the whole composition: the agent that turns raw mentions into
enriched ones is `earful.enrichment.agents`, the models it runs are
`earful.enrichment.processor`, the live watchlists they match against come from
`earful.watchlists.live`, and the erased authors whose mentions are dropped from
`earful.core.erased_authors`.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from earful.core.codec import EmbeddingEncoder
from earful.core.erased_authors import ErasedAuthors, follow_erasures
from earful.core.faust_service import FaustDeadLetters, attach_ops_server, run_faust_service
from earful.core.health import Health, tcp_check
from earful.core.kafka import Codecs, EarfulFaustApp, faust_app
from earful.core.settings import Settings
from earful.core.topics import ENRICHED, ERASURES, RAW
from earful.enrichment.agents import SERVICE, BatchEnricher, add_enrich_agent
from earful.enrichment.processor import EnrichmentProcessor
from earful.watchlists.live import WatchlistStore, live_watchlists


@dataclass
class EnrichmentService:
    """The Faust app with its agent and what the agent uses; `run` serves until SIGTERM."""

    settings: Settings
    app: EarfulFaustApp
    health: Health
    watchlists: WatchlistStore  # follows earful.watchlists.v1, started and stopped with the app
    processor: EnrichmentProcessor
    enricher: BatchEnricher
    agent: Any
    erased: ErasedAuthors  # follows earful.erasures.v1: erased authors' mentions are dropped

    @classmethod
    def build(cls, settings: Settings, processor: EnrichmentProcessor | None = None) -> EnrichmentService:
        """Build the app and its agent; the processor (models) is loaded here, once per worker."""
        # The models hold the GIL for most of their time; each wake-up of the event loop (Faust handles
        # every record with several short tasks) takes it from them. A longer switch interval lets the
        # loop's work wait for the models' own GIL releases (numpy) instead of interrupting them.
        sys.setswitchinterval(settings.enrich_switch_interval_s)
        app = faust_app(settings, "earful-enrichment")
        codecs = Codecs(settings)
        raw_codec = codecs.for_topic(RAW)
        health = Health(SERVICE)
        health.add_check("kafka", tcp_check(settings.kafka_bootstrap, 9092))
        watchlists = live_watchlists(app, settings, health, SERVICE)
        erased = follow_erasures(app, settings, codecs.for_topic(ERASURES), SERVICE, health)
        processor = processor or EnrichmentProcessor.from_settings(settings, watchlists)
        attach_ops_server(app, settings, health, SERVICE)
        enricher = BatchEnricher(
            settings, app, processor,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich-models"),
            raw_codec=raw_codec, encoder=EmbeddingEncoder(codecs.for_topic(ENRICHED), raw_codec),
            dead_letters=FaustDeadLetters(app, codecs, SERVICE), erased=erased,
        )
        return cls(settings, app, health, watchlists, processor, enricher, add_enrich_agent(app, enricher), erased)

    def run(self) -> int:
        """Create the topics, then run the Faust worker until SIGTERM/SIGINT; the exit code."""
        return run_faust_service(self.app, self.settings, SERVICE)
