"""False volume_spike alerts on synthetic traffic, with and without the fast window, and its cost.

The fast window (`EARFUL_ALERT_FAST_WINDOW_S`) judges a busy watchlist's last seconds on every
mention, so it is tested many times a second: this checks that it adds no false alert. For each
rate, hours of mentions go through the service's detector (a brand watchlist, default settings)
twice, with the fast window off and on:

* steady: Poisson arrivals at the rate;
* bursty: the rate of each 10-s slice drawn from a gamma distribution (sd half the mean), a
  series more spread than Poisson, as real brands' are.

    .venv/bin/python bench/fast_window_false_alerts.py [--rates 6,15,50] [--hours 3] [--whole-seconds]

`--whole-seconds` gives every event time in whole seconds, as sources without milliseconds do.

Prints one line per rate and kind (volume_spike alerts, CPU µs per mention), then JSON. No alert
should appear with the fast window that does not appear without it. About a minute with the
defaults.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services"))

from earful.alerting.detection import DetectorConfig, Mention, new_state, observe  # noqa: E402
from earful.alerting.detection.rules import RuleDefaults, WatchlistRules, rules_for  # noqa: E402
from earful.core.settings import Settings  # noqa: E402
from earful.watchlists import Watchlist  # noqa: E402

T0 = 1_741_939_200_000  # a bucket boundary
SLICE_S = 10  # the bursty series' rate changes every slice
GAMMA_SHAPE = 4.0  # sd of a slice's rate = mean / 2


def arrivals(rng: random.Random, hours: float, rate: float, bursty: bool) -> list[int]:
    """Event times (ms) of a Poisson process, its rate redrawn every slice when bursty."""
    out: list[int] = []
    t, end = 0.0, hours * 3600
    while t < end:
        slice_end = (int(t // SLICE_S) + 1) * SLICE_S
        r = rate * (rng.gammavariate(GAMMA_SHAPE, 1 / GAMMA_SHAPE) if bursty else 1.0)
        while True:
            t += rng.expovariate(r)
            if t >= slice_end:
                t = slice_end
                break
            out.append(T0 + int(t * 1000))
    return out


def alerts(times: list[int], rules: WatchlistRules, cfg: DetectorConfig) -> tuple[list[str], float]:
    """(the summaries of the volume_spike alerts fired, CPU µs per mention)."""
    state, fired = new_state(), []
    started = time.process_time()
    for i, created in enumerate(times):
        for d in observe(state, rules, Mention(f"m{i}", created, created + 300), cfg, wall_ms=created + 300):
            if d.status == "firing" and d.rule == "volume_spike":
                fired.append(d.summary)
    return fired, (time.process_time() - started) / max(1, len(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="6,15,50", help="mentions per second, comma-separated")
    parser.add_argument("--hours", type=float, default=3.0, help="hours of traffic per rate and kind")
    parser.add_argument("--whole-seconds", action="store_true", help="event times in whole seconds (no milliseconds)")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    base = DetectorConfig.from_settings(settings)
    rules = rules_for(Watchlist("acme", "Acme", "brand", ("acme",)), RuleDefaults.from_settings(settings))
    results = []
    for rate in (float(r) for r in args.rates.split(",")):
        for bursty in (False, True):
            times = arrivals(random.Random(int(rate * 10) + bursty), args.hours, rate, bursty)
            if args.whole_seconds:
                times = [t // 1000 * 1000 for t in times]
            off, off_us = alerts(times, rules, replace(base, fast_window_s=0))
            on, on_us = alerts(times, rules, base)
            row = {"rate_per_s": rate, "bursty": bursty, "whole_seconds": args.whole_seconds, "mentions": len(times), "alerts_without": len(off),
                   "alerts_with": len(on), "added": sorted(set(on) - set(off)),
                   "us_per_mention_without": round(off_us, 1), "us_per_mention_with": round(on_us, 1)}
            results.append(row)
            print(f"{rate:g}/s {'bursty' if bursty else 'steady'}, {len(times)} mentions: {len(off)} alerts without the fast "
                  f"window, {len(on)} with ({len(row['added'])} added); {off_us:.1f} → {on_us:.1f} µs per mention", flush=True)
    print(json.dumps({"fast_window_false_alerts": results}))


if __name__ == "__main__":
    main()
