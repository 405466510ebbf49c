"""Who gets which alert: receivers, routes, grouping and inhibit rules (Alertmanager's model).

Configured by a YAML file (`EARFUL_ALERT_RECEIVERS_FILE`); without one, every URL of
`EARFUL_WEBHOOK_URLS` is a generic webhook receiver of the default route, and every URL of
`EARFUL_ALERTMANAGER_URLS` an Alertmanager receiver of it. An alert goes to the
receivers its rule names (`AlertRule.receivers`), else to those of the first route whose matchers
fit its labels, else to the default route's. Alerts of one route with equal values of the route's
`group_by` labels form one notification group.

    receivers:
      - {name: oncall, kind: pagerduty, routing_key_env: PAGERDUTY_ROUTING_KEY}
      - {name: slack-comms, kind: slack, url_env: SLACK_COMMS_WEBHOOK_URL}
      - {name: ops, kind: webhook, url: "https://hooks.example.com/earful", secret_env: OPS_HOOK_SECRET}
      - {name: am, kind: alertmanager, url: "http://alertmanager:9093", resend_s: 60, bearer_token_env: AM_TOKEN}
    route:
      receivers: [ops]
      group_by: [watchlist]
      group_wait_s: 0.5
      group_interval_s: 60
      repeat_interval_s: 14400
      routes:
        - {match: {severity: critical}, receivers: [oncall, ops]}
        - {match_re: {watchlist: "^acme-"}, receivers: [slack-comms], group_by: [watchlist, rule]}
    inhibit_rules:
      - {source_match: {rule: volume_spike}, target_match: {severity: warning}, equal: [watchlist]}
      - {source_match: {rule: source_outage}, target_match: {rule: volume_drop}, within: {source: degraded_sources}}

Secrets (webhook keys, routing keys, Slack URLs) can come from environment variables
(`*_env`) so the file itself holds none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from earful.alerting.notification import signing
from earful.alerting.notification.targets import TargetPolicy
from earful.core.errors import ConfigError

KINDS = ("webhook", "slack", "pagerduty", "alertmanager")
ALERTMANAGER_ALERTS_PATH = "/api/v2/alerts"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Receiver:
    """One notification target."""

    name: str
    kind: str  # webhook | slack | pagerduty | alertmanager
    url: str
    secret: str | None = field(default=None, repr=False)  # webhook HMAC key
    routing_key: str | None = field(default=None, repr=False)  # PagerDuty integration key
    send_resolved: bool = True
    max_alerts: int = 0  # webhook: alerts per notification (0 = all); the rest are counted in truncatedAlerts
    resend_s: float = 60.0  # alertmanager: firing alerts are re-sent this often
    bearer_token: str | None = field(default=None, repr=False)  # alertmanager: Authorization: Bearer
    basic_auth: str | None = field(default=None, repr=False)  # alertmanager: "user:password" for basic auth


@dataclass(frozen=True)
class Route:
    name: str
    receivers: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    match: Mapping[str, str] = field(default_factory=dict)
    match_re: Mapping[str, re.Pattern[str]] = field(default_factory=dict)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match.items()) and all(
            p.fullmatch(labels.get(k, "")) for k, p in self.match_re.items())


@dataclass(frozen=True)
class InhibitRule:
    """While a firing alert matches `source_match`, alerts matching `target_match` with the same
    values of the `equal` labels are not notified (Alertmanager inhibit_rules). `within` maps a
    label of the source to a label or annotation of the target holding a comma-separated list:
    the source's value must be in it (a source outage mutes the drops of the watchlists that
    depend on that source, whose alerts list it in `degraded_sources`)."""

    source_match: Mapping[str, str]
    target_match: Mapping[str, str]
    equal: tuple[str, ...] = ()
    within: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        src = ",".join(f"{k}={v}" for k, v in sorted(self.source_match.items()))
        return f"{src}" if src else "any"

    def inhibits(self, target: Mapping[str, str], source: Mapping[str, str],
                 target_annotations: Mapping[str, str] | None = None) -> bool:
        return (all(target.get(k) == v for k, v in self.target_match.items())
                and all(source.get(k) == v for k, v in self.source_match.items())
                and all(target.get(k) == source.get(k) for k in self.equal)
                and all(source.get(k) in _listed(target.get(t) or (target_annotations or {}).get(t))
                        for k, t in self.within.items()))


def _listed(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


DEFAULT_INHIBIT = (InhibitRule({"rule": "volume_spike"}, {"severity": "warning"}, ("watchlist",)),
                   InhibitRule({"rule": "source_outage"}, {"rule": "volume_drop"}, (), {"source": "degraded_sources"}))


@dataclass(frozen=True)
class NotifyConfig:
    receivers: Mapping[str, Receiver]
    default: Route
    routes: tuple[Route, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT

    def route_for(self, labels: Mapping[str, str]) -> Route:
        return next((r for r in self.routes if r.matches(labels)), self.default)

    def receivers_for(self, labels: Mapping[str, str], rule_receivers: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The rule's own receivers (those that exist), else its route's."""
        own = tuple(r for r in rule_receivers if r in self.receivers)
        return own or self.route_for(labels).receivers

    def group_key(self, labels: Mapping[str, str]) -> str:
        route = self.route_for(labels)
        key = ",".join(f"{name}={labels.get(name, '')}" for name in route.group_by)
        return key if route is self.default else f"{route.name}/{key}"


