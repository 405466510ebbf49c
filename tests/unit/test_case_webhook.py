"""The helpdesk webhook's request, without a network: a case event becomes the documented payload
(the topic record plus a ticket: title, priority level, status, requester, links, SLA deadline),
signed with Standard Webhooks headers whose webhook-id is the event id."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from earful.core.signing import verify
from earful.storage.case_webhook import case_body, case_payload, case_url, priority_level, ticket_of, ticket_title
from earful.storage.cases import EVENTS, STATES, event_row
from earful.storage.signed_webhook import message_id, webhook_headers

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "case_event.avsc").read_text(encoding="utf-8"))
UTC = timezone.utc
OPENED = datetime(2026, 11, 6, 16, 30, tzinfo=UTC)
DUE = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)
WARN = datetime(2026, 11, 9, 9, 30, tzinfo=UTC)
BASE = "https://earful.example.com/"
SECRET = "whsec_aGVscGRlc2stc2VjcmV0"
TEXT = "@AcmeAirHelp where is my bag? Flight AC123 landed 2 hours ago and nobody at the desk knows"


def row(event: str = "opened", **given: Any) -> dict[str, Any]:
    """A `case_events` row as the webhook's query reads it: the event, and the case's and mention's columns."""
    case = {"case_id": "acme-air:twitter:1890412233", "watchlist_id": "acme-air", "source": "twitter",
            "source_id": "1890412233", "mention_id": uuid.UUID("8b0d5c3e-4f62-5a57-9a0e-2d7c6f1b9a44"),
            "thread_id": "1890400001", "author_handle": "jane_flies", "state": "assigned", "owner": "ann", "priority": 45,
            "priority_reasons": ["reach: 12400 followers +20", "negativity: negative sentiment +15", "risk: complaint +10"],
            "opened_at": OPENED, "deadline_at": DUE, "warn_at": WARN, "answered_at": None, "version": 1}
    joined = {"id": 1, "kind": "question", "author_followers": 12400, "risk_tags": ["complaint", "customer_question"],
              "mention_text": TEXT, "mention_title": None, "mention_url": "https://x.com/jane_flies/status/1890412233",
              "mention_lang": "en", "mention_author_name": "Jane Doe"}
    case.update({k: v for k, v in given.items() if k in case})
    out = {**event_row(case, event, occurred_at=OPENED + timedelta(seconds=1.25), actor="stream"), **joined}
    out.update({k: v for k, v in given.items() if k not in case})
    return out


def documented_example() -> dict[str, Any]:
    """The JSON example of docs/care.md's helpdesk webhook section."""
    text = (ROOT / "docs" / "care.md").read_text(encoding="utf-8")
    section = text[text.index("## Helpdesk webhook"):]
    match = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert match, "docs/care.md has no JSON example under 'Helpdesk webhook'"
    return dict(json.loads(match.group(1)))


def test_the_documented_example_is_what_the_code_sends() -> None:
    assert json.loads(case_body(row(), BASE)) == documented_example()


def test_data_is_the_topic_record_plus_what_a_ticket_needs() -> None:
    payload = case_payload(row())
    data = payload["data"]
    assert payload["type"] == "case.opened" and payload["timestamp"] == OPENED + timedelta(seconds=1.25)
    assert set(data) == {f["name"] for f in SCHEMA["fields"]} | {"kind", "version", "reason", "mention", "ticket"}
    sent = json.loads(case_body(row()))["data"]
    assert (sent["opened_at"], sent["deadline_at"], sent["answered_at"]) == (
        "2026-11-06T16:30:00.000Z", "2026-11-09T10:00:00.000Z", None)
    assert sent["event_id"] == "acme-air:twitter:1890412233:1" and sent["mention_id"] == "8b0d5c3e-4f62-5a57-9a0e-2d7c6f1b9a44"


@pytest.mark.parametrize(("priority", "level"), [(0, "low"), (24, "low"), (25, "normal"), (49, "normal"), (50, "high"),
                                                 (74, "high"), (75, "urgent"), (100, "urgent")])
def test_priority_levels_are_quarters_of_the_scale(priority: int, level: str) -> None:
    assert priority_level(priority) == level
    assert ticket_of(row(priority=priority))["priority"] == level


def test_every_event_and_state_maps() -> None:
    statuses = {state: ticket_of(row(state=state))["status"] for state in STATES}
    assert statuses == {"open": "open", "assigned": "open", "escalated": "escalated", "answered": "solved",
                        "dismissed": "closed"}
    assert [case_payload(row(e))["type"] for e in EVENTS] == [f"case.{e}" for e in EVENTS]


