"""What each receiver kind is sent (webhook, Slack, PagerDuty), the receivers/routes file, and
per-watchlist rules."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from earful.alerting.detection import fingerprint
from earful.alerting.detection.rules import RuleDefaults, rules_for
from earful.alerting.notification.grouping import Alert, Plan
from earful.alerting.notification.receivers import (
    ZERO_TIME,
    alertmanager_body,
    build_request,
    escape_slack,
    label_name,
    one_line,
    pagerduty_body,
    pagerduty_dedup_key,
    sign,
    slack_body,
    webhook_body,
)
from earful.alerting.notification.routing import DEFAULT_INHIBIT, Receiver, load_notify_config
from earful.core.errors import ConfigError
from earful.core.settings import Settings
from earful.watchlists import AlertRule, QuietHours, Watchlist

T = datetime(2026, 11, 2, 7, 30, 2, tzinfo=timezone.utc)
EVIL = "<!channel> free refunds & more at <http://evil.example|acme-air.example> > now"


def alert(rule: str = "volume_spike", severity: str = "critical", status: str = "firing", summary: str = "acme-air: 27 mentions") -> Alert:
    labels = {"watchlist": "acme-air", "rule": rule, "severity": severity}
    fp = fingerprint(labels)
    event = {"alert_id": f"{fp}-1", "summary": summary, "observed": 27.0, "baseline": 2.0,
             "annotations": {"summary": summary, "dashboard_url": "http://127.0.0.1:8083/#watchlist=acme-air"},
             "explanation": {"top_posts": [{"mention_id": "m1", "source": "twitter", "author_handle": "kat_<b>",
                                            "reach": 84213, "text": EVIL, "created_at": "2026-11-02T07:30:02.361Z"}],
                             "top_terms": [{"term": "breach", "count": 19}, {"term": "<@U123>", "count": 2}]}}
    return Alert(fp, f"{fp}-1", status, labels, T, None if status == "firing" else T + timedelta(minutes=9),
                 "watchlist=acme-air", ("oncall",), event)


WEBHOOK = Receiver("ops", "webhook", "https://hooks.example.com/earful", secret="k")
SLACK = Receiver("slack-comms", "slack", "https://hooks.slack.com/services/T/B/X")
PAGERDUTY = Receiver("oncall", "pagerduty", "https://events.pagerduty.com/v2/enqueue", routing_key="R0UT1NGKEY")


# --- webhook (Alertmanager's body) ---------------------------------------------------------------


def test_webhook_body_is_alertmanager_compatible() -> None:
    a, b = alert(), alert("negative_surge", "warning", summary="acme-air: 90% negative")
    body = webhook_body(Plan(True, "new_alerts", (a, b)), WEBHOOK, "watchlist=acme-air", {"watchlist": "acme-air"},
                        "http://127.0.0.1:8083/")
    assert {k: body[k] for k in ("version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                                 "externalURL")} == {
        "version": "4", "groupKey": "watchlist=acme-air", "truncatedAlerts": 0, "status": "firing", "receiver": "ops",
        "groupLabels": {"watchlist": "acme-air"}, "externalURL": "http://127.0.0.1:8083/"}
    assert body["commonLabels"] == {"watchlist": "acme-air"}
    assert body["commonAnnotations"] == {"dashboard_url": "http://127.0.0.1:8083/#watchlist=acme-air"}
    first = body["alerts"][0]
    assert first["status"] == "firing" and first["labels"] == a.labels and first["fingerprint"] == a.fingerprint
    assert first["startsAt"] == "2026-11-02T07:30:02Z" and first["endsAt"] == ZERO_TIME
    assert first["generatorURL"].endswith("#watchlist=acme-air") and first["earful"]["observed"] == 27.0
    json.dumps(body)  # JSON-able


def test_webhook_resolved_and_truncation() -> None:
    r = alert(status="resolved")
    body = webhook_body(Plan(True, "all_resolved", (), (r,)), WEBHOOK, "g", {})
    assert body["status"] == "resolved" and body["alerts"][0]["endsAt"] == "2026-11-02T07:39:02Z"
    many = tuple(replace(alert(), alert_id=f"a{i}") for i in range(5))
    body = webhook_body(Plan(True, "new_alerts", many), replace(WEBHOOK, max_alerts=2), "g", {})
    assert len(body["alerts"]) == 2 and body["truncatedAlerts"] == 3


def test_webhook_request_is_signed_with_an_idempotency_key() -> None:
    req = build_request(Plan(True, "new_alerts", (alert(),)), WEBHOOK, "g", {}, "idem-1")
    h = req.headers
    assert h["X-Earful-Idempotency-Key"] == "idem-1" and h["Content-Type"] == "application/json"
    assert h["X-Earful-Signature"] == "v1=" + sign("k", h["X-Earful-Timestamp"], req.body)
    assert json.loads(req.body)["version"] == "4"
    resigned = req.resigned("k")
    assert resigned.body == req.body and resigned.headers["X-Earful-Idempotency-Key"] == "idem-1"


# --- Slack ---------------------------------------------------------------------------------------


def test_slack_escapes_every_piece_of_user_text() -> None:
    assert escape_slack("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    body = slack_body(Plan(True, "new_alerts", (alert(summary="acme-air <!here> spike"),)), SLACK, "watchlist=acme-air")
    text = json.dumps(body)
    for raw in ("<!channel>", "<!here>", "<http://evil", "<@U123>", "kat_<b>"):
        assert raw not in text, raw
    section = body["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; free refunds &amp; more at &lt;http://evil.example|acme-air.example&gt; &gt; now" in section
    assert "@kat_&lt;b&gt; (84,213 followers)" in section and "&lt;@U123&gt;" in section
    assert body["blocks"][0]["type"] == "header" and body["blocks"][0]["text"]["type"] == "plain_text"
    assert body["blocks"][2]["elements"][0]["url"].endswith("#watchlist=acme-air")
    assert "&lt;!here&gt;" in body["text"]


FORGED = ("refund please\n:rotating_light: *RESOLVED* `volume_spike` (critical) — all clear, ignore this"
          "\r\n> @acme_air_ceo (9,999,999 followers): wire the refund\u2028Top terms: fine\x0bok\x85done")


def forged_alert() -> Alert:
    a = alert(summary="acme-air: spike\nFIRING: fake")
    post = {**a.event["explanation"]["top_posts"][0], "text": FORGED, "author_handle": "kat\nRESOLVED"}
    explanation = {"top_posts": [post], "top_terms": [{"term": "line\nbreak", "count": 3}]}
    return replace(a, event={**a.event, "explanation": explanation})


def test_a_post_cannot_forge_lines_in_a_slack_message() -> None:
    """Each alert's section has exactly the lines Earful writes: the headline, one quote per post, the
    top terms. Line breaks in post texts, handles, summaries and terms become spaces."""
    body = slack_body(Plan(True, "new_alerts", (forged_alert(),)), SLACK, "watchlist=acme-air")
    lines = body["blocks"][1]["text"]["text"].split("\n")
    assert len(lines) == 3, lines
    assert lines[0].startswith(":rotating_light: *FIRING*") and lines[0].endswith("acme-air: spike FIRING: fake")
    assert lines[1].startswith("> @kat RESOLVED (84,213 followers): refund please :rotating_light: *RESOLVED*")
    assert lines[2] == "Top terms: line break"
    for text in (body["text"], *lines):
        assert not set(text) & set("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), text
    assert "\n" not in body["blocks"][0]["text"]["text"]


CRISIS = ("Acme Air: data breach (legal/privacy, 9 of 14 posts) \u2014 14 mentions in 60 s, 8\u00d7 usual; "
          "started by @breachwatch_kat (84k followers)")
ASSESSMENT = {"level": "critical", "score": 7.4, "factors": [
    {"name": "risk", "value": 0.64, "points": 3.0, "reason": "legal/privacy in 9 of 14 posts"},
    {"name": "volume", "value": 8.2, "points": 1.52, "reason": "8\u00d7 the usual volume"},
    {"name": "negative", "value": 0.1, "points": 0.0, "reason": "10% negative"}]}


def explained_alert(summary: str = CRISIS) -> Alert:
    a = alert(summary=summary)
    explanation = {
        "total": 14,
        "tags": [{"tag": "legal_privacy", "kind": "risk", "count": 9, "mention_ids": ["m1"],
                  "evidence": [{"phrase": "data <b>breach", "count": 6, "mention_id": "m1"}]}],
        "top_posts": [{"mention_id": "m1", "source": "twitter", "author_handle": "breachwatch_kat", "reach": 84213,
                       "engagement": 533, "roles": ["first", "loudest", "relevant"], "text": "This is a data breach"},
                      {"mention_id": "m2", "source": "news", "author_handle": None, "reach": None, "engagement": None,
                       "roles": ["relevant"], "text": "Acme Air confirms data breach"}],
        "top_terms": [{"term": "data breach", "count": 6}, {"term": "passport", "count": 4}],
        "claims": [{"text": "data breach (legal/privacy, 9 of 14 posts)", "mention_ids": ["m1"]}],
    }
    event = {**a.event, "explanation": explanation, "severity_assessment": ASSESSMENT,
             "annotations": {**a.event["annotations"], "summary": summary}}
    return replace(a, labels={**a.labels, "alertname": "volume_spike"}, event=event)


def test_the_summary_sentence_leads_every_receiver() -> None:
    a = explained_alert()
    hook = webhook_body(Plan(True, "new_alerts", (a,)), WEBHOOK, "watchlist=acme-air", {"watchlist": "acme-air"})
    assert hook["alerts"][0]["annotations"]["summary"] == CRISIS and hook["commonAnnotations"]["summary"] == CRISIS
    assert hook["alerts"][0]["labels"]["alertname"] == "volume_spike" and hook["commonLabels"]["alertname"] == "volume_spike"
    slack = slack_body(Plan(True, "new_alerts", (a, alert("negative_surge", "warning"))), SLACK, "watchlist=acme-air")
    header = slack["blocks"][0]["text"]["text"]
    assert header.startswith("Acme Air: data breach (legal/privacy, 9 of 14 posts)") and header.endswith("(+1 more firing)")
    assert len(header) <= 150  # Slack's limit for a header, shortened with an ellipsis
    lines = slack["blocks"][1]["text"]["text"].split("\n")
    assert lines[1] == "Severity: critical 7.4/10: legal/privacy in 9 of 14 posts, 8\u00d7 the usual volume"
    assert lines[2] == "Tags: legal/privacy 9/14 (\u201cdata &lt;b&gt;breach\u201d)"
    assert lines[3] == "> first/loudest @breachwatch_kat (84,213 followers, 533 engagements): This is a data breach"
    assert lines[4] == "> news: Acme Air confirms data breach" and lines[5] == "Top terms: data breach, passport"
    payload = pagerduty_body(Plan(True, "new_alerts", (a,)), PAGERDUTY, "watchlist=acme-air")["payload"]
    assert payload["summary"] == f"[FIRING:1] [critical 7.4] {CRISIS}"
    assert payload["severity"] == "critical"  # PagerDuty's severity stays the rule's (it routes); the assessment is in the text
    details = payload["custom_details"]["alerts"][0]
    assert details["severity"].startswith("critical 7.4/10") and details["claims"][0]["mention_ids"] == ["m1"]


def test_a_long_or_hostile_summary_stays_one_escaped_line_in_headers() -> None:
    a = explained_alert(summary="Acme Air: <!channel> & <http://evil.example|x>\nRESOLVED " + "x" * 300)
    header = slack_body(Plan(True, "new_alerts", (a,)), SLACK, "g")["blocks"][0]["text"]["text"]
    assert len(header) <= 150 and header.endswith("\u2026") and "\n" not in header
    assert "<!channel>" not in header and "&lt;!channel&gt; &amp; &lt;http://evil.example|x&gt; RESOLVED" in header
    summary = pagerduty_body(Plan(True, "new_alerts", (a,)), PAGERDUTY, "g")["payload"]["summary"]
    assert "\n" not in summary and summary.startswith("[FIRING:1] [critical 7.4] Acme Air: <!channel>")
    resolved = slack_body(Plan(True, "all_resolved", (), (alert(status="resolved"),)), SLACK, "g")
    assert resolved["blocks"][0]["text"]["text"] == "RESOLVED: 1 resolved (g)"


def test_pagerduty_summary_stays_on_one_line() -> None:
    payload = pagerduty_body(Plan(True, "new_alerts", (forged_alert(),)), PAGERDUTY, "watchlist=acme-air")["payload"]
    assert payload["summary"] == "[FIRING:1] acme-air: spike FIRING: fake"


def test_one_line() -> None:
    assert one_line("a\nb\r\nc\u2028d\x00e\tf") == "a b c d e f"
    assert one_line("  plain text  ") == "  plain text  "


def test_slack_request_is_not_signed() -> None:
    req = build_request(Plan(True, "new_alerts", (alert(),)), replace(SLACK, secret="k"), "g", {}, "i")
    assert "X-Earful-Signature" not in req.headers


# --- PagerDuty ----------------------------------------------------------------------------------


def test_pagerduty_trigger_and_resolve_share_a_stable_dedup_key() -> None:
    a, w = alert(), alert("risk_mention", "warning", summary="x" * 2000)
    trigger = pagerduty_body(Plan(True, "new_alerts", (w, a)), PAGERDUTY, "watchlist=acme-air")
    assert trigger["routing_key"] == "R0UT1NGKEY" and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == pagerduty_dedup_key("watchlist=acme-air") == "earful-" + pagerduty_dedup_key(
        "watchlist=acme-air")[7:]
    payload = trigger["payload"]
    assert payload["severity"] == "critical"  # the worst of the group
    assert len(payload["summary"]) == 1024 and payload["summary"].startswith("[FIRING:2] ")
    assert payload["source"] == "earful" and payload["component"] == "acme-air" and payload["group"] == "watchlist=acme-air"
    assert payload["timestamp"] == "2026-11-02T07:30:02Z" and payload["class"] == "risk_mention"
    assert len(payload["custom_details"]["alerts"]) == 2
    assert trigger["links"][0]["href"].endswith("#watchlist=acme-air")
    resolve = pagerduty_body(Plan(True, "all_resolved", (), (alert(status="resolved"),)), PAGERDUTY, "watchlist=acme-air")
    assert resolve == {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert pagerduty_dedup_key("watchlist=globex") != trigger["dedup_key"]


# --- Alertmanager ----------------------------------------------------------------------------------

ALERTMANAGER = Receiver("am", "alertmanager", "http://alertmanager.example:9093/api/v2/alerts", resend_s=60)


def test_alertmanager_body_valid_labels_and_ends() -> None:
    a = explained_alert()
    odd = replace(alert("negative_surge", "warning"), labels={"watchlist": "acme-air", "rule": "negative_surge",
                                                              "9lives": "x", "team.name": "comms"})
    odd = replace(odd, event={**odd.event, "annotations": {"summary": "s", "severity-score": 6.9, "gone": None}})
    body = alertmanager_body(Plan(True, "new_alerts", (a, odd), (alert(status="resolved"),)), ALERTMANAGER, T)
    first, second, done = body
    assert first["labels"]["alertname"] == "volume_spike" and first["annotations"]["summary"] == CRISIS
    assert first["startsAt"] == "2026-11-02T07:30:02Z" and first["endsAt"] == "2026-11-02T07:34:02Z"  # now + 4 resends
    assert first["generatorURL"].endswith("#watchlist=acme-air")
    assert second["labels"] == {"alertname": "negative_surge", "watchlist": "acme-air", "rule": "negative_surge",
                                "_9lives": "x", "team_name": "comms"}
    assert second["annotations"] == {"summary": "s", "severity_score": "6.9"}
    assert done["endsAt"] == "2026-11-02T07:39:02Z"  # a resolved alert ends at its own end
    assert set(first) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert label_name("a-b.c") == "a_b_c" and label_name("ok_1") == "ok_1" and label_name("") == "_"


def test_alertmanager_request_auth() -> None:
    plan = Plan(True, "new_alerts", (alert(),))
    plain = build_request(plan, ALERTMANAGER, "g", {}, "i", now=T)
    assert "Authorization" not in plain.headers and "webhook-id" not in plain.headers
    assert json.loads(plain.body)[0]["endsAt"] == "2026-11-02T07:34:02Z"
    bearer = build_request(plan, replace(ALERTMANAGER, bearer_token="t0k"), "g", {}, "i", now=T)
    assert bearer.headers["Authorization"] == "Bearer t0k"
    basic = build_request(plan, replace(ALERTMANAGER, basic_auth="earful:pw"), "g", {}, "i", now=T)
    assert basic.headers["Authorization"] == "Basic ZWFyZnVsOnB3"


def test_alertmanager_receivers_from_settings_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_notify_config(settings(alertmanager_urls=("https://am.example/prefix/",), alertmanager_resend_s=30,
                                      alertmanager_bearer_token="tok"))
    am = cfg.receivers["alertmanager"]
    assert (am.kind, am.url, am.resend_s, am.bearer_token) == ("alertmanager", "https://am.example/prefix/api/v2/alerts", 30, "tok")
    assert cfg.default.receivers == ("alertmanager",)
    monkeypatch.setenv("TEST_AM_AUTH", "earful:pw")
    path = tmp_path / "r.yaml"
    path.write_text("receivers:\n  - {name: am, kind: alertmanager, url: 'https://am.example', resend_s: 15, basic_auth_env: TEST_AM_AUTH}\n"
                    "route: {receivers: [am]}\n")
    am = load_notify_config(settings(alert_receivers_file=path, alertmanager_bearer_token="tok")).receivers["am"]
    assert (am.url, am.resend_s, am.basic_auth, am.bearer_token) == ("https://am.example/api/v2/alerts", 15, "earful:pw", None)
    assert "earful:pw" not in repr(am)


@pytest.mark.parametrize("entry,fragment", [
    ("{name: am, kind: alertmanager, url: 'https://am.example', resend_s: 0}", "resend_s must be"),
    ("{name: am, kind: alertmanager, url: 'https://am.example', bearer_token: a, basic_auth: 'u:p'}", "not both"),
    ("{name: am, kind: alertmanager, url: 'https://am.example', basic_auth: nocolon}", "user:password"),
    ("{name: ops, kind: webhook, url: 'https://a.example', resend_s: 5}", "only apply to kind alertmanager"),
    ("{name: ops, kind: webhook, url: 'https://a.example', secret: 'whsec_not base64!'}", "base64"),
])
def test_bad_alertmanager_and_secret_entries(tmp_path: Path, entry: str, fragment: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"receivers: [{entry}]\n")
    with pytest.raises(ConfigError, match=fragment):
        load_notify_config(settings(alert_receivers_file=path))


# --- the receivers file --------------------------------------------------------------------------


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


def test_webhook_urls_alone_make_the_default_route() -> None:
    cfg = load_notify_config(settings(webhook_urls=("https://a.example/h",), webhook_secret="s"))
    assert list(cfg.receivers) == ["webhook"] and cfg.receivers["webhook"].secret == "s"
    assert cfg.default.receivers == ("webhook",) and cfg.default.group_by == ("watchlist",)
    assert cfg.inhibit_rules == DEFAULT_INHIBIT
    labels = {"watchlist": "acme-air", "rule": "volume_spike", "severity": "critical"}
    assert cfg.group_key(labels) == "watchlist=acme-air" and cfg.receivers_for(labels) == ("webhook",)
    two = load_notify_config(settings(webhook_urls=("https://a.example/h", "https://b.example/h")))
    assert list(two.receivers) == ["webhook-1", "webhook-2"]


def test_a_receivers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PD_KEY", "pd-secret")
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/X")
    path = tmp_path / "receivers.yaml"
    path.write_text("""
