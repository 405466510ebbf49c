"""`watchlists`: one compiled set of 1,000 brand watchlists against tweet-length texts."""

from __future__ import annotations

import itertools
import random
import re
import statistics
import time
from typing import Any

from benchmarks.common import Context, Result, median, sample_mentions, say

NAME = "watchlists"
KEYS = ("watchlist_match_per_s", "watchlist_match_cpu_per_s", "watchlist_match_us_per_mention",
        "watchlist_compile_s", "watchlist_match_per_s_by_count")
DESCRIPTION = "matching 10,000 texts against 1,000 watchlist queries (and 10 and 10,000)"

WATCHLIST_COUNT = 1_000
WATCHLIST_SIZES = (10, 1_000, 10_000)
WATCHLIST_TEXTS = 10_000
WATCHLIST_RUNS = 3

_SYLLABLES_A = ("Ac", "Al", "Am", "Ar", "Bel", "Bri", "Cal", "Cor", "Dal", "Dyn", "El", "Ev", "Fal", "Fin", "Gal",
                "Glo", "Hal", "Hel", "In", "Jun", "Kal", "Kor", "Lum", "Lux", "Mar", "Mer", "Nov", "Nor", "Om",
                "Or", "Pax", "Pol", "Quan", "Rad", "Riv", "Sol", "Syn", "Tal", "Ter", "Ul", "Val", "Vor", "Wex",
                "Xan", "Yar", "Zen", "Zor")
_SYLLABLES_B = ("a", "aro", "ex", "ia", "ico", "ify", "io", "is", "ix", "ly", "on", "ora", "ova", "um", "us", "yn",
                "eo", "ant", "era", "ite")
_SYLLABLES_C = ("", "", "", "tech", "go", "ware", "ly", "hub", "net", "pay", "air", "bank", "labs", "mart", "flow")
_WORDS = ("Blue", "North", "Silver", "Bright", "Green", "Harbor", "Summit", "River", "Stone", "Golden", "Red",
          "Atlas", "Cedar", "Pioneer", "Metro", "Urban", "Prime", "Royal", "Star", "Coastal", "Iron", "Maple")
_NOUNS = ("Air", "Bank", "Foods", "Energy", "Mobile", "Motors", "Health", "Insurance", "Telecom", "Labs", "Coffee",
          "Airlines", "Pharma", "Retail", "Media", "Games", "Cloud", "Logistics", "Hotels", "Fitness", "Capital")


_RISKS = ("outage", "down", "refund", "broken", "scam", "lawsuit", "recall", "delay", "cancelled", "support")
_FRUIT = ("pie", "juice", "recipe", "orchard", "tree", "soup", "jam", "salad")


def generate_watchlists(count: int, seed: int = 20261102) -> list[Any]:
    """`count` brand-like watchlists with queries of the shapes teams write: brand names and tags
    with exclusions, proximity to risk words, wildcards, language and site filters, campaigns."""
    from earful.watchlists import Watchlist

    rng = random.Random(seed)
    out, names = [], set()
    while len(out) < count:
        coined = rng.choice(_SYLLABLES_A) + rng.choice(_SYLLABLES_B) + rng.choice(_SYLLABLES_C)
        shape = rng.random()
        if shape < 0.4:
            words = [coined]
        elif shape < 0.8:
            words = [coined, rng.choice(_NOUNS)] if rng.random() < 0.6 else [rng.choice(_WORDS), coined]
        else:
            words = [rng.choice(_WORDS), coined, rng.choice(_NOUNS)]
        name = " ".join(words)
        if name.casefold() in names:
            continue
        names.add(name.casefold())
        joined = "".join(words)
        brand = f'"{name}"' if len(words) > 1 else name
        forms = f"({brand} OR {joined} OR #{joined} OR @{joined})" if len(words) > 1 else f"({name} OR #{name} OR @{name})"
        kind = rng.random()
        if kind < 0.35:
            query = f"{forms} AND NOT (jobs OR hiring OR #{joined}Jobs)"
        elif kind < 0.55:
            risks = " OR ".join(rng.sample(_RISKS, 3))
            query = f"{forms} NEAR/5 ({risks} OR crash*)"
        elif kind < 0.70:
            query = f"{forms} (lang:en OR lang:de)"
        elif kind < 0.80:
            query = f"#{joined}Summer OR #{joined}2026 OR \"{name} summer sale\""
        elif kind < 0.90:
            stem = coined[: max(4, len(coined) - 2)]
            query = f"({stem}* OR #{joined}) AND NOT ({' OR '.join(rng.sample(_FRUIT, 3))})"
        else:
            query = f"{forms} OR site:{joined.lower()}.example"
        wid = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:56] + f"-{len(out):05d}"
        out.append(Watchlist(wid, name, "brand", handles=(joined,), query=query))
    return out


