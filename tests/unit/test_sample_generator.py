"""The seeded sample stream: determinism, the mention contract, realism and the bundled files."""

from __future__ import annotations

import collections
import re
import statistics
from datetime import datetime
from pathlib import Path

import pytest

from earful_dev.sample import generator as g

SMALL = {"hours": 3.0, "crisis_at_hours": 2.5, "rate_scale": 0.15}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CRISIS_WORDS = ("data breach", "leaked passenger data", "lawsuit", "gdpr", "regulator", "class action", "outage", "refund")


@pytest.fixture(scope="module")
def default_run():
    return g.generate_annotated()


@pytest.fixture(scope="module")
def small_run():
    return g.generate_annotated(seed=11, **SMALL)


def _ms(created_at: str) -> int:
    return int(datetime.fromisoformat(created_at).timestamp() * 1000)


def _minute(line, start_ms: int) -> int:
    return (_ms(line["mention"]["created_at"]) - start_ms) // 60_000


# --- determinism ---------------------------------------------------------------------------

def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    for name in ("a", "b"):
        lines, meta = g.generate(seed=3, **SMALL)
        g.write(lines, meta, tmp_path / name)
    for f in (g.STREAM_FILE, g.META_FILE):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    lines, meta = g.generate(seed=4, **SMALL)
    g.write(lines, meta, tmp_path / "c")
    assert (tmp_path / "c" / g.STREAM_FILE).read_bytes() != (tmp_path / "a" / g.STREAM_FILE).read_bytes()


def test_bundled_sample_is_generate_defaults(default_run, tmp_path: Path) -> None:
    lines, meta, _ = default_run
    g.write(lines, meta, tmp_path)
    bundled = g.PACKAGE_DIR
    assert (bundled / g.STREAM_FILE).read_bytes() == (tmp_path / g.STREAM_FILE).read_bytes()
    assert (bundled / g.META_FILE).read_bytes() == (tmp_path / g.META_FILE).read_bytes()
    assert (bundled / g.STREAM_FILE).stat().st_size < 400_000
    assert list(g.read_stream()) == lines
    assert g.read_meta() == meta


def test_read_stream_reads_plain_jsonl(small_run, tmp_path: Path) -> None:
    lines = small_run[0]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(g._dump_line(x) + "\n" for x in lines), encoding="utf-8")
    assert list(g.read_stream(path)) == lines


# --- the contract --------------------------------------------------------------------------

def test_mentions_follow_the_contract(default_run) -> None:
    lines, meta, _ = default_run
    assert meta["count"] == len(lines)
    assert meta["seed"] == 7 and meta["start"].startswith("2026-11-02T00:00:00") and meta["end"].startswith("2026-11-02T08:00:00")
    assert meta["watchlists"] == ["acme-air", "globex", "initech", "skyjet"]
    assert meta["generator"] == "earful_dev.sample.generator" and meta["version"] == 1
    assert 2000 <= len(lines) <= 4000
    keys = ["source", "source_id", "text", "created_at", "url", "lang", "author", "in_reply_to", "reposted_from", "engagement"]
    for line in lines:
        assert set(line) == {"mention", "scenario"} and line["scenario"] in ("baseline", "crisis")
        m = line["mention"]
        assert list(m) == keys
        assert m["source"] in g.SOURCES and isinstance(m["source_id"], str) and m["source_id"]
        assert ISO_MS.match(m["created_at"]), m["created_at"]
        assert meta["start"] <= m["created_at"] < meta["end"]
        assert re.match(r"^https://[a-z0-9.-]+\.example/\S*$", m["url"]), m["url"]
        for host in re.findall(r"https?://([^/\s]+)", m["text"]):
            assert host.endswith(".example"), m["text"]
        if m["source"] in ("twitter", "bluesky"):
            assert m["lang"] in g.LANGS
        elif m["source"] != "mastodon":
            assert m["lang"] is None
        assert set(m["author"]) == {"id", "handle", "display_name", "followers"}
        assert isinstance(m["author"]["followers"], int) and m["author"]["followers"] >= 0
        assert set(m["engagement"]) == {"likes", "reposts", "replies"}
        assert all(isinstance(v, int) and v >= 0 for v in m["engagement"].values())


def test_mentions_pass_the_ingest_model(default_run) -> None:
    model = pytest.importorskip("earful.core.mention")
    batch = model.MentionBatch.model_validate({"mentions": [x["mention"] for x in default_run[0]]})
    assert len(batch.mentions) == len(default_run[0])


