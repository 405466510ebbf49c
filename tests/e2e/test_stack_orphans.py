"""No process the local stack started outlives it, however it ends: Ctrl-C (with its output on the
terminal or piped to a reader that is already gone), SIGTERM, a terminal hang-up while piped, or the
stack killed with SIGKILL. `earful broker` likewise never leaves its Tansu behind.

Every process the stack starts inherits a token in its environment (the stack passes its environment
on, less EARFUL_* settings), so the test finds them in /proc even once they were reparented; the
stack's process tree, taken while it runs, is checked too. Only processes carrying the token, or
started by the test itself, are ever signalled here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from earful_dev.stack.broker import free_port
from tests.support import wait_until

pytestmark = pytest.mark.e2e

TOKEN_VAR = "STACK_ORPHAN_CHECK"  # not EARFUL_*: the stack passes everything else on to its services
SERVICES = ("ingest", "enrichment", "alerting", "storage")
STOP_DEADLINE_S = 150.0  # the stack stops its services one after the other, each within 30 s


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it; `start` (clock ticks after boot) tells it from a later one with its pid."""

    pid: int
    start: int
    cmdline: str


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of `pid`, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def _proc(pid: int) -> Proc | None:
    stat = _stat(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    return None if stat is None or stat[1] == "Z" else Proc(pid, stat[2], cmdline)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[1] != "Z" and stat[2] == proc.start


def tree(root: int) -> set[Proc]:
    """`root` and every process below it."""
    parents = {pid: stat[0] for pid in _pids() if (stat := _stat(pid)) is not None}
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier.extend(children)
    return {proc for pid in found if (proc := _proc(pid)) is not None}


def marked(token: str) -> set[Proc]:
    """The live processes whose environment carries `token`."""
    needle = f"{TOKEN_VAR}={token}".encode()
    out = set()
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and (proc := _proc(pid)) is not None:
            out.add(proc)
    return out


def survivors(tracked: set[Proc], token: str) -> set[Proc]:
    return {p for p in tracked if alive(p)} | marked(token)


def _end(procs: set[Proc]) -> None:
    """Stop what the test started and the stack left behind: SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        left = {p for p in procs if alive(p)}
        for p in left:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while any(alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def token() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    _end(marked(value))  # survivors of a failed test


def _env(token: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARFUL_")}
    env.update({TOKEN_VAR: token, "PYTHONUNBUFFERED": "1", **extra})
    return env


def _wait_for_line(log: Path, text: str, procs: list[subprocess.Popen[bytes]], timeout_s: float) -> None:
    def output() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    deadline = time.monotonic() + timeout_s
    while text not in output():
        assert all(p.poll() is None for p in procs), f"exited before printing {text!r}:\n{output()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s:.0f} s:\n{output()[-3000:]}"
        time.sleep(0.25)


def _wait_all_gone(tracked: set[Proc], token: str, log: Path) -> None:
    deadline = time.monotonic() + STOP_DEADLINE_S
    while (left := survivors(tracked, token)) and time.monotonic() < deadline:
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no output)"
    assert not left, "still running after the stack ended:\n" + "\n".join(
        f"  {p.pid}: {p.cmdline[:200]}" for p in sorted(left, key=lambda p: p.pid)) + f"\nstack output:\n{tail}"


# --------------------------------------------------------------------------- earful run

WAYS = ("ctrl-c", "ctrl-c-reader-gone", "sigterm", "sighup-piped", "sigkill")


@pytest.mark.parametrize("way", WAYS)
def test_no_process_outlives_the_stack(way: str, token: str, pg_url: str, tmp_path: Path) -> None:
    """Start `earful run`, wait until its services are up, end it `way`, and wait until nothing it
    started is left. Piped, its stdout and stderr both go to a `tee` in its process group, as in
    `make run 2>&1 | tee run.log`: the terminal's signals reach the reader as well."""
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-m", "earful", "run", "--work-dir", str(tmp_path / "stack"), "--timeout", "240",
           "--speed", "60"]
    env = _env(token, EARFUL_DATABASE_URL=pg_url)
    piped = way in ("ctrl-c-reader-gone", "sighup-piped")
    started: list[subprocess.Popen[bytes]] = []
    tracked: set[Proc] = set()
    try:
        if piped:  # a shell without job control: the stack and the reader share its process group
            script = f'{TOKEN_VAR}="$TOKEN" "$@" 2>&1 | tee "$RUN_LOG" >/dev/null'  # the token for the stack only
            shell_env = {k: v for k, v in env.items() if k != TOKEN_VAR} | {"TOKEN": token, "RUN_LOG": str(log)}
            shell = subprocess.Popen(["sh", "-c", script, "sh", *cmd], env=shell_env, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=tmp_path)
            started.append(shell)
            group = shell.pid
        else:
            with open(log, "wb") as out:
                stack_proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
            started.append(stack_proc)
            group = stack_proc.pid
        _wait_for_line(log, "dashboard   http://", started, timeout_s=200)

        everything = tree(group)  # with the shell and the reader when piped
        stack = next(p for p in everything if p.cmdline.startswith(f"{sys.executable} -m earful run "))
        tracked = tree(stack.pid) | marked(token)
        names = " | ".join(p.cmdline for p in tracked)
        assert all(f"-m earful {name}" in names for name in SERVICES) and "tansu" in names, names

        if way == "ctrl-c" or way == "sighup-piped":
            os.killpg(group, signal.SIGINT if way == "ctrl-c" else signal.SIGHUP)
        elif way == "ctrl-c-reader-gone":
            reader = next(p for p in everything if p.cmdline.startswith("tee "))
            os.kill(reader.pid, signal.SIGTERM)
            wait_until(lambda: not alive(reader), timeout_s=10)
            os.killpg(group, signal.SIGINT)
        else:
            os.kill(stack.pid, signal.SIGTERM if way == "sigterm" else signal.SIGKILL)
        _wait_all_gone(tracked, token, log)
        if way in ("ctrl-c", "sigterm"):
            assert started[0].wait(10) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        _end(tracked | marked(token) | (tree(group) if started else set()))
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- earful broker


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_broker_leaves_no_tansu_behind(sig: signal.Signals, token: str, tmp_path: Path) -> None:
    """`earful broker` ended by Ctrl-C (its process group), SIGTERM, a hang-up or SIGKILL stops its Tansu."""
    log = tmp_path / "broker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "earful", "broker", "--port", str(free_port())],
                                env=_env(token), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    tracked: set[Proc] = set()
    try:
        _wait_for_line(log, "Kafka-protocol broker", [proc], timeout_s=60)
        tracked = tree(proc.pid) | marked(token)
        assert any("tansu" in p.cmdline for p in tracked), tracked
        if sig in (signal.SIGINT, signal.SIGHUP):
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        _wait_all_gone(tracked, token, log)
        code = proc.wait(10)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), log.read_text(errors="replace")
    finally:
        _end(tracked | marked(token))
        if proc.poll() is None:
            proc.kill()
        proc.wait()
