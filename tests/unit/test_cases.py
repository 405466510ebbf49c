"""Cases without a database: which mentions open one, the priority formula, valid transitions, the
event record against the schema, the care policies and the EARFUL_CARE_AGENTS setting."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest

from earful.core.errors import ConfigError
from earful.core.settings import load_settings, parse_care_agents
from earful.storage.api.cases import case_out
from earful.storage.cases import (
    CareBook,
    TransitionRefused,
    addressed_handles,
    base_priority,
    case_id,
    case_kind,
    event_record,
    event_row,
    negativity_points,
    priority,
    reach_points,
    risk_points,
    transition,
    waiting_points,
)
from earful.watchlists.model import parse_watchlist

UTC = timezone.utc
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "case_event.avsc").read_text(encoding="utf-8"))
OPENED = datetime(2026, 11, 6, 16, 30, tzinfo=UTC)
WARN = datetime(2026, 11, 9, 9, 30, tzinfo=UTC)
DUE = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)
HANDLES = frozenset({"acmeair", "acmeairhelp"})


# --- which mentions open a case ----------------------------------------------------------------------------


def kind(**given: Any) -> str | None:
    args: dict[str, Any] = {"question": False, "tags": (), "author_handle": "jane", "handles": HANDLES,
                            "addressed": frozenset(), "parent_author": None, **given}
    return case_kind(**args)


def test_a_question_is_always_a_case() -> None:
    assert kind(question=True) == "question"
    assert kind(question=True, tags=("complaint",)) == "question"


def test_a_complaint_needs_to_be_addressed_to_the_brand() -> None:
    assert kind(tags=("complaint",)) is None
    assert kind(tags=("complaint",), addressed=frozenset({"someoneelse"})) is None
    assert kind(tags=("complaint",), addressed=frozenset({"acmeairhelp"})) == "complaint"
    assert kind(tags=("complaint",), parent_author="AcmeAir") == "complaint"
    assert kind(tags=("complaint",), parent_author="@ACMEAIR") == "complaint"
    assert kind(tags=("complaint",), parent_author="bob") is None
    assert kind(tags=("reputational",), addressed=frozenset({"acmeair"})) is None  # not a complaint
    assert kind(tags=("complaint",), addressed=frozenset({"acmeair"}), author_handle="AcmeAirHelp") is None


def test_addressed_handles_are_the_mention_entities() -> None:
    entities = [{"text": "@AcmeAirHelp", "type": "mention"}, {"text": "#AcmeAir", "type": "hashtag"},
                {"text": "@Bob", "type": "mention"}]
    assert addressed_handles(entities) == frozenset({"acmeairhelp", "bob"})


def test_case_ids_name_watchlist_source_and_post() -> None:
    assert case_id("acme-air", "twitter", "189:0") == "acme-air:twitter:189:0"


# --- priority -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("followers", "points"), [(None, 0), (0, 0), (9, 5), (99, 10), (9999, 20), (10**6, 30),
                                                    (10**9, 30), (-5, 0)])
def test_reach_is_logarithmic_and_capped(followers: int | None, points: int) -> None:
    assert round(reach_points(followers)) == points


def test_negativity_counts_only_negative_mentions_more_for_stronger_ones() -> None:
    assert negativity_points("negative", 0.0) == 15 and negativity_points("negative", -1.0) == 25
    assert negativity_points("negative", -0.5) == 20 and negativity_points("negative", 0.4) == 15
    assert negativity_points("neutral", -0.9) == 0 and negativity_points(None, None) == 0
    assert negativity_points("positive", 1.0) == 0


def test_risk_takes_the_worst_tag() -> None:
    assert risk_points(["customer_question"]) == (0, None)
    assert risk_points(["complaint", "operational"]) == (10, "complaint")
    assert risk_points(["complaint", "legal_privacy", "reputational"]) == (25, "legal_privacy")


def test_base_priority_and_its_reasons() -> None:
    assert base_priority(12400, "negative", 0.0, ["customer_question", "complaint"]) == (45, [
        "reach: 12400 followers +20", "negativity: negative sentiment +15", "risk: complaint +10"])
    assert base_priority(None, "positive", 0.8, ["customer_question"]) == (0, [])
    assert base_priority(10**7, "negative", -1.0, ["regulatory"])[0] == 80


def test_waiting_adds_points_at_the_warning_and_the_deadline() -> None:
    assert waiting_points("open", OPENED, WARN, DUE, WARN - timedelta(seconds=1)) == (0, None)
    assert waiting_points("assigned", OPENED, WARN, DUE, WARN)[0] == 10
    assert waiting_points("escalated", OPENED, WARN, DUE, DUE)[0] == 20
    assert waiting_points("answered", OPENED, WARN, DUE, DUE + timedelta(days=9)) == (0, None)
    assert waiting_points("dismissed", OPENED, WARN, DUE, DUE) == (0, None)
    # Without an SLA: 4 h and 24 h.
    assert waiting_points("open", OPENED, None, None, OPENED + timedelta(hours=3, minutes=59))[0] == 0
    assert waiting_points("open", OPENED, None, None, OPENED + timedelta(hours=4))[0] == 10
    assert waiting_points("open", OPENED, None, None, OPENED + timedelta(hours=24))[0] == 20


def test_priority_is_base_plus_waiting_at_most_100() -> None:
    p = priority(12400, "negative", 0.0, ["complaint"], state="open", opened_at=OPENED, warn_at=WARN, deadline_at=DUE,
                 now=DUE)
    assert (p.value, p.base, p.reasons[-1]) == (65, 45, "waiting: past the SLA deadline +20")
    worst = priority(10**8, "negative", -1.0, ["legal_privacy"], state="open", opened_at=OPENED, warn_at=None,
                     deadline_at=None, now=OPENED + timedelta(days=3))
    assert worst.value == 100 and worst.base == 80
    # The same input gives the same answer.
    assert priority(12400, "negative", 0.0, ["complaint"], state="open", opened_at=OPENED, warn_at=WARN,
                    deadline_at=DUE, now=DUE) == p


# --- transitions ------------------------------------------------------------------------------------------------

VALID = [
    ("open", None, "assign", "ann", ("assigned", "assigned", "ann")),
    ("assigned", "ann", "assign", "bob", ("assigned", "assigned", "bob")),
    ("escalated", "ann", "assign", "bob", ("assigned", "escalated", "bob")),
    ("open", None, "answer", None, ("answered", "answered", None)),
    ("escalated", "ann", "answer", None, ("answered", "answered", "ann")),
    ("assigned", "ann", "dismiss", None, ("dismissed", "dismissed", "ann")),
    ("open", None, "escalate", None, ("escalated", "escalated", None)),
    ("assigned", "ann", "escalate", None, ("escalated", "escalated", "ann")),
    ("answered", "ann", "reopen", None, ("reopened", "assigned", "ann")),
    ("dismissed", None, "reopen", None, ("reopened", "open", None)),
]
REFUSED = [
    ("assigned", "ann", "assign", "ann"), ("answered", "ann", "assign", "bob"), ("dismissed", None, "assign", "bob"),
    ("answered", None, "answer", None), ("dismissed", None, "answer", None), ("answered", None, "dismiss", None),
    ("escalated", None, "escalate", None), ("answered", None, "escalate", None), ("open", None, "reopen", None),
    ("assigned", "ann", "reopen", None), ("escalated", None, "reopen", None),
]


@pytest.mark.parametrize(("state", "owner", "action", "new_owner", "expected"), VALID)
def test_valid_transitions(state: str, owner: str | None, action: str, new_owner: str | None,
                           expected: tuple[str, str, str | None]) -> None:
    change = transition(state, owner, action, new_owner)
    assert (change.event, change.state, change.owner) == expected


@pytest.mark.parametrize(("state", "owner", "action", "new_owner"), REFUSED)
def test_invalid_transitions_are_refused(state: str, owner: str | None, action: str, new_owner: str | None) -> None:
    with pytest.raises(TransitionRefused):
        transition(state, owner, action, new_owner)


def test_programming_errors_are_not_conflicts() -> None:
    with pytest.raises(ValueError):
        transition("open", None, "assign", None)
    with pytest.raises(ValueError):
        transition("open", None, "delete")
    with pytest.raises(ValueError):
        transition("closed", None, "answer")


# --- events ---------------------------------------------------------------------------------------------------------


def case(**given: Any) -> dict[str, Any]:
    return {"case_id": "acme-air:twitter:q1", "watchlist_id": "acme-air", "source": "twitter", "source_id": "q1",
            "mention_id": "8b0d5c3e-4f62-5a57-9a0e-2d7c6f1b9a44", "kind": "question", "thread_id": None,
            "author_handle": "jane", "author_followers": 12400, "sentiment": "negative", "sentiment_score": 0.0,
            "risk_tags": ["complaint", "customer_question"], "state": "assigned", "owner": "ann", "priority": 65,
            "priority_base": 45, "priority_reasons": json.dumps(["reach: 12400 followers +20"]), "sla_s": 7200,
            "opened_at": OPENED, "deadline_at": DUE, "warn_at": WARN, "answered_at": None,
            "answered_by_source_id": None, "first_reply_at": None, "reason": None, "updated_at": OPENED,
            "version": 3, **given}


def test_event_rows_are_named_by_case_and_version_and_encode_with_the_schema() -> None:
    row = event_row(case(), "assigned", occurred_at=OPENED + timedelta(seconds=5), actor="agent")
    assert row["event_id"] == "acme-air:twitter:q1:3" and row["priority_reasons"] == ["reach: 12400 followers +20"]
    record = event_record(row)
    assert record["schema_version"] == 1 and set(record) == {f["name"] for f in SCHEMA["fields"]}
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), record)
    out.seek(0)
    back = fastavro.schemaless_reader(out, fastavro.parse_schema(SCHEMA))
    assert back == {**record, "mention_id": "8b0d5c3e-4f62-5a57-9a0e-2d7c6f1b9a44"}
    assert event_record(row) == record  # same row, same record


def test_an_event_without_an_sla_or_owner_encodes_nulls() -> None:
    row = event_row(case(owner=None, deadline_at=None, warn_at=None, state="open", author_handle=None), "opened",
                    occurred_at=OPENED, actor=None)
    record = event_record(row)
    fastavro.validate(record, fastavro.parse_schema(SCHEMA), raise_errors=True)
    assert (record["owner"], record["deadline_at"], record["actor"]) == (None, None, None)


# --- policies and settings ----------------------------------------------------------------------------------------


def test_care_policies_come_from_the_watchlists_and_the_setting() -> None:
    acme = parse_watchlist({"id": "acme-air", "terms": ["Acme Air"], "handles": ["@AcmeAirHelp"], "response_sla_s": 7200,
                            "care": {"business_hours": {"timezone": "Europe/London", "days": {"mon-fri": "09:00-17:30"}},
                                     "warn_at": 0.5}}, "t")
    plain = parse_watchlist({"id": "globex", "terms": ["Globex"]}, "t")
    book = CareBook.of([acme, plain], {"acme-air": ("ann", "bob"), "unknown": ("x",)})
    p = book.policy("acme-air")
    assert p.handles == frozenset({"acmeairhelp"}) and p.agents == ("ann", "bob") and p.warn_at == 0.5
    assert p.deadlines(OPENED) == (datetime(2026, 11, 6, 17, 30, tzinfo=UTC), DUE)  # half: the Friday hour
    assert book.policy("globex").deadlines(OPENED) == (None, None) and book.policy("globex").agents == ()
    assert book.policy("gone").sla_s is None  # a watchlist no longer configured


def test_the_agents_setting() -> None:
    assert parse_care_agents(" acme-air = ann, bob ,ann; ;globex=cy ") == {"acme-air": ("ann", "bob"), "globex": ("cy",)}
    assert parse_care_agents(None) == {} and load_settings(care_agents=None).care_agent_map() == {}
    for bad in ("acme-air", "acme-air=", "Acme=ann", "acme-air=ann;acme-air=bob", "acme-air=ann bob"):
        with pytest.raises(ValueError):
            parse_care_agents(bad)
    with pytest.raises(ConfigError, match="EARFUL_CARE_AGENTS"):
        load_settings(care_agents="acme-air")


def test_the_inbox_shows_waiting_time_and_sla_used() -> None:
    now = DUE + timedelta(hours=1)
    out = case_out(case(state="assigned"), now, None)
    assert out["waiting_s"] == (now - OPENED).total_seconds() and out["waiting"] == "2 d 18 h"
    assert out["priority"] == 65 and out["priority_reasons"][-1] == "waiting: past the SLA deadline +20"
    assert out["sla_used"] == round((now - OPENED).total_seconds() / 7200, 4)
    answered = case_out(case(state="answered", answered_at=OPENED + timedelta(minutes=30)), now, None)
    assert (answered["waiting"], answered["sla_used"], answered["priority"]) == ("30 min", 0.25, 45)
    assert case_out(case(sla_s=None, deadline_at=None, warn_at=None), now, None)["sla_used"] is None
