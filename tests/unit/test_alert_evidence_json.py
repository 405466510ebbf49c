"""The JSON alerting writes into jsonb columns (earful.alerting.evidence_store._json)."""

from __future__ import annotations

import json

from earful.alerting.evidence_store import _json


def test_nul_characters_are_removed_from_keys_and_strings_at_any_depth() -> None:
    text = _json({"text": "data\x00 breach", "terms": ["a\x00", {"k\x00": "v\x00"}], "n": 3})
    assert "\\u0000" not in text and "\x00" not in text
    assert json.loads(text) == {"text": "data breach", "terms": ["a", {"k": "v"}], "n": 3}


def test_a_value_without_nul_is_plain_json_and_an_escaped_lookalike_survives() -> None:
    value = {"text": "café ✓", "terms": ["x"], "n": None}
    assert _json(value) == json.dumps(value, ensure_ascii=False)
    lookalike = {"text": "a backslash then u0000: \\u0000"}  # no NUL in it: kept as it is
    assert json.loads(_json(lookalike)) == lookalike
