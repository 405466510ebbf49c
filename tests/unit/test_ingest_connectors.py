"""Pure parts of the ingest connectors, on recorded payloads: parsing, mapping, dedup, limits, keys, state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from earful.core.addresses import AddressPolicy, origin
from earful.core.auth import KeyRing, presented_key
from earful.core.errors import ConfigError, SourceError, ValidationError
from earful.core.http import RETRY_AFTER_MAX_S, parse_retry_after
from earful.core.mention import MentionIn
from earful.core.settings import Settings
from earful.ingest.app import OTHER_SOURCE, source_label
from earful.ingest.connectors.bluesky import event_mention, subscribe_url
from earful.ingest.connectors.feeds import FeedConfig, item_to_mention, load_feeds, parse_feed
from earful.ingest.connectors.mastodon import SseParser, status_mentions
from earful.ingest.connectors.replay import MentionFile, parse_mapping, parse_time
from earful.ingest.limits import RateLimiter, retry_after_header
from earful.ingest.publisher import Dedup, observation_key
from earful.ingest.state import StateFile, state_name
from earful.ingest.text import html_to_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- HTML → text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello <b>world</b></p><p>again</p>", "Hello world\n\nagain"),
        ("a &amp; b &lt;c&gt; &rsquo;", "a & b <c> \u2019"),
        ("<p>x</p><script>alert(1)</script><style>p{}</style><p>y</p>", "x\n\ny"),
        ("line<br>break<br/>done", "line\nbreak\ndone"),
        ("plain   text\twith  spaces", "plain text with spaces"),
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


# --- feeds ------------------------------------------------------------------------------------


def test_rss2_items() -> None:
    media, items = parse_feed(fixture("rss2.xml"), "application/rss+xml; charset=UTF-8")
    assert media == "application/rss+xml"
    assert [i["guid"] for i in items] == ["https://travel-daily.example/?p=48213", "https://travel-daily.example/?p=48190",
                                          "https://travel-daily.example/?p=48100"]
    first = items[0]
    assert first["title"] == "Acme Air grounds fleet after IT outage"
    assert first["text"].startswith("Acme Air grounds fleet after IT outage\n\nPassengers of Acme Air were stuck")
    assert "trackView" not in first["text"] and "\u201croot cause\u201d" in first["text"]
    assert first["published"] == "2026-11-02T08:55:13+00:00"
    assert first["author"] == "Maria Lopez" and first["lang"] == "en"
    assert items[1]["published"] == "2026-11-01T16:30:00+00:00"  # +0100 normalised to UTC
    assert items[2]["published"] is None  # unreadable date: the fetch time is used later


def test_atom_items() -> None:
    media, items = parse_feed(fixture("atom.xml"), "application/atom+xml")
    assert media == "application/atom+xml"
    (item,) = items
    assert item["guid"] == "tag:reiseblog-nord.example,2026:post-311"
    assert item["title"] == "Warum ich nie wieder mit Acme Air fliege"
    assert "Drei Stunden Verspätung" in item["text"] and "<p>" not in item["text"]
    assert item["lang"] == "de" and item["author"] == "Jonas K."
    assert item["url"] == "https://reiseblog-nord.example/2026/acme-air-nie-wieder"


def test_json_feed_items() -> None:
    media, items = parse_feed(fixture("feed.json"), "application/feed+json")
    assert media == "application/feed+json"
    assert items[0]["text"] == "Globex reports record Q3\n\nRevenue rose 12% year on year.\n\nMargin up\n\nGuidance raised"
    assert items[0]["author"] == "Globex Press Office" and items[0]["lang"] == "en"
    assert items[1]["guid"] == "2026-11-01-sustainability" and items[1]["url"] is None
    assert items[2]["guid"] is None and items[3]["guid"] is None  # broken items come back without a guid


@pytest.mark.parametrize(("name", "ctype"), [("not_a_feed.html", "text/html"), ("mastodon_status.json", "application/json"),
                                             ("feed.json", "text/html; charset=utf-8")])
def test_malformed_feeds_raise_source_error(name: str, ctype: str) -> None:
    if name == "feed.json":  # a JSON Feed served with a wrong content type is still recognised
        assert parse_feed(fixture(name), ctype)[0] == "application/feed+json"
        return
    with pytest.raises(SourceError):
        parse_feed(fixture(name), ctype)


def test_truncated_feed_yields_no_usable_item() -> None:
    _, items = parse_feed(fixture("truncated.xml"), "application/rss+xml")
    assert all(i["guid"] is None for i in items)


def test_feed_item_to_a_valid_mention() -> None:
    _, items = parse_feed(fixture("rss2.xml"), "application/rss+xml")
    feed = FeedConfig("https://travel-daily.example/feed/", 60, "news", country="GB")
    m = MentionIn.model_validate(item_to_mention(items[2], feed, NOW) | {"text": "x"})
    assert m.created_at == NOW and m.country == "GB" and m.source == "news"
    long_guid = {**items[0], "guid": "x" * 300}
    assert item_to_mention(long_guid, feed, NOW)["source_id"].startswith("sha256:")


def test_load_feeds_from_urls_and_file(tmp_path: Path) -> None:
    f = tmp_path / "feeds.yaml"
    f.write_text("feeds:\n  - url: https://blog.example/atom\n    interval_s: 60\n    source: blog\n    country: DE\n"
                 "  - https://news.example/rss\n")
    feeds = load_feeds(Settings(ingest_feed_urls="https://a.example/feed", ingest_feeds_file=f))
    assert [(x.url, x.interval_s, x.source, x.country) for x in feeds] == [
        ("https://a.example/feed", 300.0, "rss", None), ("https://blog.example/atom", 60.0, "blog", "DE"),
        ("https://news.example/rss", 300.0, "rss", None)]


@pytest.mark.parametrize("body", ["feeds: 3", "feeds:\n  - url: ftp://x/y", "feeds:\n  - url: https://x/y\n    colour: red",
                                  "feeds:\n  - url: https://x/y\n    source: Big News", "feeds:\n  - url: https://x/y\n  - https://x/y",
                                  "feeds:\n  - url: https://x/y\n    interval_s: soon"])
def test_bad_feeds_file_is_a_config_error(tmp_path: Path, body: str) -> None:
    f = tmp_path / "feeds.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError):
        load_feeds(Settings(ingest_feeds_file=f))


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 0.0), ("", 0.0), ("120", 120.0), (" 7 ", 7.0), ("soon", 0.0), ("-3", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: retry now
    # Not finite or absurdly long: a broken header must not stall a connector for ever.
    ("inf", 0.0), ("nan", 0.0), ("1e12", RETRY_AFTER_MAX_S),
])
def test_retry_after(value: str | None, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_an_http_date_is_read_as_gmt() -> None:
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now=now) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 -0000", now=now) == 120.0  # naive date: GMT


# --- Mastodon ---------------------------------------------------------------------------------


def test_sse_parser() -> None:
    p = SseParser()
    lines = [":thump", "event: update", 'data: {"a":', "data: 1}", "", "", "event: delete", "data: 123", "id: 7", "",
             "data:no space", ""]
    events = [e for e in (p.feed(line) for line in lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [("update", '{"a":\n1}', None), ("delete", "123", "7"),
                                                          ("message", "no space", "7")]


def test_status_to_mention() -> None:
    status = json.loads(fixture("mastodon_status.json"))
    (m,) = status_mentions(status)
    assert m["source_id"] == "https://mastodon.example/users/janedoe/statuses/113456789012345678"
    assert m["text"] == "Stuck at Gate B12 for 3 hours, #AcmeAir won't tell us anything. @AcmeAir"
    assert m["author"] == {"id": "109876543210", "handle": "janedoe", "display_name": "Jane Doe 🧳", "followers": 1843}
    assert m["engagement"] == {"likes": 11, "reposts": 5, "replies": 2}
    assert MentionIn.model_validate(m).lang == "en"


def test_boost_is_a_repost_plus_the_original() -> None:
    original = json.loads(fixture("mastodon_status.json"))
    boost = {"id": "113456789099999999", "uri": "https://other.example/users/bob/statuses/1/activity",
             "url": None, "created_at": "2026-11-02T08:40:00.000Z", "content": "", "reblog": original,
             "account": {"id": "5", "acct": "bob@other.example", "display_name": "Bob", "followers_count": 3}}
    repost, post = status_mentions(boost)
    assert repost["reposted_from"] == post["source_id"] == original["uri"]
    assert repost["author"]["handle"] == "bob@other.example" and repost["text"] == post["text"]
    assert repost["engagement"] == {"likes": 0, "reposts": 0, "replies": 0} and post["engagement"]["likes"] == 11


def test_reply_uses_the_parent_uri_when_known() -> None:
    status = {**json.loads(fixture("mastodon_status.json")), "in_reply_to_id": "42"}
    assert status_mentions(status, {"42": "https://x.example/s/42"})[0]["in_reply_to"] == "https://x.example/s/42"
    assert status_mentions(status)[0]["in_reply_to"] is None


def test_status_not_an_object() -> None:
    with pytest.raises(SourceError):
        status_mentions(["nope"])


# --- Bluesky ----------------------------------------------------------------------------------


def test_jetstream_events() -> None:
    events = [json.loads(line) for line in fixture("jetstream.jsonl").decode().splitlines()]
    first = event_mention(events[0])
    assert first == {
        "source": "bluesky", "source_id": "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vuowo2b",
        "text": "Acme Air just cancelled my flight with no explanation. Again.", "created_at": "2026-11-02T08:31:02.102Z",
        "url": "https://bsky.app/profile/did:plc:eygmaihciaxprqvxpfvl6flk/post/3l3qo2vuowo2b", "lang": "en",
        "author": {"id": "did:plc:eygmaihciaxprqvxpfvl6flk"}, "in_reply_to": None}
    assert event_mention(events[2]) is None  # identity event
    assert event_mention(events[3])["in_reply_to"] == first["source_id"]
    assert event_mention(events[4]) is None  # delete
    with pytest.raises(SourceError):
        event_mention(events[5])  # a post without text
    assert event_mention(events[7])["text"].startswith("Edited:")


def test_subscribe_url_resumes_after_the_cursor() -> None:
    assert subscribe_url("wss://js.example/subscribe", None) == "wss://js.example/subscribe?wantedCollections=app.bsky.feed.post"
    assert subscribe_url("wss://js.example/subscribe?compress=false&cursor=1", 1793608262329308) == \
        "wss://js.example/subscribe?compress=false&wantedCollections=app.bsky.feed.post&cursor=1793608262329309"


# --- replay files -----------------------------------------------------------------------------


def test_csv_export_with_column_mapping() -> None:
    reader = MentionFile(FIXTURES / "brandwatch_export.csv", default_source="import")
    lines = [line["mention"] for line in reader]
    assert reader.format == "csv" and reader.content_type == "text/csv"
    assert len(lines) == 2
    tweet, news = lines
    assert tweet["source"] == "twitter" and tweet["source_id"] == "1850000000000000001"
    assert tweet["author"] == {"handle": "jane", "display_name": "Jane Doe", "followers": 1843}
    assert tweet["engagement"] == {"likes": 12, "reposts": 3, "replies": 1}
    assert tweet["created_at"] == "2026-11-02T08:31:02+00:00" and tweet["country"] == "GB"
    assert news["source"] == "news" and news["source_id"] == "https://news.example/acme-outage"
    assert news["title"] == "Acme Air outage: what we know"
    assert [(p.line, p.message.split(":")[0]) for p in reader.problems] == [(4, "created_at (column 'Date')"), (5, "no text (looked for columns text, fulltext, content, message, ...)")]
    assert reader.bad == 2 and reader.position == reader.size


def test_map_overrides_a_column(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("when,says,network,id\n1793608262,hello Acme,Mastodon,1\n")
    (m,) = [line["mention"] for line in MentionFile(f, mapping=parse_mapping(["created_at=when", "text=says"]))]
    assert m == {"author": {}, "engagement": {}, "created_at": "2026-11-02T08:31:02+00:00", "text": "hello Acme",
                 "source": "mastodon", "source_id": "1"}
    with pytest.raises(ValidationError):
        MentionFile(f, mapping=parse_mapping(["text=nothing"])).__iter__().__next__()
    with pytest.raises(ValidationError):
        parse_mapping(["colour=red"])


def test_jsonl_forms_and_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    good = {"source": "twitter", "source_id": "1", "text": "hi", "created_at": "2026-11-02T08:00:00Z"}
    f.write_text("\n".join([json.dumps({"mention": good, "scenario": "x"}), json.dumps(good), "{not json",
                            json.dumps({"mention": {**good, "colour": "red"}}), "[1, 2]",
                            json.dumps({"tweet_id": "9", "full_text": "flat", "timestamp": 1793608262000}), ""]))
    reader = MentionFile(f)
    mentions = [line["mention"] for line in reader]
    assert [m["source_id"] for m in mentions] == ["1", "1", "9"]
    assert mentions[2]["created_at"] == "2026-11-02T08:31:02+00:00" and mentions[2]["source"] == "import"
    assert [p.line for p in reader.problems] == [3, 4, 5]


def test_replay_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        MentionFile(tmp_path / "missing.jsonl")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValidationError, match="no column for text, created_at"):
        list(MentionFile(tmp_path / "bad.csv"))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ValidationError, match="not UTF-8"):
        list(MentionFile(tmp_path / "latin1.jsonl"))


def test_replay_lines_storage_would_refuse_are_bad_lines(tmp_path: Path) -> None:
    """What the push API would refuse with a 422 is a bad line, not a spoiled batch (nor, straight to
    Kafka, a mention storage drops or dead-letters)."""
    now = datetime.now(timezone.utc)
    good = {"source": "twitter", "source_id": "ok", "text": "hi", "created_at": (now - timedelta(days=2)).isoformat()}
    lines = [good, {**good, "source_id": "old", "created_at": (now - timedelta(days=400)).isoformat()},
             {**good, "source_id": "nul", "author": {"handle": "ja\x00ne"}},
             {**good, "source_id": "observed", "engagement": {"observed_at": (now + timedelta(days=1)).isoformat()}},
             {**good, "source_id": "future", "created_at": (now + timedelta(days=1)).isoformat()}]
    f = tmp_path / "x.jsonl"
    f.write_text("\n".join(json.dumps(line) for line in lines))
    reader = MentionFile(f, retention_days=395)
    assert [line["mention"]["source_id"] for line in reader] == ["ok"]
    assert [(p.line, p.message.split(":")[0]) for p in reader.problems] == [
        (2, "created_at"), (3, "author.handle"), (4, "engagement.observed_at"), (5, "created_at")]
    assert "retention" in reader.problems[0].message
    assert [line["mention"]["source_id"] for line in MentionFile(f, retention_days=0)] == ["ok", "old"]


@pytest.mark.parametrize(("value", "iso"), [
    ("2026-11-02T08:31:02Z", "2026-11-02T08:31:02+00:00"), ("2026-11-02 08:31:02", "2026-11-02T08:31:02+00:00"),
    ("2026-11-02T09:31:02+01:00", "2026-11-02T09:31:02+01:00"), (1793608262, "2026-11-02T08:31:02+00:00"),
    ("1793608262000", "2026-11-02T08:31:02+00:00"), ("Mon, 02 Nov 2026 08:31:02 +0000", "2026-11-02T08:31:02+00:00")])
def test_parse_time(value: object, iso: str) -> None:
    assert parse_time(value) == iso


# --- dedup, limits, keys, state -----------------------------------------------------------------


def _record(likes: int = 0, text: str = "hi") -> dict:
    return {"mention_id": "m1", "text": text, "engagement": {"likes": likes, "reposts": 0, "replies": 0, "observed_at": NOW}}


def test_observation_key_separates_updates_from_redeliveries() -> None:
    assert observation_key(_record()) == observation_key({**_record(), "received_at": "later"})
    assert observation_key(_record()) != observation_key(_record(likes=1))
    assert observation_key(_record()) != observation_key(_record(text="edited"))


def test_dedup_is_bounded_by_size_and_time() -> None:
    """Keys from the push payload are 16-byte digests; short ones stand in for them here."""
    now = [0.0]
    d = Dedup(3, ttl_s=10, clock=lambda: now[0])
    d.add([b"a", b"b", b"c", b"d"])
    assert len(d) == 3 and b"a" not in d and b"d" in d
    now[0] = 5.0
    d.add([b"b"])  # seen again: remembered 10 s from now, but it keeps its place in line
    d.add([b"e"])  # full: the first to arrive (b) goes
    assert b"b" not in d and b"c" in d and b"e" in d
    now[0] = 10.0
    assert b"c" not in d and b"d" not in d and b"e" in d  # c and d came at 0, e at 5
    now[0] = 15.0
    assert b"e" not in d
    off = Dedup(0, 10)
    off.add([b"a"])
    assert b"a" not in off


def test_rate_limiter() -> None:
    now = [0.0]
    r = RateLimiter(rate=10, burst=20, clock=lambda: now[0])
    assert r.take("k", 20) == 0.0
    assert r.take("k", 5) == pytest.approx(0.5)
    assert r.take("other", 20) == 0.0  # per client
    now[0] = 0.5
    assert r.take("k", 5) == 0.0
    assert r.take("k", 100) == pytest.approx(2.0)  # larger than the burst: waits for a full bucket
    assert RateLimiter(0, 0).take("k", 10**6) == 0.0
    assert retry_after_header(0.01) == "1" and retry_after_header(2.1) == "3"


def test_rate_limiter_gives_back_what_was_not_accepted() -> None:
    r = RateLimiter(rate=10, burst=20, clock=lambda: 0.0)
    assert r.take("k", 20) == 0.0
    r.give_back("k", 20)  # the batch got a 503: its retry must not be a 429
    assert r.take("k", 20) == 0.0
    r.give_back("unknown", 5)
    assert "unknown" not in r._buckets


def test_rate_limiter_forgets_idle_clients() -> None:
    now = [0.0]
    r = RateLimiter(rate=10, burst=10, clock=lambda: now[0])
    for i in range(100):
        r.take(f"c{i}", 1)
    now[0] = 5.0
    r.take("late", 1)
    assert len(r._buckets) == 1


def test_the_source_label_takes_values_from_a_fixed_set() -> None:
    known = frozenset(Settings().ingest_metric_sources)
    assert source_label("twitter", known) == "twitter" and source_label("mastodon", known) == "mastodon"
    assert {source_label(f"s{i}", known) for i in range(1000)} == {OTHER_SOURCE}


@pytest.mark.parametrize(("url", "expected"), [
    ("https://Mastodon.Social/api", ("mastodon.social", 443)), ("http://127.0.0.1:8089/feed", ("127.0.0.1", 8089)),
    ("http://[::1]:8080/x", ("::1", 8080)), ("http://bücher.example/", ("xn--bcher-kva.example", 80))])
def test_the_origin_of_a_configured_url_as_connections_see_it(url: str, expected: tuple[str, int]) -> None:
    assert origin(url) == expected


def test_the_ingest_address_policy_names_its_setting() -> None:
    policy = AddressPolicy(Settings(ingest_allowed_networks="10.9.0.0/16").ingest_allowed_networks, "EARFUL_INGEST_ALLOWED_NETWORKS")
    assert policy.refusal("10.9.1.1") is None and policy.refusal("8.8.8.8") is None
    assert "EARFUL_INGEST_ALLOWED_NETWORKS" in (policy.refusal("169.254.169.254") or "")


def test_api_keys() -> None:
    keys = KeyRing.from_settings(Settings(ingest_api_keys="acme:s3cret-1,s3cret-2"))
    assert keys.enabled
    assert [(k.name, sorted(k.scopes)) for k in map(keys.identify, ("s3cret-1", "s3cret-2")) if k] == [
        ("acme", ["ingest"]), ("key2", ["ingest"])]
    assert keys.identify("s3cret-") is None and keys.identify("") is None and keys.identify(None) is None
    assert not KeyRing().enabled
    assert presented_key({"x-api-key": " k "}) == "k"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "Basic abc"}) is None


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "deeper", state_name("feed", "https://x.example/feed?a=1"))
    assert state.load() == {}
    state.save({"etag": '"abc"', "guids": ["1", "2"]})
    assert state.load() == {"etag": '"abc"', "guids": ["1", "2"]}
    assert [p.name for p in state.path.parent.iterdir()] == [state.path.name]  # no temporary files left
    state.path.write_text("{broken")
    assert state.load() == {}
    assert state_name("feed", "a") != state_name("feed", "b")


def test_state_dir_not_writable_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="EARFUL_INGEST_STATE_DIR"):
        StateFile(blocker / "sub", "x.json").save({})


def test_settings_validate_connector_urls() -> None:
    with pytest.raises(Exception):
        Settings(ingest_bluesky_url="https://not-a-websocket.example")
    with pytest.raises(Exception):
        Settings(ingest_mastodon_instances="mastodon.social")
    s = Settings(ingest_mastodon_hashtags="AcmeAir, #Globex", ingest_bluesky_url="wss://js.example/subscribe")
    assert s.ingest_mastodon_hashtags == ("AcmeAir", "#Globex")