_BUNDLED_BRAND = re.compile(r"([#@$]?)(acme ?air|globex|initech|skyjet)", re.IGNORECASE)


def brand_texts(generated: list[Any], count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` sample mentions (cycled); in half of them the bundled brands are renamed to generated ones,
    so the texts name the generated watchlists about as often as real streams name real brands."""
    rng = random.Random(seed)
    mentions = list(itertools.islice(itertools.cycle(sample_mentions()), count))
    out = []
    for m in mentions:
        text = m["text"]
        if rng.random() < 0.5:
            w = rng.choice(generated)
            joined = w.name.replace(" ", "")
            text = _BUNDLED_BRAND.sub(lambda g, w=w, joined=joined: g.group(1) + (joined if g.group(1) else w.name), text)
        out.append({"text": text, "lang": m.get("lang") or "en", "source": m["source"], "url": m.get("url"),
                    "author": (m.get("author") or {}).get("handle")})
    return out


def _match_rate(watchlists: Any, texts: list[dict[str, Any]]) -> tuple[float, float, int]:
    """(texts/s by wall clock, texts/s of CPU time, texts matched) for one pass."""
    matched = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for t in texts:
        if watchlists.match(t["text"], lang=t["lang"], source=t["source"], author=t["author"], url=t["url"]):
            matched += 1
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(texts) / wall, len(texts) / max(cpu, 1e-9), matched


def run(ctx: Context) -> Result:
    from earful.core.settings import Settings
    from earful.watchlists import WatchlistSet

    bundled = list(WatchlistSet.from_file(Settings().watchlists_dir).watchlists.values())
    pool = generate_watchlists(max(WATCHLIST_SIZES))
    texts = brand_texts(pool[:WATCHLIST_COUNT], WATCHLIST_TEXTS)
    say(f"  {len(texts)} texts (mean {statistics.fmean(len(t['text']) for t in texts):.0f} chars); "
        f"queries like: {pool[0].query} | {pool[1].query}")
    metrics: dict[str, Any] = {}
    scaling: dict[str, float] = {}
    for size in WATCHLIST_SIZES:
        started = time.perf_counter()
        watchlists = WatchlistSet(pool[:size] + bundled, revision="bench")
        compile_s = time.perf_counter() - started
        _match_rate(watchlists, texts[:500])  # warm-up, not timed
        walls, cpus, matched = [], [], 0
        for attempt in range(WATCHLIST_RUNS):
            wall, cpu, matched = _match_rate(watchlists, texts)
            walls.append(wall)
            cpus.append(cpu)
            say(f"  {size:>6,} watchlists, run {attempt + 1}/{WATCHLIST_RUNS}: {wall:,.0f} texts/s "
                f"({cpu:,.0f}/s of CPU time; {matched} of {len(texts)} matched)")
        if matched == 0:
            raise RuntimeError("no text matched any watchlist; the matcher or the inputs are broken")
        scaling[str(size)] = round(median(walls), 1)
        say(f"  {size:>6,} watchlists: median {median(walls):,.0f} texts/s = {1e6 / median(walls):.1f} µs per mention;"
            f" compiled in {compile_s:.2f}s")
        if size == WATCHLIST_COUNT:
            metrics["watchlist_match_per_s"] = round(median(walls), 1)
            metrics["watchlist_match_cpu_per_s"] = round(median(cpus), 1)
            metrics["watchlist_match_us_per_mention"] = round(1e6 / median(walls), 2)
            metrics["watchlist_compile_s"] = round(compile_s, 3)
    metrics["watchlist_match_per_s_by_count"] = scaling
    runs = dict.fromkeys(metrics, WATCHLIST_RUNS)
    runs["watchlist_compile_s"] = 1
    return Result(metrics, runs)
