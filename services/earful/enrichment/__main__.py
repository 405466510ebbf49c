"""`earful enrichment`: read settings, load the models, build the Faust app, run until SIGTERM.

What runs is `EnrichmentService` (earful.enrichment.app): its agent is
`earful.enrichment.agents.BatchEnricher`, its models `earful.enrichment.processor`.
"""

from __future__ import annotations

from earful.core.settings import Settings
from earful.enrichment.app import EnrichmentService


def main(settings: Settings) -> int:
    return EnrichmentService.build(settings).run()
