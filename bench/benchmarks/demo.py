"""`demo`: `earful demo` end to end (sample crisis → webhook alert; every mention stored)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Context, Result, median, python_env, say

NAME = "demo"
KEYS = ("demo_alert_latency_p50_s", "demo_alert_latency_max_s", "demo_false_alerts", "demo_mentions_stored_ok")
DESCRIPTION = "`earful demo` end to end, 3 times"

DEMO_RUNS = 3
DEMO_TIMEOUT_S = 120.0  # `earful demo --timeout`: a healthy run takes ~70 s; a stuck one costs this much


def _run_demo(work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One `earful demo`; past its deadline it gets SIGINT (its own clean-up stops the stack), then SIGKILL."""
    cmd = [sys.executable, "-m", "earful", "demo", "--work-dir", str(work), "--timeout", f"{DEMO_TIMEOUT_S:g}"]
    with subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=DEMO_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run(ctx: Context) -> Result:
    env = python_env()
    summaries: list[dict[str, Any]] = []
    problems: list[str] = []
    for attempt in range(DEMO_RUNS):
        work = ctx.work_dir / f"demo-{attempt + 1}"
        work.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            proc = _run_demo(work, env)
        except subprocess.TimeoutExpired:
            problems.append(f"run {attempt + 1}: no result after {DEMO_TIMEOUT_S + 60:.0f}s (logs in {work})")
            say(f"  run {attempt + 1}/{DEMO_RUNS}: timed out")
            continue
        elapsed = time.monotonic() - started
        (work / "demo.stderr.log").write_text(proc.stderr)
        lines = proc.stdout.strip().splitlines()
        try:
            summary = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            summary = None
        if not isinstance(summary, dict) or "alert_latency_s" not in summary:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            problems.append(f"run {attempt + 1}: exit {proc.returncode}, no summary line (logs in {work}); stderr tail: {tail}")
            say(f"  run {attempt + 1}/{DEMO_RUNS}: failed (exit {proc.returncode})")
            continue
        summaries.append(summary)
        say(f"  run {attempt + 1}/{DEMO_RUNS} ({elapsed:.0f}s, exit {proc.returncode}): {json.dumps(summary)}")
        if summary["alert_latency_s"] is None:
            problems.append(f"run {attempt + 1}: no crisis alert within {DEMO_TIMEOUT_S:g}s (logs in {work / 'logs'})")
        elif proc.returncode != 0:
            problems.append(f"run {attempt + 1}: exit {proc.returncode} ({json.dumps(summary)}; logs in {work / 'logs'})")
    if not summaries:
        raise RuntimeError("; ".join(problems) or "no demo run produced a summary")
    latencies = [s["alert_latency_s"] for s in summaries if s["alert_latency_s"] is not None]
    false_alerts = [s.get("false_alerts", s["alerts_received"] - (1 if s["alert_latency_s"] is not None else 0))
                    for s in summaries]
    metrics = {
        "demo_alert_latency_p50_s": round(median(latencies), 3) if latencies else None,
        "demo_alert_latency_max_s": round(max(latencies), 3) if latencies else None,
        "demo_false_alerts": max(false_alerts),
        "demo_mentions_stored_ok": len(summaries) == DEMO_RUNS
        and all(s["mentions_stored"] == s["mentions_sent"] for s in summaries),
    }
    runs = {"demo_alert_latency_p50_s": len(latencies), "demo_alert_latency_max_s": len(latencies),
            "demo_false_alerts": len(summaries), "demo_mentions_stored_ok": len(summaries)}
    return Result(metrics, runs, "; ".join(problems) or None)
