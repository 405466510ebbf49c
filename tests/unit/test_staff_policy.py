"""Staff and policy, pure parts: the policy file (the shipped sample and every refusal), the three
kinds of rules with their evidence, who the staff are, flags only on staff posts, the records of
earful.policy_flags.v1, and the policy reloaded when its file changes."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from earful.core.codec import AvroCodec, SchemaStore
from earful.core.errors import ConfigError
from earful.core.settings import PACKAGE_DIR
from earful.storage.policy_flags import COLUMNS, flag_id, flag_record, staff_flags
from earful.storage.signals import SignalSource
from earful.storage.writer import mention_row
from earful.watchlists import WatchlistSet
from earful.watchlists.model import Watchlist
from earful.watchlists.policy import Policy, Staff, load_policy, parse_policy
from tests.support import enriched_record, raw_record

UTC = timezone.utc
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SAMPLE = PACKAGE_DIR / "sample" / "policy.yaml"
T0 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
POLICY = parse_policy({"rules": [
    {"id": "confidential", "kind": "confidential", "terms": ["Project Falcon", "internal only", "Q3 numbers before"]},
    {"id": "legal", "kind": "legal", "severity": "critical", "terms": ["guaranteed returns", "cure", "insider"]},
    {"id": "disclosure", "kind": "missing_disclosure", "shop_sites": ["shop.acme-air.example"]},
]})
STAFF_LIST = [
    Watchlist("acme-staff", "Acme staff", "staff", handles=("sam_at_acme", "twitter:PilotPat", "id:did:plc:rita"),
              query="Acme"),
    Watchlist("globex-staff", "Globex staff", "staff", handles=("sam_at_acme",), query="Globex"),
    Watchlist("acme-air", "Acme Air", "brand", handles=("AcmeAir",), query="Acme"),
]
STAFF = Staff.of(STAFF_LIST)


def flagged(text: str, policy: Policy = POLICY, **kwargs: Any) -> dict[str, list[str]]:
    """rule id → the evidence texts of the flags of `text`."""
    return {f.rule_id: [e.text for e in f.evidence] for f in policy.evaluate(text, **kwargs)}


# --- the three kinds of rules -----------------------------------------------------------------


def test_confidential_terms_are_found_with_their_spans() -> None:
    text = "Can't say much about PROJECT falcon yet, it's internal-only! Q3 numbers before Friday"
    (flag,) = POLICY.evaluate(text)
    assert (flag.rule_id, flag.kind, flag.severity) == ("confidential", "confidential", "warning")
    assert [(e.text, text[e.start:e.end]) for e in flag.evidence] == [
        ("PROJECT falcon", "PROJECT falcon"), ("internal-only", "internal-only"), ("Q3 numbers before", "Q3 numbers before")]
    assert [e.term for e in flag.evidence] == ["Project Falcon", "internal only", "Q3 numbers before"]


def test_terms_are_whole_words() -> None:
    assert flagged("Project Falconry club, a secure and curious insiders' guide") == {}
    assert flagged("Project. Falcon") == {}  # a phrase does not span two sentences


def test_legal_terms() -> None:
    assert flagged("This tea is the cure, guaranteed returns on your health") == {"legal": ["cure", "guaranteed returns"]}
    assert flagged("I'm an insider, trust me") == {"legal": ["insider"]}


@pytest.mark.parametrize(("text", "url", "evidence"), [
    ("Use code FALL20 for 20% off Acme Air flights!", None, ["Use code"]),
    ("Autumn sale: https://shop.acme-air.example/sale", None, ["https://shop.acme-air.example/sale"]),
    ("Great deals today, shop now at https://www.shop.acme-air.example", None, ["shop now", "https://www.shop.acme-air.example"]),
    ("Look at this", "https://shop.acme-air.example/x", ["https://shop.acme-air.example/x"]),  # the post's own link
])
def test_promotion_without_disclosure_is_flagged(text: str, url: str | None, evidence: list[str]) -> None:
    assert flagged(text, url=url) == {"disclosure": evidence}


@pytest.mark.parametrize("text", [
    "Use code FALL20 for 20% off Acme Air flights! #ad",
    "Use code FALL20 for 20% off! #Employee",
    "I work at Acme Air: shop now https://shop.acme-air.example",
    "#sponsored use my code SAM10",
    "Great trip with https://other-shop.example/sale",  # not the brand's shop
    "Nice flight today",
])
def test_disclosed_or_not_promotional_is_not_flagged(text: str) -> None:
    assert flagged(text) == {}


def test_own_promotional_and_disclosure_lists() -> None:
    policy = parse_policy({"rules": [{"id": "d", "kind": "missing_disclosure", "promotional": ["giveaway"],
                                      "disclosures": ["#acmepartner"]}]})
    assert flagged("Big giveaway this week!", policy) == {"d": ["giveaway"]}
    assert flagged("Big giveaway this week! #AcmePartner", policy) == {}
    assert flagged("Use code X", policy) == {}  # the defaults no longer apply


def test_a_rule_can_be_a_query_and_can_name_its_staff_watchlists() -> None:
    policy = parse_policy({"rules": [{"id": "merger", "kind": "confidential", "query": "merger NEAR/5 (SkyJet OR Globex)",
                                      "watchlists": ["acme-staff"]}]})
    assert flagged("the merger with SkyJet is close", policy, staff_watchlists=["acme-staff"]) == {"merger": ["merger", "SkyJet"]}
    assert flagged("the merger with SkyJet is close", policy, staff_watchlists=["globex-staff"]) == {}
    assert flagged("a merger, after many months of work, then SkyJet", policy, staff_watchlists=["acme-staff"]) == {}


def test_matching_stays_linear_on_hostile_text() -> None:
    """Texts that make backtracking patterns explode: near-misses of every phrase, repeated."""
    hostile = ("Project " * 40_000) + ("internal " * 40_000) + ("Q3 numbers " * 30_000) + "x" * 100_000
    started = time.perf_counter()
    assert flagged(hostile) == {}
    assert time.perf_counter() - started < 10.0  # linear: well under a second here; a backtracking regex takes minutes


# --- the file ---------------------------------------------------------------------------------


def test_the_sample_policy_loads_and_flags() -> None:
    policy = load_policy(SAMPLE)
    kinds = {r.kind for r in policy.rules}
    assert kinds == {"confidential", "legal", "missing_disclosure"}
    assert set(flagged("Project Falcon is a risk-free investment, use code SAM", policy)) == {
        "confidential-projects", "legal-claims", "disclosure"}
    assert flagged("Loving my job at Acme Air", policy) == {}


@pytest.mark.parametrize(("data", "message"), [
    ({"rules": [{"id": "a", "kind": "gossip", "terms": ["x"]}]}, "rules[0].kind"),
    ({"rules": [{"id": "a", "kind": "confidential"}]}, "needs terms or a query"),
    ({"rules": [{"id": "a", "kind": "confidential", "terms": ["x"], "query": "x"}]}, "needs terms or a query"),
    ({"rules": [{"id": "a", "kind": "legal", "terms": ["  "]}]}, "terms needs at least one non-blank term"),
    ({"rules": [{"id": "a", "kind": "legal", "terms": ["x"], "shop_sites": ["shop.example"]}]}, "takes terms or query"),
    ({"rules": [{"id": "a", "kind": "missing_disclosure", "terms": ["x"]}]}, "not terms or query"),
    ({"rules": [{"id": "a", "kind": "missing_disclosure", "shop_sites": ["not a site"]}]}, "is not a domain"),
    ({"rules": [{"id": "a", "kind": "confidential", "query": "NOT secret"}]}, "query: column"),
    ({"rules": [{"id": "a", "kind": "legal", "terms": ["x"]}, {"id": "a", "kind": "legal", "terms": ["y"]}]}, "used twice"),
    ({"rules": [{"id": "Bad Id", "kind": "legal", "terms": ["x"]}]}, "rules[0].id"),
    ({"rules": [{"id": "a", "kind": "legal", "terms": ["x"], "colour": "red"}]}, "unknown key"),
    ({"policy": []}, "unknown key"),
    (["not", "a", "mapping"], "expected a mapping"),
])
def test_a_bad_policy_is_refused_saying_where(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^policy\.yaml") as err:
        parse_policy(data, "policy.yaml")
    assert message in str(err.value)


def test_an_empty_file_is_an_empty_policy_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_policy(empty).rules == ()
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read the policy file"):
        load_policy(broken)
    with pytest.raises(ConfigError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.yaml")


# --- staff ------------------------------------------------------------------------------------


def test_staff_are_the_accounts_staff_watchlists_list() -> None:
    assert STAFF.watchlists_of("twitter", "Sam_at_Acme", None) == ("acme-staff", "globex-staff")
    assert STAFF.watchlists_of("twitter", "pilotpat", None) == ("acme-staff",)
    assert STAFF.watchlists_of("mastodon", "pilotpat", None) == ()  # listed for twitter only
    assert STAFF.watchlists_of("bluesky", "rita.bsky.social", "did:plc:rita") == ("acme-staff",)
    assert STAFF.watchlists_of("twitter", "AcmeAir", None) == ()  # a brand account is not staff
    assert STAFF.watchlists_of("twitter", None, None) == ()
    assert not Staff.of([w for w in STAFF_LIST if w.kind != "staff"])


def row(source_id: str, text: str, handle: str | None, **author: Any) -> tuple[Any, ...]:
    raw = raw_record(source_id, text, T0)
    raw["author"] = {"id": None, "handle": handle, "display_name": "Sam Lee", "followers": 50, **author}
    return mention_row(enriched_record(raw, ["acme-air"]))


def test_only_staff_posts_are_flagged() -> None:
    text = "Project Falcon lands next spring"
    rows = [row("s1", text, "sam_at_acme"), row("c1", text, "a_customer"), row("b1", text, "AcmeAir")]
    (flag,) = staff_flags(rows, POLICY, STAFF)
    assert set(flag) == set(COLUMNS)
    assert (flag["rule_id"], flag["kind"], flag["author_handle"], flag["source_id"]) == (
        "confidential", "confidential", "sam_at_acme", "s1")
    assert flag["staff_watchlist_ids"] == ["acme-staff", "globex-staff"] and flag["watchlist_ids"] == ["acme-air"]
    assert flag["evidence"] == [{"text": "Project Falcon", "start": 0, "end": 14, "term": "Project Falcon"}]
    assert flag["flag_id"] == flag_id("confidential", flag["mention_id"])
    assert staff_flags(rows, POLICY, STAFF) == [flag]  # the same input gives the same flags
    assert staff_flags(rows, Policy(), STAFF) == [] and staff_flags(rows, POLICY, Staff({})) == []


def test_a_staff_post_breaking_several_rules_has_one_flag_per_rule() -> None:
    flags = staff_flags([row("s2", "insider tip: Project Falcon, use code SAM", "sam_at_acme")], POLICY, STAFF)
    assert sorted(f["rule_id"] for f in flags) == ["confidential", "disclosure", "legal"]
    assert len({f["flag_id"] for f in flags}) == 3


def test_flag_records_fit_the_schema() -> None:
    (flag,) = staff_flags([row("s3", "Q3 numbers before the call", "pilotpat")], POLICY, STAFF)
    stored = {**flag, "id": 1, "detected_at": T0, "published_at": None}
    record = flag_record(stored)
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store.current("policy_flag"), store)
    assert codec.decode(codec.encode(record)) == record
    assert record["author"] == {"handle": "pilotpat", "id": None, "name": "Sam Lee"}
    assert uuid.UUID(record["flag_id"]) == flag["flag_id"]


# --- the rules in force -----------------------------------------------------------------------


def test_the_policy_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules: [{id: a, kind: confidential, terms: [Falcon]}]\n", encoding="utf-8")
    watchlists = WatchlistSet(STAFF_LIST)
    source = SignalSource(lambda: watchlists, policy_file=path)
    rules = source.current()
    assert [r.id for r in rules.policy.rules] == ["a"] and rules.staff.watchlists_of("x", "sam_at_acme", None)
    assert rules.kinds["acme-staff"] == "staff" and source.current() is rules  # nothing changed: nothing rebuilt

    path.write_text("rules: [{id: b, kind: legal, terms: [cure]}]\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert [r.id for r in source.current().policy.rules] == ["b"]

    path.write_text("rules: [{id: c, kind: nonsense}]\n", encoding="utf-8")  # a broken edit: the last good one stays
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000_000))
    assert [r.id for r in source.current().policy.rules] == ["b"]


def test_a_bad_policy_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules: [{id: a, kind: confidential}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs terms or a query"):
        SignalSource(lambda: WatchlistSet([]), policy_file=path)
