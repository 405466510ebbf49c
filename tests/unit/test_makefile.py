"""`make bench-NAME` runs benchmark NAME, for every benchmark bench/run.py knows.

Why: `bench-enrichment` and `bench-demo` were once declared phony without a recipe of their own,
which kept the `bench-%` pattern rule from applying, so make printed "Nothing to be done" and ran
nothing. `make -n` prints what would run without running it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def benchmark_names() -> list[str]:
    """The names `bench/run.py --help` lists (in a child interpreter: run.py edits sys.path)."""
    result = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"], capture_output=True, text=True,
                            timeout=120, check=True, cwd=REPO)
    listing = result.stderr.split("\nbenchmarks:\n", 1)[1]
    return [line.split()[0] for line in listing.splitlines() if line.startswith("  ")]


def dry_run(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-n", target], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


def test_every_benchmark_has_a_make_target_that_runs_it() -> None:
    names = benchmark_names()
    assert {"enrichment", "enrichment-service", "watchlists", "demo", "resources"} <= set(names), names
    for name in names:
        result = dry_run(f"bench-{name}")
        assert result.returncode == 0, f"make bench-{name}: {result.stderr}"
        assert "Nothing to be done" not in result.stdout + result.stderr, f"make bench-{name} runs nothing"
        assert re.search(rf"bench/run\.py {re.escape(name)}$", result.stdout, re.M), (name, result.stdout)


def test_make_bench_runs_every_benchmark_and_an_unknown_name_is_no_target() -> None:
    assert re.search(r"bench/run\.py$", dry_run("bench").stdout, re.M)
    assert dry_run("bench-no-such-benchmark").returncode != 0
