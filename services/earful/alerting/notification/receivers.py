"""What each kind of receiver is sent: the HTTP request for one notification.

* **webhook**: Alertmanager's webhook body (``version`` "4", ``groupKey``, ``status``,
  ``receiver``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``,
  ``alerts[]`` with ``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``,
  ``generatorURL``, ``fingerprint``, and ``truncatedAlerts``), each alert also carrying the whole
  Earful alert event under ``earful``. Signed per Standard Webhooks (`signing`): ``webhook-id``
  (also ``X-Earful-Idempotency-Key``, the same for every attempt of one delivery),
  ``webhook-timestamp``, ``webhook-signature``; the deprecated ``X-Earful-Signature`` beside it.
  ``annotations.summary`` is the alert's summary sentence (the cause, the measurement, the first
  post), ``annotations.description`` the detector's measurement with the severity and its reasons,
  ``annotations.severity_level``/``severity_score`` the severity judged from the evidence; every
  alert has the label ``alertname`` (its rule).
* **slack**: an incoming-webhook message with Block Kit blocks: the header is the first firing
  alert's summary sentence; each alert's section has its status line, the severity with its
  reasons, the tags (counts and evidence), the posts shown as evidence and the distinctive terms.
  Every piece of user text (post texts, handles, summaries, evidence, terms) is escaped (&, <, >),
  so a post cannot ping @channel or forge links, and put on one line (line breaks become spaces),
  so a post cannot forge lines of the message.
* **pagerduty**: a PagerDuty Events API v2 event per notification: ``trigger`` while any alert of
  the group fires, ``resolve`` when all resolved, with a ``dedup_key`` derived from the group key,
  so the incident survives restarts and is resolved by the same key; its summary is one line:
  the first firing alert's summary sentence, with the severity judged from the evidence.
* **alertmanager**: Prometheus Alertmanager's ``POST /api/v2/alerts``: a JSON list of
  ``{labels, annotations, startsAt, endsAt, generatorURL}``, label and annotation names made valid
  Prometheus label names, ``alertname`` always set. A firing alert's ``endsAt`` is
  `ALERTMANAGER_ENDS_AFTER` resend intervals from now (the receiver is re-sent firing alerts every
  resend interval, so Alertmanager resolves an alert by itself only when Earful stops telling it);
  a resolved one's is the alert's end. Authenticated with a bearer token or basic auth when set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from earful.alerting.explain import tag_label
from earful.alerting.notification.grouping import Alert, Plan
from earful.alerting.notification.routing import Receiver
from earful.alerting.notification.signing import WEBHOOK_ID, signed_headers
from earful.alerting.notification.signing import sign as sign  # the deprecated scheme, still importable from here

USER_AGENT = "earful-alerting/2"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
ALERTMANAGER_ENDS_AFTER = 4  # resend intervals: a firing alert's endsAt sent to Alertmanager
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_]")
SEVERITY_TO_PAGERDUTY = {"critical": "critical", "warning": "warning", "info": "info"}
# Line breaks (every one str.splitlines knows) and the other control characters.
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]

    def resigned(self, secret: str | None) -> Request:
        """The same request with a fresh timestamp (and signature), for a retry."""
        return Request(self.body, signed_headers(self.headers, secret, self.body))


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return value.isoformat().replace("+00:00", "Z")


def _common(alerts: tuple[Alert, ...], key: str) -> dict[str, str]:
    maps = [dict(a.labels) if key == "labels" else dict(a.event.get("annotations") or {}) for a in alerts]
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


def webhook_body(plan: Plan, receiver: Receiver, group_key: str, group_labels: dict[str, str],
                 external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook JSON (version 4) for one notification."""
    alerts = plan.alerts
    shown = alerts[: receiver.max_alerts] if receiver.max_alerts else alerts
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": len(alerts) - len(shown),
        "status": plan.status,
        "receiver": receiver.name,
        "groupLabels": group_labels,
        "commonLabels": _common(alerts, "labels"),
        "commonAnnotations": _common(alerts, "annotations"),
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.event.get("annotations") or {}),
                "startsAt": _iso(a.starts_at),
                "endsAt": _iso(a.ends_at) if not a.firing and a.ends_at else ZERO_TIME,
                "generatorURL": (a.event.get("annotations") or {}).get("dashboard_url", ""),
                "fingerprint": a.fingerprint,
                "earful": dict(a.event),
            }
            for a in shown
        ],
    }


def one_line(text: str) -> str:
    """`text` on one line: each run of line breaks or control characters becomes one space, so user
    text cannot start a line of its own in a line-based message (a forged status, a forged quote)."""
    return _BREAKS.sub(" ", text)