# --- loading -----------------------------------------------------------------------------------


def _secret(entry: Mapping[str, Any], name: str, where: str) -> str | None:
    if entry.get(name) is not None:
        return str(entry[name])
    env = entry.get(f"{name}_env")
    if env is None:
        return None
    value = os.environ.get(str(env))
    if not value:
        raise ConfigError(f"{where}: environment variable {env} (from {name}_env) is not set")
    return value


def _check_url(url: str, where: str, policy: TargetPolicy) -> str:
    parts = urlsplit(url)
    try:
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{where}: {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {url!r} is not an http(s) URL")
    refusal = policy.check_literal(url)
    if refusal:
        raise ConfigError(f"{where}: {url!r} refused: {refusal}")
    return url


def _route(entry: Mapping[str, Any], name: str, parent: Route | None, settings: Any, where: str) -> Route:
    def number(key: str, default: float) -> float:
        value = entry.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: {key} must be a number of seconds ≥ 0, not {value!r}")
        return float(value)

    receivers = entry.get("receivers", parent.receivers if parent else None)
    group_by = entry.get("group_by", parent.group_by if parent else settings.alert_group_by)
    for key, value in (("receivers", receivers), ("group_by", group_by)):
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}: {key} must be a list of names")
    match_re = {}
    for label, pattern in (entry.get("match_re") or {}).items():
        try:
            match_re[str(label)] = re.compile(str(pattern))
        except re.error as exc:
            raise ConfigError(f"{where}: match_re {label}: {exc}") from exc
    return Route(
        name=name, receivers=tuple(receivers or ()), group_by=tuple(group_by),
        group_wait_s=number("group_wait_s", parent.group_wait_s if parent else settings.alert_group_wait_s),
        group_interval_s=number("group_interval_s", parent.group_interval_s if parent else settings.alert_group_interval_s),
        repeat_interval_s=number("repeat_interval_s", parent.repeat_interval_s if parent else settings.alert_repeat_interval_s),
        match={str(k): str(v) for k, v in (entry.get("match") or {}).items()}, match_re=match_re,
    )


_RECEIVER_KEYS = frozenset({"name", "kind", "url", "url_env", "secret", "secret_env", "routing_key", "routing_key_env",
                            "send_resolved", "max_alerts", "resend_s", "bearer_token", "bearer_token_env", "basic_auth",
                            "basic_auth_env"})
_ALERTMANAGER_KEYS = frozenset({"resend_s", "bearer_token", "bearer_token_env", "basic_auth", "basic_auth_env"})


@dataclass(frozen=True)
class AlertmanagerDefaults:
    """EARFUL_ALERTMANAGER_*: the receivers of EARFUL_ALERTMANAGER_URLS, and what a file's alertmanager receiver leaves out."""

    resend_s: float = 60.0
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> AlertmanagerDefaults:
        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(float(settings.alertmanager_resend_s), secret(settings.alertmanager_bearer_token),
                   secret(settings.alertmanager_basic_auth))


