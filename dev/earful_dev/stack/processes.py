"""The four services as separate OS processes, for the local stack, the demo and end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import earful
from earful.core.errors import EarfulError
from earful.core.settings import SERVICE_PORTS
from earful_dev.stack.broker import free_port, stop_with_parent, terminate

SERVICES = ("storage", "enrichment", "alerting", "ingest")


class StackError(EarfulError):
    kind = "stack_error"


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the service in a session of its own: a Ctrl-C is for whoever started it, who then
        stops the services in order. The service gets SIGTERM when the thread that started it ends,
        so none outlives a stack that was killed (see `stop_with_parent`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "earful", self.name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=stop_with_parent(),
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        """Poll /readyz until 200; fail early (with the log's tail) if the process dies."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise StackError(f"{self.name} exited with code {self.process.returncode if self.process else '?'}:\n{self.log_tail()}")
            try:
                resp = httpx.get(self.url + "/readyz", timeout=2.0)
                if resp.status_code == 200:
                    return
                last = resp.text[:300]
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise StackError(f"{self.name} not ready after {timeout_s:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait for a clean exit (flush, commit), SIGKILL only as a last resort."""
        if self.process is None:
            return None
        return terminate(self.process, timeout_s)

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def service_env(base: dict[str, str], name: str, port: int) -> dict[str, str]:
    env = dict(base)
    env["EARFUL_HTTP_PORT"] = str(port)
    env.setdefault("EARFUL_HTTP_HOST", "127.0.0.1")
    src = str(Path(earful.__file__).resolve().parents[1])  # services/ in a clone: works without an install too
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Pipeline:
    """Starts, watches and stops the four service processes."""

    def __init__(self, env: dict[str, str], log_dir: Path, prefer_default_ports: bool = True) -> None:
        self.services = {
            name: ServiceProcess(
                name,
                port := free_port(SERVICE_PORTS[name] if prefer_default_ports else None),
                service_env(env, name, port),
                log_dir / f"{name}.log",
            )
            for name in SERVICES
        }

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def start(self, ready_timeout_s: float = 90.0) -> None:
        self.spawn()
        self.wait_ready(ready_timeout_s)

    def spawn(self) -> None:
        """Start the four processes without waiting for them. Call it from a thread that lives as long
        as the services should: they are stopped when it ends (`ServiceProcess.start`)."""
        for svc in self.services.values():
            svc.start()

    def wait_ready(self, timeout_s: float) -> None:
        for svc in self.services.values():
            svc.wait_ready(timeout_s)

    def stop(self) -> dict[str, int | None]:
        # Ingest first (no new work), then the consumers, downstream last.
        return {name: self.services[name].stop() for name in ("ingest", "enrichment", "alerting", "storage")}
