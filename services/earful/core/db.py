"""PostgreSQL for every service: URL helpers, database creation, and one pool opener.

The URL helpers keep the query string (a socket directory may be named there:
`postgresql:///earful?host=/var/run/postgresql`) and hide passwords in every message.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import quote, unquote, urlsplit

import asyncpg

from earful.core.errors import StorageError
from earful.core.migrate import migrate

PROBE_TIMEOUT_S = 2.0
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_name(database: str) -> str:
    if not isinstance(database, str) or not _DB_NAME.fullmatch(database):
        raise StorageError(
            f"invalid database name {database!r}: use lower-case letters, digits and _ "
            "(starting with a letter or _, at most 63 characters)"
        )
    return database


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split(url: str) -> tuple[str, str, str, str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StorageError(f"not a PostgreSQL URL (postgresql://...): {redact(url)}")
    return parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment


def _join(scheme: str, netloc: str, path: str, query: str, fragment: str) -> str:
    # urlunsplit drops the `//` of an empty host (postgresql:///db?host=/tmp), which changes the meaning
    url = f"{scheme}://{netloc}{path}"
    if query:
        url += f"?{query}"
    if fragment:
        url += f"#{fragment}"
    return url


def database_of(url: str) -> str:
    """The database named in a PostgreSQL URL ('' when it names none)."""
    return unquote(_split(url)[2].lstrip("/"))


def with_database(url: str, database: str) -> str:
    """The same server, credentials and socket directory (query string kept), another database."""
    scheme, netloc, _, query, fragment = _split(url)
    return _join(scheme, netloc, "/" + quote(check_name(database)), query, fragment)


def redact(url: str) -> str:
    """`url` with its password hidden, for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return _join(parts.scheme, f"{user}:***@{hostinfo}", parts.path, parts.query, parts.fragment)


def reason(exc: BaseException) -> str:
    """One short line saying why a connection failed."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening)"
    if isinstance(exc, FileNotFoundError):
        return "no server socket there"
    if isinstance(exc, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        return f"authentication failed: {exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def connect(url: str, timeout: float = PROBE_TIMEOUT_S) -> asyncpg.Connection:  # noqa: ASYNC109 - passed to asyncpg
    """A connection, or StorageError saying why not; a missing database is passed on as is."""
    try:
        return await asyncpg.connect(url, timeout=timeout)
    except asyncpg.InvalidCatalogNameError:
        raise
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise StorageError(reason(exc)) from exc


async def _maintenance(url: str) -> asyncpg.Connection:
    """A connection to the server's maintenance database ('postgres', else 'template1')."""
    try:
        return await connect(with_database(url, "postgres"))
    except asyncpg.InvalidCatalogNameError:
        pass
    try:
        return await connect(with_database(url, "template1"))
    except asyncpg.InvalidCatalogNameError as exc:
        raise StorageError(f"no maintenance database ('postgres' or 'template1') on {redact(url)}") from exc


async def ensure_database(url: str) -> None:
    """Create the database named in `url` if it is missing, so a fresh server needs no manual step."""
    name = check_name(database_of(url))
    try:
        conn = await _maintenance(url)
    except StorageError as exc:
        raise StorageError(f"cannot reach {redact(url)} to create database {name}: {exc}") from exc
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created meanwhile by someone else
                await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
    except asyncpg.PostgresError as exc:
        raise StorageError(f"cannot create database {name} on {redact(url)}: {exc}") from exc
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    """Drop the database named in `url` (tests, cleanup); the server's own databases are refused."""
    name = database_of(url)
    if name == "postgres" or name.startswith("template"):
        raise StorageError(f"refusing to drop the server's own database {name!r}")
    check_name(name)
    try:
        conn = await _maintenance(url)
    except StorageError as exc:
        raise StorageError(f"cannot reach {redact(url)} to drop database {name}: {exc}") from exc
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    except asyncpg.PostgresError as exc:
        raise StorageError(f"cannot drop database {name} on {redact(url)}: {exc}") from exc
    finally:
        await conn.close()


async def open_pool(dsn: str, *, max_size: int = 4, migrate_first: bool = True,
                    server_settings: dict[str, str] | None = None,
                    command_timeout: float | None = 60) -> asyncpg.Pool:
    """A connection pool, with the migrations applied first unless told otherwise.

    The one place a service opens PostgreSQL, so a failure always reads the same way.
    """
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, command_timeout=command_timeout,
                                         server_settings=server_settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StorageError(f"cannot connect to PostgreSQL ({redact(dsn)}): {reason(exc)}") from exc
    if migrate_first:
        async with pool.acquire() as conn:
            await migrate(conn)
    return pool
