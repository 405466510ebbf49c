"""Durable resume state of polling and streaming connectors: one small JSON file per source.

Files live in ``EARFUL_INGEST_STATE_DIR`` and are replaced atomically (write to a temporary file,
fsync, rename), so a crash leaves either the old or the new state, never half of one. A
connector saves its state only after the broker acknowledged what the state says was done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from earful.core.errors import ConfigError

log = logging.getLogger(__name__)


def state_name(*parts: str) -> str:
    """A safe, stable file name for a source (readable prefix + hash of the full identity)."""
    identity = "\x1f".join(parts)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)[:60].strip("_")
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.json"


class StateFile:
    """One JSON document on disk."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / name

    def load(self) -> dict[str, Any]:
        """The saved state, or {} if none (an unreadable file is logged and ignored)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable connector state", extra={"path": str(self.path), "error": str(exc)})
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, state: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(state, f, separators=(",", ":"))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ConfigError(f"cannot write connector state {self.path}: {exc} (check EARFUL_INGEST_STATE_DIR)") from exc
