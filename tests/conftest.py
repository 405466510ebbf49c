"""Shared fixtures: a real Kafka-protocol broker (Tansu) and a real PostgreSQL database.

Integration and end-to-end tests get a fresh in-memory broker per test module (it starts in
milliseconds, and fixed topic names must not leak between modules) and a database of their
own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from earful.core.settings import Settings
from earful_dev.stack.broker import LocalBroker

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = LocalBroker.start(log_path=log)
    yield b
    b.stop()


@pytest.fixture(scope="module")
async def pg_url() -> AsyncIterator[str]:
    from earful.core.db import drop_database, ensure_database, with_database
    from earful_dev.stack.postgres import find_postgres

    name = f"earful_t_{uuid.uuid4().hex[:10]}"
    handle = await find_postgres(name, os.environ.get("EARFUL_DATABASE_URL"), REPO / ".earful" / "postgres",
                                 log=lambda m: None)
    url = with_database(handle.url, name)
    await ensure_database(url)
    yield url
    await drop_database(url)
    await handle.stop()


@pytest.fixture(scope="module")
async def settings(broker: LocalBroker) -> Settings:
    """Settings for the module's broker, with every declared topic created (never auto-created)."""
    from earful.core.topics import create_topics

    s = Settings(kafka_bootstrap=broker.bootstrap)
    await create_topics(s)
    return s


@pytest.fixture(scope="module")
def base_env(broker: LocalBroker, settings: Settings) -> dict[str, str]:
    """Environment for service processes: the test broker, text logs, nothing inherited from EARFUL_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARFUL_")}
    env.update({"EARFUL_KAFKA_BOOTSTRAP": broker.bootstrap, "EARFUL_LOG_FORMAT": "json",
                "EARFUL_SCHEMA_DIR": str(REPO / "schemas")})
    return env
