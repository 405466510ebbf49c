"""Child process of the `enrichment` benchmark: load the enrichment processor, enrich the first
1,000 sample mentions in batches of 256, and print one JSON line with the process's peak RSS.

Run by bench/run.py in a fresh interpreter so the number is what one enrichment worker needs
(models, watchlists, one batch in flight), not what the benchmark runner has accumulated.
"""

from __future__ import annotations

import itertools
import json
import resource
import sys
from datetime import datetime, timezone


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 64

    from earful.core.mention import MentionIn, to_record
    from earful.core.settings import Settings
    from earful.enrichment.processor import EnrichmentProcessor
    from earful_dev.sample.generator import read_stream

    settings = Settings()
    now = datetime.now(timezone.utc)
    records = [to_record(MentionIn.model_validate(line["mention"]), now)
               for line in itertools.islice(read_stream(), count)]
    processor = EnrichmentProcessor.from_settings(settings)
    enriched = 0
    for i in range(0, len(records), batch_size):
        enriched += len(processor.enrich(records[i:i + batch_size], now))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_bytes = peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes
    print(json.dumps({"enriched": enriched, "peak_rss_mib": round(peak_bytes / 2**20, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
