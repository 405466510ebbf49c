"""Owned and earned (earful.watchlists.owned), author types (earful.watchlists.authors), and the
pure parts of advocates v2 and the owned filter of the mention search."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest

from earful.core.errors import ConfigError
from earful.core.settings import Settings, load_settings
from earful.storage.api.entities import ADVOCATE_COLUMNS, advocate_csv_row, advocate_item, trend
from earful.storage.api.mentions import owned_flag
from earful.storage.api.queries import (
    MentionFilter,
    advocate_day_posts,
    advocate_days,
    advocate_details,
    advocate_ranking,
    mention_search,
)
from earful.storage.dashboard_views import advocate_entry
from earful.storage.export import to_csv
from earful.watchlists import Watchlist
from earful.watchlists.authors import author_type, outlet_like
from earful.watchlists.owned import OwnedHandles, is_owned, parse_entry

UTC = timezone.utc
ACME = Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "@AcmeAirHelp", "bluesky:id:did:plc:acme"))
GLOBEX = Watchlist("globex", "Globex", "brand", ("Globex",), ("twitter:GlobexCares",))
SKYJET = Watchlist("skyjet", "SkyJet", "competitor", ("SkyJet",), ("SkyJetHelp",))
STAFF = Watchlist("acme-staff", "Acme staff", "staff", ("Acme",), ("pat_at_acme", "id:u-42"))
TOPIC = Watchlist("travel", "Travel", "topic", ("flight",))
EVERY = [ACME, GLOBEX, SKYJET, STAFF, TOPIC]


# --- entries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry,key", [
    ("AcmeAirHelp", ("", "h", "acmeairhelp")),
    ("  @AcmeAirHelp ", ("", "h", "acmeairhelp")),
    ("x:Globex", ("x", "h", "globex")),
    ("twitter:@GlobexCares", ("twitter", "h", "globexcares")),
    ("id:did:plc:4f2a", ("", "i", "did:plc:4f2a")),
    ("bluesky:id:did:plc:4f2a", ("bluesky", "i", "did:plc:4f2a")),
    ("Jane@Mastodon.Social", ("", "h", "jane@mastodon.social")),
    ("id:U123", ("", "i", "U123")),  # account ids are exact
])
def test_entries(entry: str, key: tuple[str, str, str]) -> None:
    assert parse_entry(entry) == key


@pytest.mark.parametrize("entry", ["twitter:", "id:", "twitter:id:", "@", "two words"])
def test_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_entry(entry)


def test_the_setting_takes_a_comma_list_of_accounts() -> None:
    s = Settings(_env_file=None, owned_handles="AcmeAirHelp, x:Globex,,id:did:plc:abc,bluesky:id:did:plc:x")
    assert s.owned_handles == ("AcmeAirHelp", "x:Globex", "id:did:plc:abc", "bluesky:id:did:plc:x")
    assert Settings(_env_file=None).owned_handles == ()
    for entry in s.owned_handles:
        parse_entry(entry)  # what the setting accepts, the parser reads
    for bad in ("twitter:", "a b", "x:", "id:"):
        with pytest.raises(ConfigError, match="EARFUL_OWNED_HANDLES"):
            load_settings(_env_file=None, owned_handles=bad)


# --- owned -----------------------------------------------------------------------------------------


def test_a_watchlists_own_handles_are_owned_for_it_only() -> None:
    owned = OwnedHandles.of(EVERY)
    assert owned.is_owned("acme-air", "twitter", "acmeairhelp", "u1")
    assert owned.is_owned("acme-air", "mastodon", "AcmeAir", None)  # any source, any case
    assert not owned.is_owned("globex", "twitter", "AcmeAirHelp", "u1")  # the brand's post about Globex is earned there
    assert not owned.is_owned("acme-air", "twitter", "AcmeAirHelper", "u1")
    assert not owned.is_owned("acme-air", "twitter", None, None)


def test_an_entry_at_one_source_and_one_by_account_id() -> None:
    owned = OwnedHandles.of(EVERY)
    assert owned.is_owned("globex", "twitter", "GlobexCares", None)
    assert not owned.is_owned("globex", "mastodon", "GlobexCares", None)
    assert owned.is_owned("acme-air", "bluesky", None, "did:plc:acme")  # a DID, no handle
    assert not owned.is_owned("acme-air", "twitter", None, "did:plc:acme")
    assert not owned.is_owned("acme-air", "bluesky", "did:plc:acme", None)  # an id is not a handle


def test_staff_and_the_setting_are_owned_for_every_watchlist_but_staff_ones() -> None:
    owned = OwnedHandles.of(EVERY, extra=("mastodon:acmenews",))
    for wid in ("acme-air", "globex", "skyjet", "travel", "not-configured"):
        assert owned.is_owned(wid, "twitter", "Pat_At_Acme", None), wid
        assert owned.is_owned(wid, "reddit", "someone-else", "u-42"), wid  # staff listed by account id
        assert owned.is_owned(wid, "mastodon", "AcmeNews", None), wid
        assert not owned.is_owned(wid, "twitter", "AcmeNews", None), wid
    assert not owned.is_owned("acme-staff", "twitter", "pat_at_acme", None)  # what a staff watchlist watches
    assert not owned.is_owned("acme-staff", "twitter", "AcmeAirHelp", None)


def test_owned_ids_keeps_the_order_and_only_the_owned() -> None:
    owned = OwnedHandles.of(EVERY, extra=("AcmeNews",))
    assert owned.owned_ids(["globex", "acme-air", "skyjet"], "twitter", "AcmeAirHelp", "x") == ["acme-air"]
    assert owned.owned_ids(["globex", "acme-staff", "acme-air"], "twitter", "pat_at_acme", None) == ["globex", "acme-air"]
    assert owned.owned_ids(["acme-air", "globex"], "twitter", "AcmeNews", None) == ["acme-air", "globex"]
    assert owned.owned_ids(["acme-air"], "twitter", "jane", "u1") == []
    assert owned.owned_ids([], "twitter", "AcmeAirHelp", None) == []
    assert OwnedHandles().owned_ids(["acme-air"], "twitter", "AcmeAirHelp", None) == []  # no watchlists: nothing owned


def test_is_owned_for_one_watchlist_agrees_with_the_precomputed_form() -> None:
    owned = OwnedHandles.of(EVERY, extra=("x:Globex",))
    authors = [("twitter", "AcmeAirHelp", "u1"), ("x", "globex", None), ("twitter", "globex", None),
               ("bluesky", None, "did:plc:acme"), ("twitter", "pat_at_acme", None), ("twitter", "jane", "u-42"),
               ("twitter", "jane", "u7")]
    for w in EVERY:
        for source, handle, author_id in authors:
            assert is_owned(w, source, handle, author_id, watchlists=EVERY, extra=("x:Globex",)) == owned.is_owned(
                w.id, source, handle, author_id), (w.id, source, handle)
    assert not is_owned(ACME, "twitter", "pat_at_acme", None)  # without the other watchlists, no staff is known
    assert is_owned(ACME, "twitter", "pat_at_acme", None, watchlists=[STAFF])


def test_account_kinds() -> None:
    owned = OwnedHandles.of(EVERY, extra=("AcmeNews",))
    assert owned.account_kind("twitter", "SkyJetHelp", None) == "brand"  # a competitor's account
    assert owned.account_kind("twitter", "acmeair", None) == "brand"
    assert owned.account_kind("twitter", "acmenews", None) == "brand"
    assert owned.account_kind("twitter", "pat_at_acme", None) == "staff"
    assert owned.account_kind("twitter", "jane", "u1") is None


# --- author types ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source,handle,name,connector,expected", [
    ("twitter", "jane_doe", "Jane Doe", "push", "person"),
    ("news", "metrowire", "Metro Wire", "replay", "media"),  # a news source
    ("rss", None, "Editorial team", "feed", "media"),  # a feed item
    ("anything", None, "Someone", "feed", "media"),  # the feed connector publishes articles
    ("blog", "rachelflies", "Rachel Okafor", "feed", "person"),  # a blogger under their own name
    ("twitter", "dailyledger", "The Ledger", "push", "media"),  # outlet word in the handle
    ("twitter", "NYTimesTravel", "Travel desk", "push", "media"),
    ("bluesky", "ledger.bsky.example", "The Capital Herald", "bluesky", "media"),  # outlet word in the name
    ("mastodon", "wanda@radio.example", "Wanda — Radio Nord", "mastodon", "media"),
    ("twitter", "journal_jane", "Jane", "push", "person"),  # "journal" counts in a name, not inside a handle
    ("twitter", "miaposting", "Mia", "push", "person"),  # nor "post"
    ("twitter", "SkyJetHelp", "SkyJet Help", "push", "brand"),
    ("twitter", "AcmeAirHelp", "Acme Air Help", "push", "brand"),
    ("twitter", "pat_at_acme", "Pat", "push", "staff"),
    ("news", "pat_at_acme", "Pat at the Times", "push", "staff"),  # a listed account wins over the outlet rules
])
def test_author_types(source: str, handle: str | None, name: str | None, connector: str, expected: str) -> None:
    assert author_type(source, handle, None, name, connector, OwnedHandles.of(EVERY)) == expected


def test_author_types_by_account_id_and_without_accounts() -> None:
    assert author_type("bluesky", None, "did:plc:acme", None, "bluesky", OwnedHandles.of(EVERY)) == "brand"
    assert author_type("twitter", "AcmeAirHelp", None, None, "push") == "person"  # nobody lists it
    assert not outlet_like(None, None) and outlet_like(None, "Le Quotidien Éco") and outlet_like("tagesnachrichten", "")


# --- advocates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("current,previous,expected", [
    (10.0, 0.0, "new"), (0.0, 0.0, "flat"), (11.0, 10.0, "up"), (10.9, 10.0, "flat"), (9.1, 10.0, "flat"),
    (9.0, 10.0, "down"), (0.0, 5.0, "down"),
])
def test_trend(current: float, previous: float, expected: str) -> None:
    assert trend(current, previous) == expected


def _ranked(**overrides: Any) -> dict[str, Any]:
    row = {"source": "twitter", "author_key": "jane", "author_handle": "jane", "author_id": "u1", "author_name": "=Jane",
           "connector": "push", "reach": 120, "positive": 3, "negative": 1, "likes": 40, "reposts": 7, "replies": 2,
           "velocity": 4.123, "amplification": 13.123, "previous_positive": 1, "previous_amplification": 2.5}
    return {**row, **overrides}


def test_an_advocate_item_and_its_csv_row() -> None:
    item = advocate_item(_ranked())
    assert (item["amplification"], item["velocity"], item["trend"], item["change"]) == (13.12, 4.12, "up", 4.2492)
    assert item["author_type"] == "person" and item["best_posts"] == []
    assert advocate_item(_ranked(previous_amplification=0))["change"] is None
    item["best_posts"] = [{"mention_id": "m1", "url": "https://t.example/1"}, {"mention_id": "m2", "url": None}]
    row = advocate_csv_row(item)
    assert row["best_posts"] == "https://t.example/1 m2"
    text = to_csv([row], ADVOCATE_COLUMNS)
    assert text.splitlines()[0].startswith('"source","author_handle","author_name","reach"')
    assert "\"'=Jane\"" in text  # a name a spreadsheet would run as a formula is defused
    entry = advocate_entry({**item, "best_posts": [{"mention_id": "m1", "text": "love it"}]})
    assert (entry["href"], entry["best_post"], entry["delta"]) == ("#mention?id=m1", "love it", "+425 %")
    assert advocate_entry({**advocate_item(_ranked(previous_amplification=0)), "best_posts": []})["delta"] == "new"


def _placeholders(sql: str, args: list[Any]) -> None:
    assert {int(n) for n in re.findall(r"\$(\d+)", sql)} == set(range(1, len(args) + 1))


def test_advocate_queries_bind_every_value() -> None:
    hostile = "x'); DROP TABLE mentions; --"
    lo, hi = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    sql, args = advocate_ranking(hostile, lo, hi, 2)
    _placeholders(sql, args)
    assert hostile not in sql and args[0] == hostile
    assert "FROM author_rollups_day" in sql and "HAVING sum(positive::float8) >= $4" in sql  # earned only: rollups
    assert "ORDER BY amplification DESC" in sql
    sql, args = advocate_details(hostile, datetime(2026, 11, 1, tzinfo=UTC), lo, hi, ["twitter"], [hostile])
    _placeholders(sql, args)
    assert hostile not in sql and args[0] == hostile and args[2] == [hostile]
    sql, args = advocate_days(hostile, lo, hi, ["twitter"], [hostile])
    _placeholders(sql, args)
    assert hostile not in sql and args[0] == hostile and "r.positive > 0" in sql
    sql, args = advocate_day_posts(hostile, lo, hi, ["twitter"], [hostile], [lo])
    _placeholders(sql, args)
    assert hostile not in sql and args[0] == [f"w:{hostile}"] and "$7 <> ALL (m.owned_watchlist_ids)" in sql


@pytest.mark.parametrize("owned,watchlist,condition", [
    ("true", "acme-air", "$2 = ANY(m.owned_watchlist_ids)"), ("false", "acme-air", "$2 <> ALL(m.owned_watchlist_ids)"),
    ("true", None, "cardinality(m.owned_watchlist_ids) > 0"), ("false", None, "cardinality(m.owned_watchlist_ids) = 0"),
])
def test_the_mention_search_keeps_owned_or_earned(owned: str, watchlist: str | None, condition: str) -> None:
    sql, args = mention_search(MentionFilter(watchlist=watchlist, owned=owned), "time", None, 10)
    _placeholders(sql, args)
    assert condition in sql
    any_sql = mention_search(MentionFilter(watchlist=watchlist), "time", None, 10)[0]
    assert "owned_watchlist_ids" not in any_sql.split(" FROM ")[1]  # any (the default): no condition


def test_a_listed_mention_is_marked_owned_for_the_watchlist_listed() -> None:
    assert owned_flag(["acme-air"], "acme-air") and not owned_flag(["globex"], "acme-air")
    assert owned_flag(["globex"], None) and not owned_flag([], None) and not owned_flag(None, "acme-air")
