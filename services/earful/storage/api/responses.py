"""What the query API answers: the documented error responses, and rows made JSON-ready."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import asyncpg

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong X-API-Key."},
    503: {"description": "The database is unavailable, or the query took longer than EARFUL_API_QUERY_TIMEOUT_S."},
}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "The listing (JSON, or CSV with ?format=csv)."}, **ERRORS}
WATCHLIST_RESPONSE: dict[int | str, dict[str, Any]] = {
    **CSV_RESPONSE, 404: {"description": "No watchlist with this id is configured or has data."}}

# Columns PostgreSQL returns as JSON text, decoded so they nest in the answer.
_JSON_FIELDS = frozenset({"entities", "risks", "matches", "models", "labels", "annotations", "explanation",
                          "notifications", "sentiment_probabilities"})


def iso(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, as every time in the API is written."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def jsonable(row: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    """A database row as JSON values: times in RFC 3339, JSON columns decoded, UUIDs and numerics as text or floats."""
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = iso(value)
        elif key in _JSON_FIELDS and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
            value = float(value) if hasattr(value, "__float__") else str(value)
        out[key] = value
    return out