def test_sorted_and_unique(default_run) -> None:
    lines = default_run[0]
    stamps = [x["mention"]["created_at"] for x in lines]
    assert stamps == sorted(stamps)
    keys = [(x["mention"]["source"], x["mention"]["source_id"]) for x in lines]
    assert len(keys) == len(set(keys))


# --- realism -------------------------------------------------------------------------------

def test_terms_name_exactly_the_intended_watchlists(default_run) -> None:
    lines, _, ann = default_run
    watchlists = g.load_watchlists()
    matcher = g.TermMatcher(watchlists)
    per = collections.Counter()
    for line, a in zip(lines, ann):
        found = matcher.match(line["mention"]["text"])
        assert found == a["watchlists"], (line["mention"]["text"], a)
        per.update(found or ["(chatter)"])
    assert all(per[w] > 100 for w in ("acme-air", "globex", "initech", "skyjet")), per
    assert per["acme-air"] > per["globex"] > per["skyjet"] > per["initech"] * 0.8
    assert 0.06 <= per["(chatter)"] / len(lines) <= 0.15
    assert sum(len(a["watchlists"]) == 2 for a in ann) > 10  # comparisons naming two brands


def test_project_watchlist_matcher_agrees(default_run) -> None:
    watchlists = pytest.importorskip("earful.watchlists")
    ws = watchlists.WatchlistSet.from_file(g.DEFAULT_WATCHLISTS)
    for line, a in zip(default_run[0], default_run[2]):
        assert sorted({m.watchlist_id for m in ws.match(line["mention"]["text"])}) == sorted(a["watchlists"])


def test_languages_and_sources(default_run) -> None:
    lines, _, ann = default_run
    langs = collections.Counter(a["lang"] for a in ann)
    assert set(langs) == set(g.LANGS)
    assert 1 - langs["en"] / len(ann) >= 0.15
    for line, a in zip(lines, ann):
        if line["mention"]["lang"] is not None:
            assert line["mention"]["lang"] == a["lang"]
    assert {x["mention"]["source"] for x in lines} == set(g.SOURCES)
    texts = [x["mention"]["text"] for x in lines]
    assert 1 - len(set(texts)) / len(texts) <= 0.03
    assert any("$ACME" in t for t in texts) and any("#" in t for t in texts)
    assert any("?" in t and "@AcmeAir" in t for t in texts)


def test_followers_are_heavy_tailed(default_run) -> None:
    followers = [x["mention"]["author"]["followers"] for x in default_run[0]]
    assert statistics.median(followers) < 1_000
    assert max(followers) > 100_000


def test_replies_and_reposts_reference_earlier_posts(default_run) -> None:
    lines = default_run[0]
    by_key = {(x["mention"]["source"], x["mention"]["source_id"]): x["mention"] for x in lines}
    brand_handles = {h for w in g.load_watchlists() for h in w["handles"]}
    children = collections.Counter()
    replies = brand_answers = reposts = 0
    for x in lines:
        m = x["mention"]
        for field in ("in_reply_to", "reposted_from"):
            if m[field] is not None:
                parent = by_key[(m["source"], m[field])]
                assert parent["created_at"] < m["created_at"]
                children[(m["source"], m[field], field)] += 1
        if m["in_reply_to"] is not None:
            replies += 1
            brand_answers += m["author"]["handle"] in brand_handles
        reposts += m["reposted_from"] is not None
    assert replies > 50 and brand_answers > 20 and reposts > 20
    for (source, sid, field), n in children.items():
        eng = by_key[(source, sid)]["engagement"]
        assert eng["replies" if field == "in_reply_to" else "reposts"] >= n