def test_the_title_names_kind_author_and_question_within_150_characters() -> None:
    assert ticket_title("question", "jane", "twitter", "@AcmeAirHelp  @AcmeAir where\nis my bag?") == (
        "Question from @jane on twitter: where is my bag?")
    assert ticket_title("complaint", None, "rss", "Late again") == "Complaint on rss: Late again"
    assert ticket_title("question", "jane", "twitter", None) == "Question from @jane on twitter"
    long = ticket_title("question", "jane", "twitter", "why " * 100)
    assert len(long) <= 150 and long.endswith(" why…") and len(long) > 140  # cut at a space
    unbroken = ticket_title("question", "jane", "twitter", "x" * 300)
    assert len(unbroken) == 150 and unbroken.endswith("xx…")


def test_requester_link_and_deadline() -> None:
    ticket = ticket_of(row(), BASE)
    assert ticket["requester"] == {"name": "Jane Doe", "handle": "jane_flies", "source": "twitter",
                                   "external_id": "twitter:jane_flies", "profile_url": "https://x.com/jane_flies",
                                   "followers": 12400}
    assert (ticket["link"], ticket["due_at"], ticket["warn_at"], ticket["assignee"]) == (
        "https://x.com/jane_flies/status/1890412233", DUE, WARN, "ann")
    assert ticket["case_url"] == "https://earful.example.com/v1/cases/acme-air:twitter:1890412233"
    assert ticket["tags"] == ["earful", "acme-air", "twitter", "question", "complaint", "customer_question"]
    assert "Priority 45/100 (normal): reach: 12400 followers +20;" in ticket["description"]
    mastodon = ticket_of(row(source="mastodon", author_handle="Jane@Mastodon.Social", mention_author_name=None))
    assert mastodon["requester"]["name"] == "Jane@Mastodon.Social"
    assert mastodon["requester"]["external_id"] == "mastodon:jane@mastodon.social"
    assert mastodon["requester"]["profile_url"] == "https://Mastodon.Social/@Jane"


def test_a_case_without_sla_owner_handle_or_stored_post() -> None:
    bare = row(deadline_at=None, warn_at=None, owner=None, state="open", author_handle=None, mention_text=None,
               mention_url=None, mention_author_name=None, kind="complaint", risk_tags=[])
    payload = case_payload(bare)
    ticket = payload["data"]["ticket"]
    assert payload["data"]["mention"] is None and payload["data"]["owner"] is None
    assert (ticket["due_at"], ticket["assignee"], ticket["link"], ticket["case_url"]) == (None, None, None, None)
    assert ticket["requester"] == {"name": None, "handle": None, "source": "twitter", "external_id": None,
                                   "profile_url": None, "followers": 12400}
    assert ticket["title"] == "Complaint on twitter"
    assert "(the post's text is not stored)" in ticket["description"] and "No response SLA" in ticket["description"]
    assert json.loads(case_body(bare))["data"]["ticket"]["due_at"] is None


def test_case_urls_are_quoted_under_the_base() -> None:
    assert case_url(None, "a:b:c") is None
    assert case_url("https://e.example/earful", "acme:rss:https://x.example/a b?c") == (
        "https://e.example/earful/v1/cases/acme:rss:https:%2F%2Fx.example%2Fa%20b%3Fc")


def test_the_request_is_signed_and_its_id_is_the_event_id() -> None:
    body = case_body(row())
    first = webhook_headers("acme-air:twitter:1890412233:1", body, SECRET, now=1_800_000_000)
    again = webhook_headers("acme-air:twitter:1890412233:1", body, SECRET, now=1_800_000_060)
    assert first["webhook-id"] == again["webhook-id"] == "acme-air:twitter:1890412233:1"  # the idempotency key
    assert first["webhook-timestamp"] != again["webhook-timestamp"]
    assert verify(SECRET, first, body, now=1_800_000_010) == "acme-air:twitter:1890412233:1"
    assert "webhook-signature" not in webhook_headers("x:1", body, None)


@pytest.mark.parametrize("event_id", ["acme-air:mastodon:https://mastodon.social/users/jane/statuses/1:2",
                                      "acme-air:rss:tag:example.org,2026:50%-off:1", "acme-air:bluesky:at://did:web:ü.example/p/3:1"])
def test_ids_a_header_or_the_signature_cannot_carry_are_percent_encoded(event_id: str) -> None:
    body = b"{}"
    headers = webhook_headers(event_id, body, SECRET, now=1_800_000_000)
    msg_id = verify(SECRET, headers, body, now=1_800_000_000)  # refuses ids with a '.'
    assert msg_id.isascii() and "." not in msg_id and unquote(msg_id) == event_id
    assert message_id("acme-air:twitter:1890412233:7") == "acme-air:twitter:1890412233:7"
    assert message_id(str(uuid.UUID(int=5))) == str(uuid.UUID(int=5))
