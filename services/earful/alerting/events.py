"""Detector decisions → AlertEvent records (schemas/alert_event.avsc v3) and their JSON form.

A firing decision with evidence (`earful.alerting.describe`) carries its explanation, the severity
judged from it and the summary sentence naming the cause; every event carries the label
`alertname` (the rule), which Alertmanager templates expect. alertname repeats `rule`, so it is
left out of the fingerprint: alerts keep the identity they had before it existed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from earful.alerting.detection.model import Decision
from earful.alerting.severity import reasons
from earful.alerting.summary import Summary


def dashboard_link(base: str | None, watchlist_id: str) -> str | None:
    if not base:
        return None
    return f"{base.rstrip('/')}/#watchlist={watchlist_id}"


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)


def alert_record(d: Decision, *, bucket_s: int, detected_at_ms: int, group_key: str | None,
                 explanation: dict[str, Any] | None = None, dashboard_url: str | None = None,
                 assessment: dict[str, Any] | None = None, summary: Summary | None = None) -> dict[str, Any]:
    """A detector decision → the AlertEvent Avro record (explanation, assessment and the summary
    sentence only on firing events)."""
    firing = d.status == "firing"
    sentence = summary.text if summary is not None and firing else d.summary
    description = d.summary
    annotations = {"summary": sentence, "description": description}
    if firing and assessment is not None:
        annotations["description"] = f"{description}. Severity {reasons(assessment)}."
        annotations["severity_level"] = str(assessment["level"])
        annotations["severity_score"] = f"{assessment['score']:.1f}"
    if dashboard_url:
        annotations["dashboard_url"] = dashboard_url
    return {
        "schema_version": 3, "alert_id": d.alert_id, "fingerprint": d.fingerprint, "status": d.status,
        "rule": d.rule, "watchlist_id": d.watchlist_id, "severity": d.labels.get("severity", "warning"),
        "labels": {**d.labels, "alertname": d.rule}, "summary": sentence, "observed": d.observed, "baseline": d.baseline,
        "score": d.score, "bucket_seconds": bucket_s, "starts_at": _ts(d.starts_at_ms), "ends_at": _ts(d.ends_at_ms),
        "detected_at": _ts(detected_at_ms), "sample_mention_ids": list(d.sample_mention_ids),
        "first_received_at": _ts(d.first_received_at_ms), "annotations": annotations, "group_key": group_key,
        "explanation": explanation if firing else None,
        "severity_assessment": assessment if firing else None,
    }


def to_json(value: Any) -> Any:
    """An Avro record (datetimes, nested records) → JSON-able values with RFC 3339 UTC times."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def event_json(record: dict[str, Any]) -> dict[str, Any]:
    """The AlertEvent as JSON; explanation timestamps (epoch ms) become RFC 3339 too."""
    out = to_json(record)
    explanation = out.get("explanation")
    if explanation:
        for key in ("window_start", "window_end"):
            if isinstance(explanation.get(key), int):
                explanation[key] = to_json(_ts(explanation[key]))
        for post in explanation.get("top_posts") or []:
            if isinstance(post.get("created_at"), int):
                post["created_at"] = to_json(_ts(post["created_at"]))
    return out
