"""A firing decision → what people are told about it: the explanation (evidence), the severity
judged from it, and the sentence naming the cause, with the claims' mention ids.

This runs on the alert path (between the detector's decision and the alert event), so it works
on what is in memory only; `earful_alert_explain_seconds` measures its cost per alert.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram

from earful.alerting.detection.model import Decision
from earful.alerting.explain import Evidence
from earful.alerting.severity import assess
from earful.alerting.summary import Summary, summarise
from earful.watchlists import Watchlist
from earful.watchlists.terms import BrandTerms, brand_terms

EXPLAIN_SECONDS = Histogram("earful_alert_explain_seconds", "Time to explain one firing alert (evidence, severity, summary).",
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))


@dataclass(frozen=True)
class Description:
    explanation: dict[str, Any]  # the Explanation record
    assessment: dict[str, Any] | None  # the SeverityAssessment record
    summary: Summary


class BrandCache:
    """The brand terms of each watchlist, derived once per watchlist revision."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, BrandTerms]] = {}

    def of(self, watchlist_id: str, watchlist: Watchlist | None) -> BrandTerms:
        revision = watchlist.revision if watchlist is not None else ""
        found = self._cache.get(watchlist_id)
        if found is None or found[0] != revision:
            found = self._cache[watchlist_id] = (revision, brand_terms(watchlist, watchlist_id))
        return found[1]


def describe(evidence: Evidence, decision: Decision, watchlist: Watchlist | None, dashboard_url: str | None,
             brands: BrandCache | None = None) -> Description | None:
    """Explain a firing decision that has an evidence window (None otherwise)."""
    if decision.status != "firing" or decision.window is None:
        return None
    started = time.perf_counter()
    wid = decision.watchlist_id
    brand = (brands or BrandCache()).of(wid, watchlist)
    explanation = evidence.explain(wid, decision.window[0], decision.window[1], dashboard_url, brand,
                                   focus_tag=decision.labels.get("risk"))  # risk_mention is about one tag
    assessment = assess(decision.rule, decision.observed, decision.baseline, explanation)
    name = (watchlist.name if watchlist is not None else "") or wid
    said = summarise(name, decision, explanation)
    explanation["claims"] = said.claims
    EXPLAIN_SECONDS.observe(time.perf_counter() - started)
    return Description(explanation, assessment, said)