def escape_slack(text: str) -> str:
    """Slack mrkdwn escaping: &, < and > (so no <!channel>, <@U123> or <http://x|forged> links), on one line."""
    return one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def severity_text(event: Mapping[str, Any]) -> str:
    """'critical 6.9/10: legal/privacy in 7 of 14 posts, 8× the usual volume, ...', or ''."""
    assessment = event.get("severity_assessment")
    if not assessment:
        return ""
    reasons = [f["reason"] for f in assessment.get("factors") or [] if f.get("points", 0) > 0][:5]
    head = f"{assessment['level']} {float(assessment['score']):.1f}/10"
    return f"{head}: {', '.join(reasons)}" if reasons else head


def _header(title: str, limit: int = 150) -> str:
    """`title` escaped and on one line, shortened (before escaping, so no entity is cut) to fit Slack's header."""
    cut = limit
    text = escape_slack(_shorten(title, cut))
    while len(text) > limit:
        cut -= max(1, len(text) - limit)
        text = escape_slack(_shorten(title, cut))
    return text


def headline(plan: Plan, group_key: str) -> str:
    """The first firing alert's summary sentence (and how many more), else the group's status."""
    if plan.firing:
        first = plan.firing[0]
        more = f" (+{len(plan.firing) - 1} more firing)" if len(plan.firing) > 1 else ""
        return f"{first.event.get('summary') or first.alert_id}{more}"
    return f"RESOLVED: {len(plan.resolved)} resolved ({group_key})"


def _tag_line(explanation: Mapping[str, Any]) -> str:
    total = explanation.get("total") or 0
    parts = []
    for t in (explanation.get("tags") or [])[:4]:
        evidence = (t.get("evidence") or [{}])[0].get("phrase")
        label = tag_label(str(t["tag"]))
        parts.append(f"{label} {t['count']}/{total}" + (f" (\u201c{_shorten(str(evidence), 40)}\u201d)" if evidence else ""))
    return ", ".join(parts)


def _post_line(post: Mapping[str, Any]) -> str:
    who = f"@{post['author_handle']}" if post.get("author_handle") else post.get("source", "")
    facts = []
    if post.get("reach"):
        facts.append(f"{post['reach']:,} followers")
    if post.get("engagement"):
        facts.append(f"{post['engagement']:,} engagements")
    roles = [r for r in post.get("roles") or [] if r != "relevant"]
    role = f"{'/'.join(roles)} " if roles else ""
    detail = f" ({', '.join(facts)})" if facts else ""
    return f"> {escape_slack(role + who)}{escape_slack(detail)}: {escape_slack(str(post.get('text', ''))[:200])}"


def slack_body(plan: Plan, receiver: Receiver, group_key: str) -> dict[str, Any]:
    """An incoming-webhook message: a header (the summary sentence), one section per alert (capped)
    with its severity, tags, posts and terms, links."""
    icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}[plan.status]
    title = headline(plan, group_key)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": _header(title)}}]
    for a in plan.alerts[:10]:
        ev = a.event
        lines = [(f"{icon} *{escape_slack(a.status.upper())}* `{escape_slack(a.labels.get('rule', ''))}` "
                 f"({escape_slack(a.labels.get('severity', ''))}) — {escape_slack(str(ev.get('summary', '')))}")]
        explanation = ev.get("explanation") or {}
        severity = severity_text(ev) if a.firing else ""
        if severity:
            lines.append(f"Severity: {escape_slack(severity)}")
        tags = _tag_line(explanation)
        if tags:
            lines.append(f"Tags: {escape_slack(tags)}")
        for post in (explanation.get("top_posts") or [])[:5]:
            lines.append(_post_line(post))
        terms = ", ".join(t["term"] for t in (explanation.get("top_terms") or [])[:8])
        if terms:
            lines.append(f"Top terms: {escape_slack(terms)}")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}})
        url = (ev.get("annotations") or {}).get("dashboard_url")
        if url:
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open dashboard"}, "url": url}]})
    if len(plan.alerts) > 10:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"and {len(plan.alerts) - 10} more alerts"}]})
    status = f"{plan.status.upper()}: {len(plan.firing)} firing, {len(plan.resolved)} resolved ({group_key})"
    fallback = "; ".join(escape_slack(str(a.event.get("summary", a.alert_id))) for a in plan.alerts[:5])
    return {"text": f"{escape_slack(status)}: {fallback}"[:3000], "blocks": blocks}


def pagerduty_dedup_key(group_key: str) -> str:
    """Stable across restarts and equal for trigger and resolve of the same group's incident."""
    return "earful-" + hashlib.sha256(group_key.encode()).hexdigest()[:32]


