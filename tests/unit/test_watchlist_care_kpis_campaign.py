"""The watchlist's care (business hours), KPI targets and campaign period: validation and round trips."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import pytest

from earful.core.errors import ValidationError
from earful.watchlists import parse_watchlist
from earful.watchlists.model import BusinessHours, from_record, to_document, to_record
from earful.watchlists.packs import pack_rules

SCHEMA = fastavro.parse_schema(fastavro.schema.load_schema(str(Path(__file__).parents[2] / "schemas" / "watchlist.avsc")))

BRAND = {
    "id": "acme-air", "kind": "brand", "query": "AcmeAir", "handles": ["AcmeAirHelp"], "response_sla_s": 3600,
    "care": {"business_hours": {"timezone": "Europe/London", "days": {"mon-fri": "09:00-17:30", "sat": ["10:00-12:00", "13:00-15:00"]},
                                "holidays": ["2026-12-25"]}, "warn_at": 0.8},
    "kpis": {"net_sentiment": 0.1, "share_of_voice": 0.4, "first_response_s": 1800, "answered_within_sla": 0.9},
}
CAMPAIGN = {"id": "winter-sale", "kind": "campaign", "query": "#AcmeWinterSale",
            "campaign": {"launch_at": "2026-11-02T09:00:00+01:00", "ends_at": "2026-11-30T00:00:00Z"}}


def _roundtrip(data: dict) -> tuple:
    w = parse_watchlist(data, "test")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, to_record(w, datetime(2026, 12, 1, tzinfo=timezone.utc), None))
    buf.seek(0)
    return w, from_record(fastavro.schemaless_reader(buf, SCHEMA))


def test_business_hours_expand_day_ranges_and_survive_the_topic() -> None:
    w, back = _roundtrip(BRAND)
    assert w.care is not None and w.care.warn_at == 0.8
    hours = w.care.business_hours
    assert isinstance(hours, BusinessHours) and hours.timezone == "Europe/London"
    assert hours.days["mon"] == (("09:00", "17:30"),) and "sun" not in hours.days
    assert hours.days["sat"] == (("10:00", "12:00"), ("13:00", "15:00"))
    assert hours.holidays == ("2026-12-25",)
    assert back == w and back.revision == w.revision
    assert w.kpis is not None and w.kpis.first_response_s == 1800 and back.kpis == w.kpis


def test_a_campaign_period_is_kept_in_utc_and_survives_the_topic() -> None:
    w, back = _roundtrip(CAMPAIGN)
    assert w.campaign is not None and w.campaign.launch_at == datetime(2026, 11, 2, 8, tzinfo=timezone.utc)
    assert back.campaign == w.campaign
    assert to_document(w)["campaign"]["launch_at"] == "2026-11-02T08:00:00Z"


def test_a_watchlist_without_the_new_keys_keeps_its_revision() -> None:
    plain = parse_watchlist({"id": "acme-air", "kind": "brand", "query": "AcmeAir"}, "test")
    assert "care" not in to_document(plain, full=True) and "campaign" not in to_document(plain, full=True)
    assert _roundtrip({"id": "acme-air", "kind": "brand", "query": "AcmeAir"})[1] == plain


@pytest.mark.parametrize(("patch", "message"), [
    ({"care": {"business_hours": {"days": {"funday": "09:00-17:00"}}}}, "not a weekday"),
    ({"care": {"business_hours": {"days": {"mon": "17:00-09:00"}}}}, "ending after it starts"),
    ({"care": {"business_hours": {"days": {}}}}, "at least one open day"),
    ({"care": {"business_hours": {"timezone": "Mars/Olympus", "days": {"mon": "09:00-17:00"}}}}, "unknown time zone"),
    ({"care": {"warn_at": 1.5}}, "care.warn_at"),
    ({"kpis": {"share_of_voice": 2}}, "kpis.share_of_voice"),
    ({"campaign": {"launch_at": "2026-11-02T09:00:00Z"}}, "only a watchlist of kind campaign"),
])
def test_bad_care_kpis_and_campaigns_are_refused_with_the_field_named(patch: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_watchlist({"id": "x", "kind": "brand", "query": "x", **patch}, "test")


def test_a_campaign_must_end_after_it_launches_and_carry_a_zone() -> None:
    with pytest.raises(ValidationError, match="ends_at must be after launch_at"):
        parse_watchlist({**CAMPAIGN, "campaign": {"launch_at": "2026-11-02T09:00:00Z", "ends_at": "2026-11-01T00:00:00Z"}}, "t")
    with pytest.raises(ValidationError, match="give a time zone"):
        parse_watchlist({**CAMPAIGN, "campaign": {"launch_at": "2026-11-02T09:00:00"}}, "t")


def test_a_staff_watchlist_runs_no_alert_rule_unless_it_lists_one() -> None:
    staff = parse_watchlist({"id": "acme-staff", "kind": "staff", "query": "Acme OR #Acme", "handles": ["jdoe"]}, "t")
    assert pack_rules(staff) == ()
