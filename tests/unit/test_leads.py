"""Sales leads, pure parts: who is a prospect, one lead per author, watchlist and period, the
records of earful.leads.v1 (exact against the schema), and the CRM webhook's request."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from earful.core.codec import AvroCodec, AvroSchema, SchemaStore
from earful.core.signing import verify
from earful.enrichment.rules import risk_tags
from earful.storage.lead_webhook import webhook_body, webhook_headers
from earful.storage.leads import (
    MAX_EVIDENCE,
    PERIOD_EPOCH,
    LeadEvidence,
    LeadState,
    author_key,
    event_id,
    events,
    from_json,
    lead_evidence,
    lead_id,
    period_of,
    profile_url,
    to_json,
)
from earful.storage.writer import mention_row, with_owned
from earful.watchlists.model import Watchlist
from earful.watchlists.owned import OwnedHandles
from tests.support import enriched_record, raw_record

UTC = timezone.utc
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)  # a Tuesday
WATCHLISTS = [
    Watchlist("acme-air", "Acme Air", "brand", handles=("AcmeAir", "AcmeAirHelp"), query="Acme"),
    Watchlist("skyjet", "SkyJet", "competitor", handles=("SkyJet",), query="SkyJet"),
    Watchlist("acme-staff", "Acme staff", "staff", handles=("sam_at_acme",), query="Acme"),
]
ACCOUNTS = OwnedHandles.of(WATCHLISTS)
KINDS = {w.id: w.kind for w in WATCHLISTS}


def row(source_id: str, text: str, *, handle: str | None = "jdoe", author_id: str | None = "u1",
        watchlists: tuple[str, ...] = ("acme-air",), at: datetime = T0, source: str = "twitter",
        name: str | None = "Jane Doe", **mention: Any) -> tuple[Any, ...]:
    """A stored mention row as the writer hands it over, tagged by the real enrichment rules."""
    raw = raw_record(source_id, text, at, source=source)
    raw["author"] = {"id": author_id, "handle": handle, "display_name": name, "followers": 120}
    raw.update(mention)
    record = enriched_record(raw, list(watchlists))
    record["risks"] = risk_tags(text)
    return with_owned(mention_row(record), ACCOUNTS)


def evidence(*rows: tuple[Any, ...], days: int = 7) -> list[LeadEvidence]:
    return lead_evidence(rows, period_days=days, accounts=ACCOUNTS, kinds=KINDS)


# --- periods and ids --------------------------------------------------------------------------


def test_periods_are_fixed_weeks_from_a_monday() -> None:
    assert PERIOD_EPOCH.weekday() == 0
    start, end = period_of(T0, 7)
    assert (start, end) == (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC))
    assert period_of(start, 7) == (start, end)  # the start belongs to the period
    assert period_of(end, 7)[0] == end  # the end does not
    assert period_of(end - timedelta(microseconds=1), 7) == (start, end)
    assert period_of(T0.astimezone(timezone(timedelta(hours=-8))), 7) == (start, end)  # any zone, same instant
    assert period_of(T0, 1) == (datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))
    start30, end30 = period_of(T0, 30)
    assert start30 <= T0 < end30 and end30 - start30 == timedelta(days=30)


def test_lead_and_event_ids_are_deterministic_and_distinct() -> None:
    start = period_of(T0, 7)[0]
    one = lead_id("acme-air", "twitter", "jdoe", start)
    assert one == lead_id("acme-air", "twitter", "jdoe", start.astimezone(timezone(timedelta(hours=2))))
    others = {lead_id("skyjet", "twitter", "jdoe", start), lead_id("acme-air", "mastodon", "jdoe", start),
              lead_id("acme-air", "twitter", "jdoe2", start), lead_id("acme-air", "twitter", "jdoe", start + timedelta(days=7))}
    assert one not in others and len(others) == 4
    mid = uuid.uuid4()
    assert event_id(one, mid) == event_id(one, str(mid)) != event_id(one, uuid.uuid4())


def test_author_keys_and_profile_links() -> None:
    assert author_key("@JDoe", "1") == "jdoe"
    assert author_key(None, "77") == "id:77"
    assert author_key(None, None) is None
    assert profile_url("twitter", "JDoe") == "https://x.com/JDoe"
    assert profile_url("bluesky", "mara.bsky.social") == "https://bsky.app/profile/mara.bsky.social"
    assert profile_url("mastodon", "rita@social.example") == "https://social.example/@rita"
    assert profile_url("mastodon", "rita") is None  # no instance: no link
    assert profile_url("reddit", "u/someone") == "https://www.reddit.com/user/someone"
    assert profile_url("news", "desk") is None
    assert profile_url("twitter", None) is None


# --- who is a prospect ------------------------------------------------------------------------


def test_a_purchase_intent_post_by_a_person_is_lead_evidence_with_its_span() -> None:
    text = "Thinking of switching to Acme Air for my work trips"
    (e,) = evidence(row("a1", text))
    assert (e.watchlist_id, e.source, e.author_key, e.author_handle, e.author_name) == (
        "acme-air", "twitter", "jdoe", "jdoe", "Jane Doe")
    assert text[e.start:e.end] == e.evidence == "Thinking of switching"
    assert e.period_start == datetime(2026, 11, 2, tzinfo=UTC) and e.profile_url == "https://x.com/jdoe"
    assert e.lead_id == lead_id("acme-air", "twitter", "jdoe", e.period_start)


def test_one_evidence_per_matched_watchlist() -> None:
    found = evidence(row("a2", "ready to book: Acme Air or SkyJet?", watchlists=("acme-air", "skyjet")))
    assert sorted(e.watchlist_id for e in found) == ["acme-air", "skyjet"]
    assert len({e.lead_id for e in found}) == 2


@pytest.mark.parametrize(("why", "kwargs"), [
    ("the brand's own account", {"handle": "AcmeAirHelp"}),
    ("a competitor's account", {"handle": "skyjet"}),
    ("staff", {"handle": "Sam_at_Acme"}),
    ("a news source", {"source": "news"}),
    ("a feed item", {"connector": "feed"}),
    ("an outlet's handle", {"handle": "acmedailynews"}),
    ("an outlet's name", {"name": "Metro Wire"}),
    ("a repost", {"reposted_from": "orig-1"}),
    ("nobody to reach", {"handle": None, "author_id": None}),
    ("only the staff watchlist matched", {"watchlists": ("acme-staff",)}),
])
def test_not_a_prospect(why: str, kwargs: dict[str, Any]) -> None:
    assert evidence(row("n1", "I want to buy an Acme Air gift card", **kwargs)) == [], why


def test_no_intent_no_lead() -> None:
    assert evidence(row("n2", "Acme Air lost my bag again")) == []


def test_an_author_with_only_an_account_id_is_keyed_by_it() -> None:
    (e,) = evidence(row("a3", "where can I buy Acme Air miles", handle=None, author_id="88-301", name=None))
    assert e.author_key == "id:88-301" and e.profile_url is None


def test_the_same_input_gives_the_same_evidence() -> None:
    rows = [row(f"s{i}", "take my money, Acme Air", at=T0 + timedelta(hours=i)) for i in range(3)]
    assert evidence(*rows) == evidence(*rows)


# --- one lead per author per period -----------------------------------------------------------


def states_for(found: list[LeadEvidence]) -> dict[uuid.UUID, LeadState]:
    """Leads as record_leads finds them right after inserting the new ones (no evidence yet)."""
    out = {}
    for e in found:
        out.setdefault(e.lead_id, LeadState(e.lead_id, e.watchlist_id, e.source, e.author_key, e.period_start,
                                            e.period_end, e.author_id, e.author_handle, e.author_name,
                                            e.author_followers, e.profile_url))
    return out


def test_a_repeat_within_the_period_adds_evidence_to_the_same_lead() -> None:
    first = row("r1", "thinking of buying an Acme Air pass", at=T0)
    repeat = row("r2", "ok, going to buy the Acme Air pass", at=T0 + timedelta(days=2))
    found = evidence(first, repeat)
    assert len({e.lead_id for e in found}) == 1
    records = events(states_for(found), found, {found[0].lead_id}, T0 + timedelta(days=2, seconds=1))
    assert [r["event"] for r in records] == ["created", "evidence_added"]
    assert [r["mentions"] for r in records] == [1, 2]
    assert [len(r["evidence"]) for r in records] == [1, 2]
    assert records[1]["evidence"][1]["evidence"] == "going to buy"
    assert records[1]["first_mention_at"] == T0 and records[1]["last_mention_at"] == T0 + timedelta(days=2)
    assert len({r["event_id"] for r in records}) == 2
    assert {r["lead_id"] for r in records} == {str(found[0].lead_id)}


def test_the_next_period_is_a_new_lead() -> None:
    found = evidence(row("p1", "want to buy Acme Air miles", at=T0),
                     row("p2", "want to buy Acme Air miles", at=T0 + timedelta(days=7)))
    assert len({e.lead_id for e in found}) == 2
    records = events(states_for(found), found, {e.lead_id for e in found}, T0)
    assert [r["event"] for r in records] == ["created", "created"]


def test_a_longer_period_keeps_them_together() -> None:
    start, end = period_of(T0, 30)
    found = evidence(row("q1", "want to buy Acme Air miles", at=start),
                     row("q2", "want to buy Acme Air miles", at=start + timedelta(days=20)), days=30)
    assert len({e.lead_id for e in found}) == 1 and found[0].period_end == end


def test_a_lead_found_earlier_gets_evidence_added_and_keeps_its_count() -> None:
    (e,) = evidence(row("x2", "ready to buy from Acme Air", at=T0 + timedelta(hours=5)))
    state = states_for([e])[e.lead_id]
    state.mentions, state.first_mention_at, state.last_mention_at = 3, T0, T0 + timedelta(hours=1)
    state.evidence = [{"mention_id": str(uuid.uuid4()), "source_id": "old", "url": None, "created_at": T0, "text": "t",
                       "evidence": "t", "start": 0, "end": 1}]
    (record,) = events({e.lead_id: state}, [e], set(), T0)
    assert (record["event"], record["mentions"], len(record["evidence"])) == ("evidence_added", 4, 2)
    assert record["first_mention_at"] == T0


def test_a_record_carries_the_latest_evidence_only() -> None:
    rows = [row(f"m{i}", "take my money Acme Air", at=T0 + timedelta(minutes=i)) for i in range(MAX_EVIDENCE + 5)]
    found = evidence(*rows)
    last = events(states_for(found), found, {found[0].lead_id}, T0)[-1]
    assert last["mentions"] == MAX_EVIDENCE + 5 and len(last["evidence"]) == MAX_EVIDENCE
    assert last["evidence"][-1]["source_id"] == f"m{MAX_EVIDENCE + 4}"
    assert last["evidence"][0]["source_id"] == "m5"


def test_the_author_profile_is_the_latest_one() -> None:
    older = row("f1", "want to buy Acme Air miles", at=T0, name="Jane")
    newer = row("f2", "want to buy Acme Air miles", at=T0 + timedelta(hours=1), name="Jane D.")
    found = evidence(newer, older)
    last = events(states_for(found), found, {found[0].lead_id}, T0)[-1]
    assert last["author"]["name"] == "Jane D."


# --- records ----------------------------------------------------------------------------------


def lead_codec() -> AvroCodec:
    store = SchemaStore(SCHEMAS)
    return AvroCodec(store.current("lead"), store)


def test_records_fit_the_schema_and_survive_the_outbox() -> None:
    found = evidence(row("c1", "Where can I buy an Acme Air gift card?"),
                     row("c2", "Where can I buy an Acme Air gift card?", handle=None, author_id="9", name=None))
    records = events(states_for(found), found, {e.lead_id for e in found}, T0 + timedelta(seconds=1))
    codec = lead_codec()
    for record in records:
        stored = from_json(to_json(record))  # what the outbox keeps and publishes
        assert stored == record
        assert codec.decode(codec.encode(stored)) == record


def test_the_schema_example_is_what_the_code_writes() -> None:
    example = AvroSchema.from_file(SCHEMAS / "lead.avsc")
    names = {f["name"] for f in example.raw["fields"]}
    found = evidence(row("d1", "take my money Acme Air"))
    (record,) = events(states_for(found), found, {found[0].lead_id}, T0)
    assert set(record) == names


def test_the_webhook_request_is_signed_and_carries_the_record() -> None:
    found = evidence(row("w1", "ready to book Acme Air"))
    (record,) = events(states_for(found), found, {found[0].lead_id}, T0)
    stored = {"event_id": uuid.UUID(record["event_id"]), "event": record["event"], "record": to_json(record)}
    body = webhook_body(stored)
    payload = json.loads(body)
    assert payload["type"] == "lead.created" and payload["data"]["lead_id"] == record["lead_id"]
    assert payload["data"]["evidence"][0]["evidence"] == "ready to book"
    headers = webhook_headers(record["event_id"], body, "whsec_c2VjcmV0", now=1_800_000_000)
    assert verify("whsec_c2VjcmV0", headers, body, now=1_800_000_010) == record["event_id"]
    assert "webhook-signature" not in webhook_headers(record["event_id"], body, None)