def pagerduty_body(plan: Plan, receiver: Receiver, group_key: str, external_url: str = "") -> dict[str, Any]:
    """A PagerDuty Events API v2 event for one notification."""
    dedup_key = pagerduty_dedup_key(group_key)
    if not plan.firing:
        return {"routing_key": receiver.routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    worst = max(plan.firing, key=lambda a: ("info", "warning", "critical").index(a.labels.get("severity", "info"))
                if a.labels.get("severity") in ("info", "warning", "critical") else 0)
    first = plan.firing[0]
    assessed = first.event.get("severity_assessment") or {}
    level = f"[{assessed['level']} {float(assessed['score']):.1f}] " if assessed else ""
    summary = one_line(f"[FIRING:{len(plan.firing)}] {level}{first.event.get('summary', first.alert_id)}")
    body: dict[str, Any] = {
        "routing_key": receiver.routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary[:1024],
            "source": "earful",
            "severity": SEVERITY_TO_PAGERDUTY.get(worst.labels.get("severity", ""), "warning"),
            "timestamp": _iso(first.starts_at),
            "component": first.labels.get("watchlist", ""),
            "group": group_key,
            "class": first.labels.get("rule", ""),
            "custom_details": {
                "alerts": [{"alert_id": a.alert_id, "summary": a.event.get("summary"), "labels": dict(a.labels),
                            "observed": a.event.get("observed"), "baseline": a.event.get("baseline"),
                            "severity": severity_text(a.event) or None,
                            "claims": (a.event.get("explanation") or {}).get("claims") or []}
                           for a in plan.firing[:20]],
            },
        },
        "client": "Earful",
    }
    url = (first.event.get("annotations") or {}).get("dashboard_url") or external_url
    if url:
        body["client_url"] = url
        body["links"] = [{"href": url, "text": "Earful dashboard"}]
    return body


def label_name(name: str) -> str:
    """`name` as a valid Prometheus label name: other characters become '_', a leading digit gets '_' before it."""
    if _LABEL_NAME.match(name):
        return name
    cleaned = _NOT_LABEL_CHAR.sub("_", name)
    return cleaned if _LABEL_NAME.match(cleaned) else "_" + cleaned


def label_set(values: Mapping[str, Any]) -> dict[str, str]:
    """Valid label names with string values (None dropped); of two names that clean to one, the first sorted wins."""
    out: dict[str, str] = {}
    for name in sorted(values):
        if values[name] is not None:
            out.setdefault(label_name(str(name)), str(values[name]))
    return out


def alertmanager_body(plan: Plan, receiver: Receiver, now: datetime, external_url: str = "") -> list[dict[str, Any]]:
    """Alertmanager's POST /api/v2/alerts body: every alert of the plan, firing ones valid for
    `ALERTMANAGER_ENDS_AFTER` resend intervals, resolved ones ending at their end."""
    valid_until = now + timedelta(seconds=ALERTMANAGER_ENDS_AFTER * receiver.resend_s)
    out = []
    for a in plan.alerts:
        labels = label_set(a.labels)
        labels.setdefault("alertname", labels.get("rule") or "earful")
        annotations = dict(a.event.get("annotations") or {})
        ends = valid_until if a.firing else max(a.ends_at or now, a.starts_at)
        item: dict[str, Any] = {"labels": labels, "annotations": label_set(annotations),
                                "startsAt": _iso(a.starts_at), "endsAt": _iso(ends)}
        url = annotations.get("dashboard_url") or external_url
        if url:
            item["generatorURL"] = url
        out.append(item)
    return out


def alertmanager_auth(receiver: Receiver) -> dict[str, str]:
    """The Authorization header of an alertmanager receiver: its bearer token, else basic auth ("user:password")."""
    if receiver.bearer_token:
        return {"Authorization": f"Bearer {receiver.bearer_token}"}
    if receiver.basic_auth:
        return {"Authorization": "Basic " + base64.b64encode(receiver.basic_auth.encode()).decode()}
    return {}


def build_request(plan: Plan, receiver: Receiver, group_key: str, group_labels: dict[str, str], idempotency: str,
                  external_url: str = "", now: datetime | None = None) -> Request:
    """The HTTP request (body and headers) for `receiver`; `now` dates an Alertmanager alert's validity."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Earful-Idempotency-Key": idempotency}
    payload: Any
    if receiver.kind == "slack":
        payload = slack_body(plan, receiver, group_key)
    elif receiver.kind == "pagerduty":
        payload = pagerduty_body(plan, receiver, group_key, external_url)
    elif receiver.kind == "alertmanager":
        payload = alertmanager_body(plan, receiver, now or datetime.now(timezone.utc), external_url)
        headers.update(alertmanager_auth(receiver))
    else:
        payload = webhook_body(plan, receiver, group_key, group_labels, external_url)
        headers[WEBHOOK_ID] = idempotency
    body = _dumps(payload)
    return Request(body, signed_headers(headers, receiver.secret if receiver.kind == "webhook" else None, body))
