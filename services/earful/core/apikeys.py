"""Named API keys with scopes, as configured (EARFUL_API_KEYS, EARFUL_INGEST_API_KEYS).

Pure parsing, no web framework: settings validate the format at start-up with it (a bad entry is a
ConfigError naming it), and `earful.core.auth` checks requests against the keys it returns.

Format of EARFUL_API_KEYS: comma-separated `name:scope+scope:secret` entries, e.g.
``crm:ingest:8d1c...,dashboard:read:1f2e...,oncall:read+write:77ab...,dpo:read+admin:c0de...``.
The secret is everything after the second colon. Two formats from before scopes still load:

* a bare secret in EARFUL_API_KEYS (no colon) is a key named ``legacy-<8 hex of its SHA-256>``
  with the scopes ``read+write+admin``: exactly what any key could do before;
* EARFUL_INGEST_API_KEYS (`name:secret` pairs, or bare secrets named key1, key2, ...) are keys
  with the scope ``ingest`` only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    """What a key may do; every route requires exactly one scope (none implies another)."""

    INGEST = "ingest"  # push mentions (ingest's POST /v1/mentions)
    READ = "read"  # every GET of the query, watchlist and alerting APIs
    WRITE = "write"  # watchlists, silences, acknowledgements, corrections
    ADMIN = "admin"  # erasure, watchlist deletion, the audit log: anything destructive or sensitive


LEGACY_SCOPES = frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FORMAT_HINT = ("expected comma-separated name:scope+scope:secret entries (scopes: ingest, read, write, admin), "
               "e.g. EARFUL_API_KEYS=dashboard:read:S3CR3T,oncall:read+write:S3CR3T2")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (in logs, metrics and the audit log), its scopes, its secret."""

    name: str
    scopes: frozenset[Scope]
    secret: str = field(repr=False)


def _legacy_name(secret: str) -> str:
    return "legacy-" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _scopes(text: str, where: str) -> frozenset[Scope]:
    names = [s.strip().lower() for s in text.split("+")]
    unknown = [n for n in names if n not in {s.value for s in Scope}]
    if not names or unknown or "" in names:
        raise ValueError(f"{where}: unknown scope {'+'.join(unknown) or text!r}; {FORMAT_HINT}")
    return frozenset(Scope(n) for n in names)


def parse_api_keys(text: str | None) -> list[ApiKey]:
    """The keys of EARFUL_API_KEYS (see the module docstring); ValueError naming a bad entry."""
    keys: list[ApiKey] = []
    for i, entry in enumerate(e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        where = f"EARFUL_API_KEYS entry {i + 1}"
        if ":" not in entry:
            if all(k.secret != entry for k in keys):  # a repeated bare key was harmless before: still is
                keys.append(ApiKey(_legacy_name(entry), LEGACY_SCOPES, entry))
            continue
        name, _, rest = entry.partition(":")
        scopes, sep, secret = rest.partition(":")
        if not sep:
            raise ValueError(f"{where} has one colon (name:secret is the format of EARFUL_INGEST_API_KEYS); {FORMAT_HINT}")
        name, secret = name.strip(), secret.strip()
        if not _NAME.match(name):
            raise ValueError(f"{where}: the name {name[:70]!r} must be 1-64 letters, digits, '_', '.' or '-'")
        if not secret:
            raise ValueError(f"{where} ({name}) has an empty secret; {FORMAT_HINT}")
        keys.append(ApiKey(name, _scopes(scopes, f"{where} ({name})"), secret))
    return keys


def parse_ingest_keys(text: str | None) -> list[ApiKey]:
    """The keys of EARFUL_INGEST_API_KEYS: `name:secret` (or a bare secret, named key<N>), scope ingest."""
    keys = []
    for i, entry in enumerate(e.strip() for e in (text or "").split(",")):
        if entry:
            name, sep, secret = entry.partition(":")
            keys.append(ApiKey(name.strip() if sep else f"key{i + 1}", frozenset({Scope.INGEST}),
                               secret.strip() if sep else entry))
    return keys


def configured_keys(api_keys: str | None, ingest_api_keys: str | None) -> list[ApiKey]:
    """Every key of both settings; ValueError when two share a name or a secret (who acted must be
    unambiguous in the audit log) or a secret is empty."""
    keys = parse_api_keys(api_keys) + parse_ingest_keys(ingest_api_keys)
    names: set[str] = set()
    secrets: set[str] = set()
    for key in keys:
        if not key.secret:
            raise ValueError(f"API key {key.name} has an empty secret")
        if key.name in names:
            raise ValueError(f"two API keys are named {key.name!r} (EARFUL_API_KEYS and EARFUL_INGEST_API_KEYS share names)")
        if key.secret in secrets:
            raise ValueError(f"API key {key.name} has the same secret as another key; give each key its own secret")
        names.add(key.name)
        secrets.add(key.secret)
    return keys