def alertmanager_url(url: str) -> str:
    """Alertmanager's alerts endpoint under `url` (its base URL, route prefix included), unless `url` is it."""
    base = url.rstrip("/")
    return base if base.endswith(ALERTMANAGER_ALERTS_PATH) else base + ALERTMANAGER_ALERTS_PATH


def load_notify_config(settings: Any) -> NotifyConfig:
    """The receivers and routes from the receivers file and EARFUL_WEBHOOK_URLS; bad config → ConfigError."""
    policy = TargetPolicy(settings.webhook_allowed_networks)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    if secret:
        signing.secret_key(secret)  # a malformed whsec_ secret fails the start
    am = AlertmanagerDefaults.from_settings(settings)
    receivers = _env_receivers(settings.webhook_urls, secret, policy)
    receivers.update(_env_alertmanagers(settings.alertmanager_urls, am, policy))
    env_receivers = tuple(receivers)
    path: Path | None = settings.alert_receivers_file
    doc = _read_receivers_file(path) if path is not None else {}
    for i, entry in enumerate(doc.get("receivers") or []):
        receiver = _receiver(entry, f"{path}: receivers[{i}]", receivers, secret, policy, am)
        receivers[receiver.name] = receiver
    default, routes = _routes(doc.get("route") or {}, path, settings, env_receivers)
    for r in (default, *routes):
        missing = [n for n in r.receivers if n not in receivers]
        if missing:
            raise ConfigError(f"route {r.name} names unknown receiver(s) {', '.join(missing)}; defined: {', '.join(receivers) or 'none'}")
    inhibit = DEFAULT_INHIBIT if "inhibit_rules" not in doc else tuple(
        InhibitRule({str(k): str(v) for k, v in (e.get("source_match") or {}).items()},
                    {str(k): str(v) for k, v in (e.get("target_match") or {}).items()},
                    tuple(str(x) for x in e.get("equal") or ()),
                    {str(k): str(v) for k, v in (e.get("within") or {}).items()})
        for e in (doc.get("inhibit_rules") or []))
    return NotifyConfig(receivers, default, tuple(routes), inhibit)


def _env_receivers(urls: Sequence[str], secret: str | None, policy: TargetPolicy) -> dict[str, Receiver]:
    """One generic webhook receiver per URL of EARFUL_WEBHOOK_URLS."""
    receivers: dict[str, Receiver] = {}
    for i, url in enumerate(urls):
        name = "webhook" if len(urls) == 1 else f"webhook-{i + 1}"
        receivers[name] = Receiver(name, "webhook", _check_url(url, "EARFUL_WEBHOOK_URLS", policy), secret=secret)
    return receivers


def _env_alertmanagers(urls: Sequence[str], am: AlertmanagerDefaults, policy: TargetPolicy) -> dict[str, Receiver]:
    """One Alertmanager receiver per URL of EARFUL_ALERTMANAGER_URLS."""
    receivers: dict[str, Receiver] = {}
    for i, url in enumerate(urls):
        name = "alertmanager" if len(urls) == 1 else f"alertmanager-{i + 1}"
        receivers[name] = Receiver(name, "alertmanager", alertmanager_url(_check_url(url, "EARFUL_ALERTMANAGER_URLS", policy)),
                                   resend_s=am.resend_s, bearer_token=am.bearer_token, basic_auth=am.basic_auth)
    return receivers