def test_crisis(default_run) -> None:
    lines, meta, ann = default_run
    crisis = [x for x in lines if x["scenario"] == "crisis"]
    c = meta["crisis"]
    assert c["watchlist_id"] == "acme-air" and c["count"] == len(crisis)
    assert c["start"] == crisis[0]["mention"]["created_at"] and c["end"] == crisis[-1]["mention"]["created_at"]
    assert c["start"] >= "2026-11-02T07:30:00.000Z"
    assert 400 <= len(crisis) <= 700
    start_ms = _ms(meta["start"])
    matcher = g.TermMatcher(g.load_watchlists())
    acme = collections.Counter(_minute(x, start_ms) for x in lines
                               if x["scenario"] == "baseline" and "acme-air" in matcher.match(x["mention"]["text"]))
    median = statistics.median(acme[m] for m in range(8 * 60))
    per_min = collections.Counter(_minute(x, start_ms) for x in crisis)
    peak_minute, peak = per_min.most_common(1)[0]
    assert peak >= 10 * max(median, 1) and 50 <= peak <= 100
    assert peak_minute - 450 <= 5  # ramps up within minutes of 07:30
    assert all("acme-air" in matcher.match(x["mention"]["text"]) for x in crisis)
    crisis_ann = [a for x, a in zip(lines, ann) if x["scenario"] == "crisis"]
    assert sum(a["tone"] == "negative" for a in crisis_ann) / len(crisis_ann) >= 0.8
    assert len({a["lang"] for a in crisis_ann}) == 5
    assert sum(x["mention"]["source"] == "news" for x in crisis) >= 10
    text = " ".join(x["mention"]["text"].lower() for x in crisis)
    assert all(word in text for word in CRISIS_WORDS)
    assert statistics.mean(x["mention"]["engagement"]["reposts"] for x in crisis) > 3 * statistics.mean(
        x["mention"]["engagement"]["reposts"] for x in lines if x["scenario"] == "baseline")
    in_window = [x for x in lines if x["scenario"] == "baseline" and c["start"] <= x["mention"]["created_at"] <= c["end"]
                 and "acme-air" in matcher.match(x["mention"]["text"])]
    assert in_window  # baseline acme-air traffic continues during the crisis


def test_small_scale_keeps_a_visible_crisis(small_run) -> None:
    lines, meta, _ = small_run
    assert meta["crisis"]["count"] >= 100
    assert sum(x["scenario"] == "baseline" for x in lines) < 400


def test_no_crisis() -> None:
    lines, meta = g.generate(seed=5, hours=2.0, crisis_at_hours=None, rate_scale=0.2)
    assert meta["crisis"] is None
    assert lines and all(x["scenario"] == "baseline" for x in lines)


def test_generate_rejects_bad_arguments() -> None:
    for kwargs in ({"hours": -1}, {"hours": 2, "crisis_at_hours": 3}, {"rate_scale": 0}, {"crisis_minutes": 0},
                   {"start": datetime(2026, 11, 2)}):
        with pytest.raises(ValueError):
            g.generate(**kwargs)


def test_words_and_templates_are_data_files() -> None:
    """The generator's text lives in text/*.yaml, every language with posts and crisis texts."""
    for name in ("vocabulary.yaml", "posts.yaml", "crisis.yaml"):
        assert (g.TEXT_DIR / name).is_file(), name
    assert set(g._SOCIAL) == set(g._CRISIS) == set(g._CHATTER) == set(g.LANGS)
    assert None in g._HASHTAGS and None in g._SUBREDDITS  # null keys: posts that name no brand
    assert "{bn}" in g._CRISIS_ORIGIN and len(g._CRISIS_STATEMENTS) == 2


def test_watchlists_file() -> None:
    wls = g.load_watchlists()
    assert [(w["id"], w["kind"]) for w in wls] == [("acme-air", "brand"), ("globex", "brand"), ("initech", "brand"),
                                                  ("skyjet", "competitor")]
    matcher = g.TermMatcher(wls)
    for w in wls:
        assert w["handles"] and all(re.match(r"^[a-z0-9-]+$", w["id"]) for w in wls)
        for handle in w["handles"]:
            assert matcher.match(f"thanks @{handle}!") == [w["id"]]
    assert matcher.match("the acme of my career, a sky jet stream, #AcmeAirlines") == []
    assert matcher.match("Flying ACME AIR today, then skyjet") == ["acme-air", "skyjet"]


# --- CLI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["--hours", "-1"],
    ["--hours", "8", "--crisis-at-hours", "9"],
    ["--rate-scale", "0"],
    ["--crisis-minutes", "-5"],
    ["--seed", "seven"],
    ["--bogus"],
    ["--start", "yesterday"],
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, capsys, tmp_path: Path) -> None:
    assert g.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / g.STREAM_FILE).exists()


def test_cli_writes_stream(capsys, tmp_path: Path) -> None:
    argv = ["--seed", "2", "--hours", "1", "--crisis-at-hours", "0.5", "--rate-scale", "0.1", "--out", str(tmp_path)]
    assert g.main(argv) == 0
    meta = g.read_meta(tmp_path / g.META_FILE)
    assert meta["seed"] == 2 and meta["crisis"]["count"] > 0
    assert len(list(g.read_stream(tmp_path / g.STREAM_FILE))) == meta["count"]
    assert "wrote" in capsys.readouterr().err
    assert g.main(["--no-crisis", "--hours", "1", "--rate-scale", "0.1", "--out", str(tmp_path)]) == 0
    assert g.read_meta(tmp_path / g.META_FILE)["crisis"] is None
