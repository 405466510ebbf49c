"""What each kind of receiver is sent: the HTTP request for one notification.

* **webhook**: Alertmanager's webhook body (``version`` "4", ``groupKey``, ``status``,
  ``receiver``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``,
  ``alerts[]`` with ``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt``,
  ``generatorURL``, ``fingerprint``, and ``truncatedAlerts``), each alert also carrying the whole
  Earful alert event under ``earful``. Signed: ``X-Earful-Signature: v1=<hex HMAC-SHA256 of
  "<X-Earful-Timestamp>.<body>">``; ``X-Earful-Idempotency-Key`` is the same for a re-sent
  notification.
* **slack**: an incoming-webhook message with Block Kit blocks; every piece of user text (post
  texts, handles, summaries) is escaped (&, <, >), so a post cannot ping @channel or forge links,
  and put on one line (line breaks become spaces), so a post cannot forge lines of the message.
* **pagerduty**: a PagerDuty Events API v2 event per notification: ``trigger`` while any alert of
  the group fires, ``resolve`` when all resolved, with a ``dedup_key`` derived from the group key,
  so the incident survives restarts and is resolved by the same key; its summary is one line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from earful.alerting.notification.grouping import Alert, Plan
from earful.alerting.notification.routing import Receiver

USER_AGENT = "earful-alerting/2"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
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


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature receivers recompute: hex HMAC-SHA256 of b'{timestamp}.' + body."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(headers: dict[str, str], secret: str | None, body: bytes) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k not in ("X-Earful-Timestamp", "X-Earful-Signature")}
    timestamp = str(int(time.time()))
    out["X-Earful-Timestamp"] = timestamp
    if secret:
        out["X-Earful-Signature"] = "v1=" + sign(secret, timestamp, body)
    return out


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


def slack_body(plan: Plan, receiver: Receiver, group_key: str) -> dict[str, Any]:
    """An incoming-webhook message: a header, one section per alert (capped), evidence, links."""
    icon = {"firing": ":rotating_light:", "resolved": ":white_check_mark:"}[plan.status]
    headline = f"{plan.status.upper()}: {len(plan.firing)} firing, {len(plan.resolved)} resolved ({group_key})"
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": one_line(headline)[:150]}}]
    for a in plan.alerts[:10]:
        ev = a.event
        lines = [(f"{icon} *{escape_slack(a.status.upper())}* `{escape_slack(a.labels.get('rule', ''))}` "
                 f"({escape_slack(a.labels.get('severity', ''))}) — {escape_slack(str(ev.get('summary', '')))}")]
        explanation = ev.get("explanation") or {}
        for post in (explanation.get("top_posts") or [])[:3]:
            who = f"@{post['author_handle']}" if post.get("author_handle") else post.get("source", "")
            reach = f" ({post['reach']:,} followers)" if post.get("reach") else ""
            lines.append(f"> {escape_slack(who)}{escape_slack(reach)}: {escape_slack(str(post.get('text', ''))[:200])}")
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
    fallback = "; ".join(escape_slack(str(a.event.get("summary", a.alert_id))) for a in plan.alerts[:5])
    return {"text": f"{one_line(headline)}: {fallback}"[:3000], "blocks": blocks}


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
    summary = one_line(f"[FIRING:{len(plan.firing)}] {first.event.get('summary', first.alert_id)}")
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
                            "observed": a.event.get("observed"), "baseline": a.event.get("baseline")}
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


def build_request(plan: Plan, receiver: Receiver, group_key: str, group_labels: dict[str, str], idempotency: str,
                  external_url: str = "") -> Request:
    """The HTTP request (body and headers) for `receiver`."""
    if receiver.kind == "slack":
        payload = slack_body(plan, receiver, group_key)
    elif receiver.kind == "pagerduty":
        payload = pagerduty_body(plan, receiver, group_key, external_url)
    else:
        payload = webhook_body(plan, receiver, group_key, group_labels, external_url)
    body = _dumps(payload)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Earful-Idempotency-Key": idempotency}
    return Request(body, signed_headers(headers, receiver.secret if receiver.kind == "webhook" else None, body))
