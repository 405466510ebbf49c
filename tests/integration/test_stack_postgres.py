"""Finding PostgreSQL for the local stack: configured URL, local TCP, Unix socket, embedded server."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import asyncpg
import pytest

from earful.core.db import drop_database, ensure_database, with_database
from earful.core.errors import StorageError
from earful_dev.stack import postgres
from earful_dev.stack.postgres import embedded_available, find_postgres, start_embedded

pytestmark = pytest.mark.integration

SOCKET_DIR = Path("/var/run/postgresql")
LOCAL_TCP_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _name() -> str:
    return f"earful_t_{secrets.token_hex(4)}"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _exists(url: str) -> bool:
    conn = await asyncpg.connect(with_database(url, "postgres"), timeout=5)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", postgres.database_of(url)))
    finally:
        await conn.close()


async def _require_local_tcp() -> None:
    try:
        conn = await asyncpg.connect(LOCAL_TCP_URL, timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL for user postgres on 127.0.0.1:5432 ({exc})")
    await conn.close()


def _require_socket() -> None:
    if not (SOCKET_DIR / ".s.PGSQL.5432").exists():
        pytest.skip(f"no PostgreSQL socket in {SOCKET_DIR}")


def _require_embedded() -> None:
    if not embedded_available():
        pytest.skip("embedded PostgreSQL package not installed")


def _server(handle: postgres.PostgresHandle) -> postgres.EmbeddedServer:
    assert isinstance(handle.process, postgres.EmbeddedServer)
    return handle.process


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --------------------------------------------------------------------------- local server


async def test_finds_local_tcp_and_creates_the_database() -> None:
    await _require_local_tcp()
    name = _name()
    lines: list[str] = []
    handle = await find_postgres(name, allow_embedded=False, log=lines.append)
    try:
        assert handle.origin == "local-tcp"
        assert handle.process is None
        assert handle.url == f"postgresql://postgres@127.0.0.1:5432/{name}"
        assert len(lines) == 1 and "127.0.0.1:5432" in lines[0]
        conn = await asyncpg.connect(handle.url, timeout=5)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
        await handle.stop()  # not ours: a no-op
        assert await _exists(handle.url)
    finally:
        await drop_database(handle.url)
    assert not await _exists(handle.url)


async def test_ensure_database_creates_a_fresh_database_once() -> None:
    await _require_local_tcp()
    url = with_database(LOCAL_TCP_URL, _name())
    assert not await _exists(url)
    try:
        await ensure_database(url)
        assert await _exists(url)
        await ensure_database(url)  # already there: nothing to do
    finally:
        await drop_database(url)
    assert not await _exists(url)


async def test_configured_socket_url_is_used() -> None:
    _require_socket()
    name = _name()
    url = f"postgresql://postgres@/{name}?host={SOCKET_DIR}"
    lines: list[str] = []
    handle = await find_postgres("earful", configured_url=url, allow_embedded=False, log=lines.append)
    try:
        assert handle.origin == "configured"
        assert handle.url == url
        assert len(lines) == 1 and "configured" in lines[0]
        conn = await asyncpg.connect(handle.url, timeout=5)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
    finally:
        await drop_database(url)


async def test_configured_unreachable_url_fails_without_fallback(tmp_path: Path) -> None:
    port = _dead_port()
    url = f"postgresql://postgres:s3cret@127.0.0.1:{port}/earful_t_x"
    lines: list[str] = []
    with pytest.raises(StorageError) as caught:
        await find_postgres(configured_url=url, data_dir=tmp_path / "pg", allow_embedded=True, log=lines.append)
    message = str(caught.value)
    assert "EARFUL_DATABASE_URL" in message
    assert f"127.0.0.1:{port}" in message
    assert "refused" in message
    assert "s3cret" not in message
    assert lines == []
    assert not (tmp_path / "pg").exists()  # no embedded server was tried


# --------------------------------------------------------------------------- URLs and names


def test_with_database_keeps_server_credentials_and_query() -> None:
    assert (with_database("postgresql://postgres@/earful?host=/var/run/postgresql", "other")
            == "postgresql://postgres@/other?host=/var/run/postgresql")
    assert (with_database("postgresql:///earful?host=/tmp&port=5433", "other")
            == "postgresql:///other?host=/tmp&port=5433")
    assert (with_database("postgresql://u:p%40ss@db.example:5433/earful?sslmode=disable", "x_1")
            == "postgresql://u:p%40ss@db.example:5433/x_1?sslmode=disable")
    assert with_database("postgres://h", "earful") == "postgres://h/earful"


@pytest.mark.parametrize("bad", ["Earful", "1abc", "a-b", 'x"; DROP DATABASE postgres; --', "a" * 64, "", "é"])
async def test_bad_database_names_are_refused(bad: str) -> None:
    with pytest.raises(StorageError, match="invalid database name"):
        with_database(LOCAL_TCP_URL, bad)
    dead = f"postgresql://postgres@127.0.0.1:{_dead_port()}/"
    with pytest.raises(StorageError, match="invalid database name"):
        await ensure_database(dead + bad.replace("/", ""))
    with pytest.raises(StorageError, match="invalid database name"):
        await find_postgres(bad, allow_embedded=False, log=lambda _: None)


@pytest.mark.parametrize("own", ["postgres", "template0", "template1"])
async def test_drop_database_refuses_the_servers_own(own: str) -> None:
    with pytest.raises(StorageError, match="refusing"):
        await drop_database(with_database(LOCAL_TCP_URL, own))


def test_handle_repr_hides_the_password() -> None:
    handle = postgres.PostgresHandle("postgresql://postgres:s3cret@127.0.0.1:1/earful", "embedded")
    assert "s3cret" not in repr(handle)


# --------------------------------------------------------------------------- embedded server


async def test_embedded_server_starts_reuses_its_folder_and_stops(tmp_path: Path) -> None:
    _require_embedded()
    data_dir = tmp_path / "pg"
    lines: list[str] = []
    handle = await start_embedded(data_dir, "earful_t_emb", log=lines.append)
    server = _server(handle)
    try:
        assert handle.origin == "embedded"
        assert handle.url.startswith("postgresql://postgres:") and "@127.0.0.1:" in handle.url
        assert len(lines) == 1 and "initialised" in lines[0]
        conn = await asyncpg.connect(handle.url, timeout=5)
        try:
            assert (await conn.fetchval("SELECT version()")).startswith("PostgreSQL ")
            assert await conn.fetchval("SELECT current_database()") == "earful_t_emb"
            assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
            await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
        # over TCP the server wants the password
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", timeout=5)
    finally:
        await handle.stop()
    assert _gone(server.pid)
    assert not (data_dir / "postmaster.pid").exists()  # a clean shutdown

    again = await start_embedded(data_dir, "earful_t_emb", log=lines.append)
    try:
        assert "initialised" not in lines[1]
        assert _server(again).port == server.port  # same port as last time while it is free
        conn = await asyncpg.connect(again.url, timeout=5)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == 42
        finally:
            await conn.close()
    finally:
        await again.stop()
    assert _gone(_server(again).pid)


async def test_a_server_found_running_is_left_running(tmp_path: Path) -> None:
    _require_embedded()
    first = await start_embedded(tmp_path / "pg", "earful_t_emb", log=lambda _: None)
    try:
        lines: list[str] = []
        found = await start_embedded(tmp_path / "pg", "earful_t_emb", log=lines.append)
        assert "already running" in lines[0]
        assert _server(found).pid == _server(first).pid
        await found.stop()
        assert not _gone(_server(first).pid)
    finally:
        await first.stop()
    assert _gone(_server(first).pid)


async def test_password_on_tcp_falls_through_to_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_embedded()
    _require_socket()
    embedded = await start_embedded(tmp_path / "pg", "earful", log=lambda _: None)
    name = _name()
    try:
        # a "local" TCP server that asks for a password, as on many machines
        monkeypatch.setattr(postgres, "LOCAL_PORT", _server(embedded).port)
        monkeypatch.setattr(postgres, "SOCKET_DIRS", (tmp_path / "nothing", SOCKET_DIR))
        handle = await find_postgres(name, allow_embedded=False, log=lambda _: None)
        assert handle.origin == "local-socket"
        assert handle.url == f"postgresql://postgres@/{name}?host={SOCKET_DIR}"
    finally:
        await embedded.stop()
        await drop_database(f"postgresql://postgres@/{name}?host={SOCKET_DIR}")


async def test_falls_back_to_embedded_then_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_embedded()
    monkeypatch.setattr(postgres, "LOCAL_PORT", _dead_port())
    monkeypatch.setattr(postgres, "SOCKET_DIRS", (tmp_path / "nothing",))
    lines: list[str] = []
    handle = await find_postgres("earful", data_dir=tmp_path / "pg", log=lines.append)
    try:
        assert handle.origin == "embedded"
        assert len(lines) == 1 and "embedded PostgreSQL" in lines[0]
    finally:
        await handle.stop()
    assert _gone(_server(handle).pid)

    with pytest.raises(StorageError) as caught:
        await find_postgres("earful", data_dir=tmp_path / "pg", allow_embedded=False, log=lines.append)
    message = str(caught.value)
    assert "127.0.0.1:" in message and "nothing" in message and "EARFUL_DATABASE_URL" in message
    assert len(lines) == 1