receivers:
  - {name: oncall, kind: pagerduty, routing_key_env: TEST_PD_KEY}
  - {name: slack-comms, kind: slack, url_env: TEST_SLACK_URL}
  - {name: ops, kind: webhook, url: "https://hooks.example.com/earful", secret: filesecret, max_alerts: 10}
route:
  group_by: [watchlist]
  group_wait_s: 2
  routes:
    - {match: {severity: critical}, receivers: [oncall, ops]}
    - {name: acme, match_re: {watchlist: "acme-.*"}, receivers: [slack-comms], group_by: [watchlist, rule], repeat_interval_s: 60}
inhibit_rules:
  - {source_match: {rule: source_outage}, target_match: {rule: volume_drop}, equal: []}
""")
    cfg = load_notify_config(settings(alert_receivers_file=path, webhook_urls=("https://legacy.example/h",)))
    assert cfg.receivers["oncall"].routing_key == "pd-secret" and cfg.receivers["oncall"].url.startswith("https://events.pagerduty.com")
    assert cfg.receivers["slack-comms"].url == "https://hooks.slack.com/services/T/B/X"
    assert cfg.receivers["ops"].secret == "filesecret" and cfg.receivers["ops"].max_alerts == 10
    assert cfg.default.receivers == ("webhook",)  # EARFUL_WEBHOOK_URLS keep working as the default receiver
    crit = {"watchlist": "globex", "rule": "volume_spike", "severity": "critical"}
    acme = {"watchlist": "acme-air", "rule": "negative_surge", "severity": "warning"}
    other = {"watchlist": "globex", "rule": "negative_surge", "severity": "warning"}
    assert cfg.receivers_for(crit) == ("oncall", "ops") and cfg.group_key(crit) == "route-1/watchlist=globex"
    assert cfg.receivers_for(acme) == ("slack-comms",) and cfg.group_key(acme) == "acme/watchlist=acme-air,rule=negative_surge"
    assert cfg.route_for(acme).repeat_interval_s == 60 and cfg.route_for(acme).group_wait_s == 2
    assert cfg.receivers_for(other) == ("webhook",) and cfg.group_key(other) == "watchlist=globex"
    assert cfg.receivers_for(other, ("ops", "nonexistent")) == ("ops",)  # the rule's own receivers win
    assert [r.source_match for r in cfg.inhibit_rules] == [{"rule": "source_outage"}]


@pytest.mark.parametrize("text,fragment", [
    ("receivers: [{name: x, kind: email, url: 'https://a.example'}]", "kind 'email' is not one of"),
    ("receivers: [{name: x, kind: pagerduty}]", "needs routing_key"),
    ("receivers: [{name: x, kind: slack}]", "needs url"),
    ("receivers: [{name: x, kind: webhook, url_env: EARFUL_TEST_UNSET_VAR}]", "EARFUL_TEST_UNSET_VAR"),
    ("receivers: [{name: x, kind: webhook, url: 'ftp://a.example'}]", "is not an http(s) URL"),
    ("receivers: [{name: x, kind: webhook, url: 'http://10.0.0.5/hook'}]", "private address"),
    ("receivers: [{name: x, kind: webhook, url: 'http://localhost:9000/hook'}]", "loopback address"),
    ("receivers: [{name: x, kind: webhook, url: 'https://a.example', colour: red}]", "unknown key(s) colour"),
    ("receivers: [{name: 'bad name', kind: webhook, url: 'https://a.example'}]", "must match"),
    ("route: {receivers: [nobody]}", "unknown receiver(s) nobody"),
    ("route: {group_wait_s: soon}", "group_wait_s must be a number"),
    ("route: {routes: [{match_re: {watchlist: '('}}]}", "match_re watchlist"),
    ("routes: []", "unknown top-level key(s) routes"),
    ("- just a list", "expected a mapping"),
    ("receivers: [{name: a: b", "cannot read receivers file"),
])
def test_bad_receivers_files_fail_the_start_with_a_clear_message(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_notify_config(settings(alert_receivers_file=path))
    assert fragment in str(info.value)


def test_a_private_target_is_accepted_when_allow_listed() -> None:
    cfg = load_notify_config(settings(webhook_urls=("http://127.0.0.1:9000/alerts",),
                                      webhook_allowed_networks=("127.0.0.0/8",)))
    assert cfg.receivers["webhook"].url == "http://127.0.0.1:9000/alerts"
    with pytest.raises(ConfigError, match="loopback"):
        load_notify_config(settings(webhook_urls=("http://127.0.0.1:9000/alerts",)))


def test_a_missing_receivers_file() -> None:
    with pytest.raises(ConfigError, match="cannot read receivers file"):
        load_notify_config(settings(alert_receivers_file=Path("/nonexistent/receivers.yaml")))


# --- rules per watchlist ----------------------------------------------------------------------------

DEFAULTS = RuleDefaults.from_settings(settings())


def test_a_watchlist_without_rules_gets_the_default_rules() -> None:
    """A topic has no rule pack: without rules of its own it runs EARFUL_ALERT_DEFAULT_RULES."""
    rules = rules_for(Watchlist("acme-air", "Acme Air", "topic", ("Acme",), handles=("@AcmeAirHelp",)), DEFAULTS)
    assert set(rules.rules) == {"volume_spike", "negative_surge", "unanswered_question"}
    assert rules.rules["volume_spike"].severity == "critical" and rules.rules["negative_surge"].severity == "warning"
    assert rules.rules["volume_spike"]["min_z"] == 6.0 and rules.rules["volume_spike"].cooldown_s == 300
    assert rules.rules["unanswered_question"]["sla_s"] == 0  # no SLA: never alerts
    assert rules.handles == frozenset({"acmeairhelp"})


def test_a_watchlists_own_rules() -> None:
    quiet = QuietHours("22:00", "07:00", "Europe/Berlin")
    w = Watchlist("acme-air", "Acme Air", "topic", ("Acme",), response_sla_s=1800, alert_rules=(
        AlertRule("volume_spike", severity="critical", receivers=("oncall",), thresholds={"min_count": 25, "typo": 1},
                  pending_s=30, cooldown_s=600),
        AlertRule("unanswered_question", severity="loud", quiet_hours=quiet),
        AlertRule("negative_surge", enabled=False),
        AlertRule("sentiment_astrology"),
    ))
    rules = rules_for(w, DEFAULTS)
    assert set(rules.rules) == {"volume_spike", "unanswered_question"}  # disabled and unknown ones skipped
    v = rules.rules["volume_spike"]
    assert (v["min_count"], v["min_ratio"], v.receivers, v.pending_s, v.cooldown_s) == (25, 2.5, ("oncall",), 30, 600)
    assert "typo" not in v.thresholds
    q = rules.rules["unanswered_question"]
    assert (q.severity, q["sla_s"], q.quiet_hours) == ("warning", 1800, quiet)


def test_unknown_default_rules_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown rule"):
        RuleDefaults.from_settings(settings(alert_default_rules=("volume_spike", "horoscope")))