def _read_receivers_file(path: Path) -> dict[str, Any]:
    """The receivers file as a mapping with receivers:, route:, inhibit_rules: (nothing else)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read receivers file {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with receivers:, route:, inhibit_rules:")
    unknown = set(doc) - {"receivers", "route", "inhibit_rules"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    return doc


def _receiver(entry: Any, where: str, taken: Mapping[str, Receiver], default_secret: str | None,
              policy: TargetPolicy, am: AlertmanagerDefaults = AlertmanagerDefaults()) -> Receiver:
    """One receiver of the file, checked (name, kind, keys, URL, secrets); `taken`: those defined before."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping")
    name, kind = str(entry.get("name", "")), entry.get("kind")
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must match {_NAME.pattern}")
    if name in taken:
        raise ConfigError(f"{where}: receiver {name} defined twice")
    if kind not in KINDS:
        raise ConfigError(f"{where} ({name}): kind {kind!r} is not one of {', '.join(KINDS)}")
    unknown = set(entry) - _RECEIVER_KEYS
    if unknown:
        raise ConfigError(f"{where} ({name}): unknown key(s) {', '.join(sorted(unknown))}")
    url = _secret(entry, "url", where) or (PAGERDUTY_EVENTS_URL if kind == "pagerduty" else None)
    if not url:
        raise ConfigError(f"{where} ({name}): needs url (or url_env)")
    routing_key = _secret(entry, "routing_key", where)
    if kind == "pagerduty" and not routing_key:
        raise ConfigError(f"{where} ({name}): a pagerduty receiver needs routing_key (or routing_key_env)")
    max_alerts = entry.get("max_alerts", 0)
    if not isinstance(max_alerts, int) or max_alerts < 0:
        raise ConfigError(f"{where} ({name}): max_alerts must be an integer ≥ 0")
    secret = _secret(entry, "secret", where) or (default_secret if kind == "webhook" else None)
    if secret:
        try:
            signing.secret_key(secret)
        except ConfigError as exc:
            raise ConfigError(f"{where} ({name}): {exc}") from exc
    receiver = Receiver(name, kind, _check_url(url, where, policy), secret=secret, routing_key=routing_key,
                        send_resolved=bool(entry.get("send_resolved", True)), max_alerts=max_alerts)
    return _alertmanager(receiver, entry, where, am) if kind == "alertmanager" else _no_alertmanager_keys(receiver, entry, where)


def _no_alertmanager_keys(receiver: Receiver, entry: Mapping[str, Any], where: str) -> Receiver:
    given = set(entry) & _ALERTMANAGER_KEYS
    if given:
        raise ConfigError(f"{where} ({receiver.name}): {', '.join(sorted(given))} only apply to kind alertmanager")
    return receiver


def _alertmanager(receiver: Receiver, entry: Mapping[str, Any], where: str, am: AlertmanagerDefaults) -> Receiver:
    """An alertmanager receiver's endpoint, resend interval and credentials (the settings' where the file gives none)."""
    resend_s = entry.get("resend_s", am.resend_s)
    if not isinstance(resend_s, (int, float)) or isinstance(resend_s, bool) or resend_s <= 0:
        raise ConfigError(f"{where} ({receiver.name}): resend_s must be a number of seconds > 0, not {resend_s!r}")
    bearer, basic = _secret(entry, "bearer_token", where), _secret(entry, "basic_auth", where)
    if bearer and basic:
        raise ConfigError(f"{where} ({receiver.name}): give bearer_token or basic_auth, not both")
    if basic and ":" not in basic:
        raise ConfigError(f"{where} ({receiver.name}): basic_auth must be user:password")
    if not bearer and not basic:
        bearer, basic = am.bearer_token, am.basic_auth
    return replace(receiver, url=alertmanager_url(receiver.url), resend_s=float(resend_s), bearer_token=bearer,
                   basic_auth=basic)


def _routes(route_doc: Any, path: Path | None, settings: Any,
            env_receivers: tuple[str, ...]) -> tuple[Route, list[Route]]:
    """The default route (receiving EARFUL_WEBHOOK_URLS' receivers unless it names its own) and its sub-routes."""
    if not isinstance(route_doc, dict):
        raise ConfigError(f"{path}: route must be a mapping")
    default = _route(route_doc, "default", None, settings, f"{path}: route")
    if not default.receivers:
        default = replace(default, receivers=env_receivers)
    routes = []
    for i, sub in enumerate(route_doc.get("routes") or []):
        if not isinstance(sub, dict):
            raise ConfigError(f"{path}: route.routes[{i}]: expected a mapping")
        routes.append(_route(sub, str(sub.get("name") or f"route-{i + 1}"), default, settings, f"{path}: route.routes[{i}]"))
    return default, routes
