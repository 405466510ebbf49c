"""Container health check: exit 0 when the Earful service in this container answers 200.

    python /app/healthcheck.py            # /healthz: alive (the image's HEALTHCHECK)
    python /app/healthcheck.py /readyz    # ready: dependencies reachable (docker-compose.yml)

The port is EARFUL_HTTP_PORT when set, otherwise each service's default port is tried (one
service runs per container), so the same image checks ingest (8080), enrichment (8081), alerting
(8082) and storage (8083). Standard library only: it must run in every image as it is.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = (8080, 8081, 8082, 8083)
TIMEOUT_S = 3.0


def ports() -> tuple[int, ...]:
    value = os.environ.get("EARFUL_HTTP_PORT", "").strip()
    return (int(value),) if value else DEFAULT_PORTS


def healthy(port: int, path: str = "/healthz", host: str = "127.0.0.1") -> str | None:
    """None when http://host:port/path answers 200, else why not."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=TIMEOUT_S) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "/healthz"
    if not path.startswith("/"):
        print(f"usage: healthcheck.py [/healthz|/readyz], not {path!r}", file=sys.stderr)
        return 2
    try:
        candidates = ports()
    except ValueError:
        print(f"unhealthy: EARFUL_HTTP_PORT={os.environ['EARFUL_HTTP_PORT']!r} is not a port", file=sys.stderr)
        return 1
    problems = []
    for port in candidates:
        problem = healthy(port, path)
        if problem is None:
            return 0
        problems.append(f"{port}: {problem}")
    print(f"unhealthy: {path} " + "; ".join(problems), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
