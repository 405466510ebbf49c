"""Detector decisions → AlertEvent records (schemas/alert_event.avsc v2) and their JSON form."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from earful.alerting.detection.model import Decision


def dashboard_link(base: str | None, watchlist_id: str) -> str | None:
    if not base:
        return None
    return f"{base.rstrip('/')}/#watchlist={watchlist_id}"


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)


def alert_record(d: Decision, *, bucket_s: int, detected_at_ms: int, group_key: str | None,
                 explanation: dict[str, Any] | None = None, dashboard_url: str | None = None) -> dict[str, Any]:
    """A detector decision → the AlertEvent Avro record."""
    annotations = {"summary": d.summary, "description": d.summary}
    if dashboard_url:
        annotations["dashboard_url"] = dashboard_url
    return {
        "schema_version": 2, "alert_id": d.alert_id, "fingerprint": d.fingerprint, "status": d.status,
        "rule": d.rule, "watchlist_id": d.watchlist_id, "severity": d.labels.get("severity", "warning"),
        "labels": dict(d.labels), "summary": d.summary, "observed": d.observed, "baseline": d.baseline, "score": d.score,
        "bucket_seconds": bucket_s, "starts_at": _ts(d.starts_at_ms), "ends_at": _ts(d.ends_at_ms),
        "detected_at": _ts(detected_at_ms), "sample_mention_ids": list(d.sample_mention_ids),
        "first_received_at": _ts(d.first_received_at_ms), "annotations": annotations, "group_key": group_key,
        "explanation": explanation if d.status == "firing" else None,
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
